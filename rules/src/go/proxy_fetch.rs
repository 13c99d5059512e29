//! Fetching a module's zip from the module proxies `GOPROXY` lists, as cmd/go walks them: entries
//! separated by `,` fall through to the next only when a proxy says it has no such module (404 or
//! 410), entries separated by `|` fall through on any error; `off` forbids downloading. Kiln
//! fetches only from proxies (`https://`, `http://`, `file://`): `direct` (a version-control
//! checkout) is skipped.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// cmd/go's default `GOPROXY`.
pub const DEFAULT_GOPROXY: &str = "https://proxy.golang.org,direct";

/// A module zip larger than this is refused (a Go SDK is ~80 MB).
const MAX_ZIP_BYTES: u64 = 1 << 30;

/// One entry of `GOPROXY` and whether any error (not only "not found") moves on to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyEntry {
    /// A proxy URL, `direct` or `off`.
    pub source: String,
    /// The separator after it was `|`.
    pub fall_through_on_error: bool,
}

/// The entries of a `GOPROXY` value (empty entries dropped; an empty value is the default).
pub fn parse_goproxy(value: &str) -> Vec<ProxyEntry> {
    let value = if value.trim().is_empty() {
        DEFAULT_GOPROXY
    } else {
        value
    };
    let mut entries = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let (entry, separator, tail) = match rest.find([',', '|']) {
            Some(i) => (&rest[..i], Some(rest.as_bytes()[i]), &rest[i + 1..]),
            None => (rest, None, ""),
        };
        let entry = entry.trim();
        if !entry.is_empty() {
            entries.push(ProxyEntry {
                source: entry.to_string(),
                fall_through_on_error: separator == Some(b'|'),
            });
        }
        rest = tail;
    }
    entries
}

/// A module path or version as proxies spell it: each upper-case letter as `!` and its lower
/// case (golang.org/x/mod's `module.EscapePath`).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Why one proxy did not give the file.
#[derive(Debug)]
enum GetError {
    /// The proxy has no such module or version (404, 410, a missing `file://` path).
    NotFound(String),
    /// Anything else.
    Failed(String),
}

/// Fetches `module@version`'s zip into `dest` from the proxies of `goproxy`.
pub fn fetch_zip(goproxy: &str, module: &str, version: &str, dest: &Path) -> Result<(), String> {
    let what = format!("{module}@{version}");
    let mut tried = Vec::new();
    for entry in parse_goproxy(goproxy) {
        match entry.source.as_str() {
            "off" => {
                return Err(format!(
                    "GOPROXY=off forbids downloading {what}{}",
                    tried_text(&tried)
                ))
            }
            "direct" | "noproxy" => {
                tried.push(format!(
                    "`{}`: skipped (Kiln fetches from proxies only)",
                    entry.source
                ));
                continue;
            }
            _ => {}
        }
        let url = format!(
            "{}/{}/@v/{}.zip",
            entry.source.trim_end_matches('/'),
            escape(module),
            escape(version)
        );
        match get(&url, dest) {
            Ok(()) => return Ok(()),
            Err(GetError::NotFound(why)) => tried.push(format!("{url}: {why}")),
            Err(GetError::Failed(why)) if entry.fall_through_on_error => {
                tried.push(format!("{url}: {why}"))
            }
            Err(GetError::Failed(why)) => return Err(format!("fetching {url}: {why}")),
        }
    }
    Err(format!(
        "no module proxy in GOPROXY has {what}{}",
        tried_text(&tried)
    ))
}

fn tried_text(tried: &[String]) -> String {
    if tried.is_empty() {
        String::new()
    } else {
        format!(" (tried {})", tried.join("; "))
    }
}

/// Copies the file at `url` to `dest`.
fn get(url: &str, dest: &Path) -> Result<(), GetError> {
    if let Some(path) = url.strip_prefix("file://") {
        return match std::fs::copy(path, dest) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(GetError::NotFound("no such file".into()))
            }
            Err(e) => Err(GetError::Failed(e.to_string())),
        };
    }
    if !url.starts_with("https://") && !url.starts_with("http://") {
        return Err(GetError::Failed(
            "not an https://, http:// or file:// URL".into(),
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(ureq::Proxy::try_from_env())
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_global(Some(Duration::from_secs(600)))
        .http_status_as_error(false)
        // The system's trust store (with SSL_CERT_FILE / SSL_CERT_DIR), as cmd/go uses it: a
        // proxy behind a company's own certificate authority must work as it does for `go`.
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .map_err(|e| GetError::Failed(e.to_string()))?;
    let status = response.status().as_u16();
    if status == 404 || status == 410 {
        return Err(GetError::NotFound(format!("HTTP {status}")));
    }
    if status != 200 {
        return Err(GetError::Failed(format!("HTTP {status}")));
    }
    let mut body = response.into_body().into_reader().take(MAX_ZIP_BYTES + 1);
    let mut file = std::fs::File::create(dest)
        .map_err(|e| GetError::Failed(format!("{}: {e}", dest.display())))?;
    let copied = std::io::copy(&mut body, &mut file)
        .map_err(|e| GetError::Failed(format!("reading the response: {e}")))?;
    if copied > MAX_ZIP_BYTES {
        return Err(GetError::Failed(format!(
            "the zip is larger than {MAX_ZIP_BYTES} bytes"
        )));
    }
    file.flush()
        .map_err(|e| GetError::Failed(format!("{}: {e}", dest.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goproxy_lists_keep_their_separators() {
        let entries = parse_goproxy("https://a.example, https://b.example|file:///srv/p,direct");
        let pairs: Vec<(&str, bool)> = entries
            .iter()
            .map(|e| (e.source.as_str(), e.fall_through_on_error))
            .collect();
        assert_eq!(
            pairs,
            [
                ("https://a.example", false),
                ("https://b.example", true),
                ("file:///srv/p", false),
                ("direct", false)
            ]
        );
        assert_eq!(parse_goproxy("")[0].source, "https://proxy.golang.org");
    }

    #[test]
    fn paths_are_case_escaped() {
        assert_eq!(
            escape("github.com/BurntSushi/toml"),
            "github.com/!burnt!sushi/toml"
        );
    }

    #[test]
    fn a_missing_module_falls_through_and_off_stops() {
        let empty = tempfile::tempdir().expect("temp dir");
        let full = tempfile::tempdir().expect("temp dir");
        let zip_dir = full.path().join("example.com/m/@v");
        std::fs::create_dir_all(&zip_dir).expect("mkdir");
        std::fs::write(zip_dir.join("v1.0.0.zip"), b"zip bytes").expect("write");
        let dest = empty.path().join("out.zip");
        let goproxy = format!(
            "file://{},file://{}",
            empty.path().display(),
            full.path().display()
        );
        fetch_zip(&goproxy, "example.com/m", "v1.0.0", &dest).expect("found in the second");
        assert_eq!(std::fs::read(&dest).expect("read"), b"zip bytes");

        let err = fetch_zip(
            &format!("file://{},off", empty.path().display()),
            "example.com/m",
            "v1.0.0",
            &dest,
        )
        .expect_err("off");
        assert!(err.contains("GOPROXY=off"), "{err}");
        let err = fetch_zip("direct", "example.com/m", "v1.0.0", &dest).expect_err("direct");
        assert!(
            err.contains("no module proxy") && err.contains("skipped"),
            "{err}"
        );
    }
}
