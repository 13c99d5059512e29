//! The remote cache tier from `[remote]` in kiln.toml and the `--remote_*` flags (flags win).

use std::path::{Path, PathBuf};
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
    root: &Path,
    section: &RemoteSection,
    flags: &RemoteFlags,
    function: DigestFunction,
) -> Result<Option<RemoteTier>> {
    let url = flags.remote_cache.as_ref().or(section.cache.as_ref());
    let Some(url) = url.map(|u| u.trim()).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let from_flags = flags
        .remote_header
        .iter()
        .map(|text| parse_header(text).map_err(|e| bad(format!("--remote_header: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let headers = merge_headers(&section.headers, from_flags);
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
        tls: client_tls(root, section, flags)?,
    };
    let client = RemoteClient::new(config).map_err(|e| bad(e.to_string()))?;
    Ok(Some(RemoteTier {
        cache: std::sync::Arc::new(client),
        download,
        upload_local_results,
    }))
}

/// The certificates named by `--tls_certificate`, `--tls_client_certificate` and
/// `--tls_client_key` (or the `[remote]` keys of the same names, relative to the workspace root
/// `root`; flags win), read now so that a wrong path stops the command before the build.
fn client_tls(root: &Path, section: &RemoteSection, flags: &RemoteFlags) -> Result<ClientTls> {
    let read = |source: &str, path: &Path| {
        std::fs::read(path)
            .map_err(|e| bad(format!("{source}: cannot read `{}`: {e}", path.display())))
    };
    let pick = |flag: &Option<PathBuf>, key: &Option<PathBuf>, name: &str| match (flag, key) {
        (Some(path), _) => Some((format!("--{name}"), path.clone())),
        (None, Some(path)) => Some((format!("kiln.toml [remote] {name}"), root.join(path))),
        (None, None) => None,
    };
    let ca = pick(
        &flags.tls_certificate,
        &section.tls_certificate,
        "tls_certificate",
    );
    let ca_certificate_pem = match ca {
        Some((source, path)) => Some(read(&source, &path)?),
        None => None,
    };
    let cert = pick(
        &flags.tls_client_certificate,
        &section.tls_client_certificate,
        "tls_client_certificate",
    );
    let key = pick(
        &flags.tls_client_key,
        &section.tls_client_key,
        "tls_client_key",
    );
    let client_identity_pem = match (cert, key) {
        (Some((cert_source, cert)), Some((key_source, key))) => {
            Some((read(&cert_source, &cert)?, read(&key_source, &key)?))
        }
        (None, None) => None,
        _ => {
            return Err(bad(
                "tls_client_certificate and tls_client_key go together: give both or neither"
                    .to_string(),
            ))
        }
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

/// kiln.toml's headers, each replaced by the flags that name it; a name given by several
/// `--remote_header` flags gets their values as one comma-separated list, as Bazel sends them.
fn merge_headers(
    from_toml: &std::collections::BTreeMap<String, String>,
    from_flags: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = from_toml
        .iter()
        .filter(|(k, _)| !from_flags.iter().any(|(f, _)| f.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in from_flags {
        match headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
        {
            Some((_, values)) => {
                values.push(',');
                values.push_str(&value);
            }
            None => headers.push((key, value)),
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_header_flags_are_joined_and_replace_kiln_toml() {
        let toml = [
            ("authorization".to_string(), "Bearer toml".to_string()),
            ("x-team".to_string(), "build".to_string()),
        ]
        .into_iter()
        .collect();
        let flags = vec![
            ("Authorization".to_string(), "Bearer flag".to_string()),
            ("x-tag".to_string(), "a".to_string()),
            ("x-tag".to_string(), "b".to_string()),
        ];
        assert_eq!(
            merge_headers(&toml, flags),
            [
                ("x-team", "build"),
                ("Authorization", "Bearer flag"),
                ("x-tag", "a,b"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

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
        let remote = tier(Path::new("/ws"), &section, &flags, DigestFunction::Blake3)
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
        assert!(tier(
            Path::new("/ws"),
            &RemoteSection::default(),
            &bad_url,
            DigestFunction::Blake3
        )
        .is_err());
    }

    fn tier_is_none(section: &RemoteSection, flags: &RemoteFlags) -> bool {
        matches!(
            tier(Path::new("/ws"), section, flags, DigestFunction::Blake3),
            Ok(None)
        )
    }

    #[test]
    fn tls_files_come_from_flags_or_kiln_toml_relative_to_the_workspace() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("ca.pem"), "toml ca").unwrap();
        std::fs::write(root.path().join("flag-ca.pem"), "flag ca").unwrap();
        let section = RemoteSection {
            tls_certificate: Some("ca.pem".into()),
            ..Default::default()
        };
        let tls = client_tls(root.path(), &section, &RemoteFlags::default()).unwrap();
        assert_eq!(tls.ca_certificate_pem.as_deref(), Some(&b"toml ca"[..]));
        let flags = RemoteFlags {
            tls_certificate: Some(root.path().join("flag-ca.pem")),
            ..Default::default()
        };
        let tls = client_tls(root.path(), &section, &flags).unwrap();
        assert_eq!(tls.ca_certificate_pem.as_deref(), Some(&b"flag ca"[..]));

        let missing = RemoteSection {
            tls_certificate: Some("nope.pem".into()),
            ..Default::default()
        };
        let err = client_tls(root.path(), &missing, &RemoteFlags::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("kiln.toml [remote] tls_certificate: cannot read"),
            "{err}"
        );
        let half = RemoteSection {
            tls_client_certificate: Some("ca.pem".into()),
            ..Default::default()
        };
        let err = client_tls(root.path(), &half, &RemoteFlags::default()).unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
    }
}
