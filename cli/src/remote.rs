//! The remote cache tier from `[remote]` in kiln.toml and the `--remote_*` flags (flags win).

use std::time::Duration;

use anyhow::Result;
use kiln_cache::DigestFunction;
use kiln_graph::remote_tier::{DownloadOutputs, RemoteTier};
use kiln_remote::client::{parse_header, ClientConfig, ClientTls, RemoteClient};

use crate::args::{DownloadOutputsArg, RemoteFlags};
use crate::config::RemoteSection;
use crate::exit::{Exit, BAD_COMMAND_LINE};

/// Deadline of one remote call unless configured: short, so that a hanging server costs seconds.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

fn bad(message: String) -> anyhow::Error {
    Exit::new(BAD_COMMAND_LINE, message).into()
}

/// The configured remote tier, or `None` when no remote cache is set (or `--remote_cache=`).
pub fn tier(
    section: &RemoteSection,
    flags: &RemoteFlags,
    function: DigestFunction,
) -> Result<Option<RemoteTier>> {
    let url = flags.remote_cache.as_ref().or(section.cache.as_ref());
    let Some(url) = url.map(|u| u.trim()).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let mut headers: Vec<(String, String)> = section
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for text in &flags.remote_header {
        let (key, value) = parse_header(text).map_err(|e| bad(format!("--remote_header: {e}")))?;
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
        headers.push((key, value));
    }
    let timeout = match &flags.remote_timeout {
        Some(text) => parse_seconds(text).ok_or_else(|| {
            bad(format!(
                "--remote_timeout: expected seconds such as `10` or `10s`, got `{text}`"
            ))
        })?,
        None => section
            .timeout
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT),
    };
    if timeout.is_zero() {
        return Err(bad(
            "The remote timeout must be at least 1 second".to_string()
        ));
    }
    let download = match flags.remote_download_outputs {
        Some(DownloadOutputsArg::All) => DownloadOutputs::All,
        Some(DownloadOutputsArg::Toplevel) => DownloadOutputs::TopLevel,
        Some(DownloadOutputsArg::Minimal) => DownloadOutputs::Minimal,
        None => match section.download_outputs.as_deref() {
            None | Some("toplevel") => DownloadOutputs::TopLevel,
            Some("all") => DownloadOutputs::All,
            Some("minimal") => DownloadOutputs::Minimal,
            Some(other) => {
                return Err(bad(format!(
                    "kiln.toml [remote] download_outputs: unknown value `{other}`; expected all, toplevel or minimal"
                )))
            }
        },
    };
    let upload_local_results = if flags.noremote_upload_local_results {
        false
    } else {
        flags
            .remote_upload_local_results
            .or(section.upload_local_results)
            .unwrap_or(true)
    };
    let config = ClientConfig {
        url: url.to_string(),
        instance_name: flags
            .remote_instance_name
            .clone()
            .or_else(|| section.instance_name.clone())
            .unwrap_or_default(),
        headers,
        timeout,
        function,
        tls: client_tls(flags)?,
    };
    let client = RemoteClient::new(config).map_err(|e| bad(e.to_string()))?;
    Ok(Some(RemoteTier {
        cache: std::sync::Arc::new(client),
        download,
        upload_local_results,
    }))
}

/// The certificates named by `--tls_certificate`, `--tls_client_certificate` and
/// `--tls_client_key`, read now so that a wrong path stops the command before the build.
fn client_tls(flags: &RemoteFlags) -> Result<ClientTls> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| bad(format!("--{flag}: cannot read `{}`: {e}", path.display())))
    };
    let ca_certificate_pem = match &flags.tls_certificate {
        Some(path) => Some(read("tls_certificate", path)?),
        None => None,
    };
    let client_identity_pem = match (&flags.tls_client_certificate, &flags.tls_client_key) {
        (Some(cert), Some(key)) => Some((
            read("tls_client_certificate", cert)?,
            read("tls_client_key", key)?,
        )),
        _ => None,
    };
    Ok(ClientTls {
        ca_certificate_pem,
        client_identity_pem,
    })
}

/// `10`, `10s` or `1.5s` as a duration.
fn parse_seconds(text: &str) -> Option<Duration> {
    let number = text.trim().trim_end_matches('s');
    let seconds: f64 = number.parse().ok()?;
    // Out of range (negative, not finite, or beyond what a Duration holds) is no timeout.
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_seconds("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_seconds("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_seconds("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_seconds("ten"), None);
        assert_eq!(parse_seconds("-1"), None);
        assert_eq!(parse_seconds("1e30"), None);
        assert_eq!(parse_seconds("inf"), None);
    }

    #[test]
    fn flags_override_kiln_toml() {
        let section = RemoteSection {
            cache: Some("grpc://from-toml:1".into()),
            download_outputs: Some("minimal".into()),
            ..Default::default()
        };
        let flags = RemoteFlags {
            remote_download_outputs: Some(DownloadOutputsArg::All),
            noremote_upload_local_results: true,
            ..Default::default()
        };
        let remote = tier(&section, &flags, DigestFunction::Blake3)
            .unwrap()
            .unwrap();
        assert_eq!(remote.download, DownloadOutputs::All);
        assert!(!remote.upload_local_results);
        let off = RemoteFlags {
            remote_cache: Some(String::new()),
            ..Default::default()
        };
        assert!(tier_is_none(&section, &off));
        let bad_url = RemoteFlags {
            remote_cache: Some("http://x:1".into()),
            ..Default::default()
        };
        assert!(tier(&RemoteSection::default(), &bad_url, DigestFunction::Blake3).is_err());
    }

    fn tier_is_none(section: &RemoteSection, flags: &RemoteFlags) -> bool {
        matches!(tier(section, flags, DigestFunction::Blake3), Ok(None))
    }
}
