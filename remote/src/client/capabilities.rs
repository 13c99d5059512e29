//! Capability negotiation: the server must offer the workspace's digest function; its batch size
//! limit (capped below gRPC's usual 4 MiB message limit) decides which blobs go in batches.

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    digest_function, GetCapabilitiesRequest, ServerCapabilities,
};
use kiln_cache::DigestFunction;
use tonic::Status;

use super::connection::Calls;
use super::retry::retry;

/// Batched calls stay under this many bytes of blob data, whatever the server allows: gRPC
/// servers commonly refuse messages over 4 MiB.
pub(crate) const BATCH_CAP: u64 = (4 << 20) - (64 << 10);

/// What Kiln takes from the server's capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Negotiated {
    /// Most bytes in one batched call: blob data plus a per-entry overhead (`batch.rs`); blobs
    /// that do not fit use ByteStream.
    pub batch_limit: u64,
    /// Whether the server accepts `UpdateActionResult`.
    pub update_enabled: bool,
}

/// The REAPI enum value of a digest function.
pub(crate) fn reapi_function(function: DigestFunction) -> i32 {
    match function {
        DigestFunction::Blake3 => digest_function::Value::Blake3 as i32,
        DigestFunction::Sha256 => digest_function::Value::Sha256 as i32,
    }
}

fn function_name(value: i32) -> String {
    digest_function::Value::try_from(value)
        .map(|v| v.as_str_name().to_string())
        .unwrap_or_else(|_| format!("#{value}"))
}

/// Checks the server's capabilities against the workspace; the error says why the remote cannot
/// be used.
pub(crate) fn negotiate(
    capabilities: &ServerCapabilities,
    function: DigestFunction,
) -> Result<Negotiated, String> {
    let Some(cache) = &capabilities.cache_capabilities else {
        return Err("it is not a cache (it reports no cache capabilities)".to_string());
    };
    if let Some(high) = &capabilities.high_api_version {
        if high.major < 2 {
            return Err(format!(
                "it speaks REAPI up to {}.{}, and Kiln needs 2.0",
                high.major, high.minor
            ));
        }
    }
    // A server that lists no function is an old one: it means SHA-256.
    let offered: Vec<i32> = if cache.digest_functions.is_empty() {
        vec![digest_function::Value::Sha256 as i32]
    } else {
        cache.digest_functions.clone()
    };
    if !offered.contains(&reapi_function(function)) {
        let names: Vec<String> = offered.iter().map(|v| function_name(*v)).collect();
        let other = if function == DigestFunction::Blake3 {
            "sha256"
        } else {
            "blake3"
        };
        return Err(format!(
            "it does not offer the workspace's digest function {} (it offers {}); set \
             `digest_function = \"{other}\"` under `[build]` in kiln.toml to use it",
            function.name().to_uppercase(),
            names.join(", ")
        ));
    }
    let server_limit = u64::try_from(cache.max_batch_total_size_bytes).unwrap_or(0);
    let batch_limit = match server_limit {
        0 => BATCH_CAP,
        n => n.min(BATCH_CAP),
    };
    Ok(Negotiated {
        batch_limit,
        update_enabled: cache
            .action_cache_update_capabilities
            .as_ref()
            .is_some_and(|u| u.update_enabled),
    })
}

impl Calls<'_> {
    /// `GetCapabilities`.
    pub async fn capabilities(&self) -> Result<ServerCapabilities, Status> {
        retry(&self.policy, || {
            let mut client = self.clients.capabilities.clone();
            let request = GetCapabilitiesRequest {
                instance_name: self.instance.to_string(),
            };
            async move { Ok(client.get_capabilities(request).await?.into_inner()) }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use bazel_remote_apis::build::bazel::remote::execution::v2::{
        ActionCacheUpdateCapabilities, CacheCapabilities,
    };

    use super::*;

    fn server(functions: &[digest_function::Value], batch: i64) -> ServerCapabilities {
        ServerCapabilities {
            cache_capabilities: Some(CacheCapabilities {
                digest_functions: functions.iter().map(|f| *f as i32).collect(),
                max_batch_total_size_bytes: batch,
                action_cache_update_capabilities: Some(ActionCacheUpdateCapabilities {
                    update_enabled: true,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn bazel_remote_offers_only_sha256() {
        let caps = server(&[digest_function::Value::Sha256], 0);
        let err = negotiate(&caps, DigestFunction::Blake3).unwrap_err();
        expect_test::expect![[r#"it does not offer the workspace's digest function BLAKE3 (it offers SHA256); set `digest_function = "sha256"` under `[build]` in kiln.toml to use it"#]].assert_eq(&err);
        assert_eq!(
            negotiate(&caps, DigestFunction::Sha256),
            Ok(Negotiated {
                batch_limit: BATCH_CAP,
                update_enabled: true
            })
        );
    }

    #[test]
    fn no_functions_listed_means_sha256() {
        let caps = server(&[], 0);
        assert!(negotiate(&caps, DigestFunction::Sha256).is_ok());
        assert!(negotiate(&caps, DigestFunction::Blake3).is_err());
    }

    #[test]
    fn batch_limit_is_the_smaller_of_server_and_cap() {
        let caps = server(
            &[
                digest_function::Value::Sha256,
                digest_function::Value::Blake3,
            ],
            64 << 10,
        );
        assert_eq!(
            negotiate(&caps, DigestFunction::Blake3)
                .unwrap()
                .batch_limit,
            64 << 10
        );
        let mut caps = server(&[digest_function::Value::Blake3], 1 << 30);
        assert_eq!(
            negotiate(&caps, DigestFunction::Blake3)
                .unwrap()
                .batch_limit,
            BATCH_CAP
        );
        caps.cache_capabilities = None;
        assert!(negotiate(&caps, DigestFunction::Blake3).is_err());
    }
}
