//! Fetching a module's zip from the module proxies `GOPROXY` lists, as cmd/go walks them: entries
//! separated by `,` fall through to the next only when a proxy says it has no such module (404 or
//! 410), entries separated by `|` fall through on any error; `off` forbids downloading; `direct`
//! ends the list (cmd/go would check out the version-control repository there, which Kiln does
//! not: it fetches only from proxies, `https://`, `http://` and `file://`). An entry without a
//! scheme is an `https://` URL, as cmd/go reads it. Credentials in a proxy URL are used but never
//! printed; `.netrc` and `GOAUTH` are not read.

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
            "direct" => {
                tried.push(
                    "`direct`: a version-control checkout, which Kiln does not do".to_string(),
                );
                break;
            }
            _ => {}
        }
        let url = format!(
            "{}/{}/@v/{}.zip",
            with_scheme(&entry.source).trim_end_matches('/'),
            escape(module),
            escape(version)
        );
        let shown = redacted(&url);
        match get(&url, dest) {
            Ok(()) => return Ok(()),
            Err(GetError::NotFound(why)) => tried.push(format!("{shown}: {why}")),
            Err(GetError::Failed(why)) if entry.fall_through_on_error => {
                tried.push(format!("{shown}: {why}"))
            }
            Err(GetError::Failed(why)) => return Err(format!("fetching {shown}: {why}")),
        }
    }
    Err(format!(
        "no module proxy in GOPROXY has {what}{}",
        tried_text(&tried)
    ))
}

/// A `GOPROXY` entry as a URL: cmd/go adds `https://` to one that has a `.`, `:` or `/` but no
/// `:/` and is not an absolute path.
pub fn with_scheme(entry: &str) -> String {
    if entry.contains(['.', ':', '/']) && !entry.contains(":/") && !entry.starts_with('/') {
        format!("https://{entry}")
    } else {
        entry.to_string()
    }
}

/// `url` with any `user:password@` left out, for messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://xxxxx@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `%XX` escapes of a `file://` URL's path decoded.
fn percent_decoded(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
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
        use std::os::unix::ffi::OsStringExt;
        let path = std::path::PathBuf::from(std::ffi::OsString::from_vec(percent_decoded(path)));
        return match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(GetError::NotFound("no such file".into()))
            }
            Err(e) => Err(GetError::Failed(e.to_string())),
            Ok(meta) if !meta.is_file() => Err(GetError::Failed("not a regular file".into())),
            Ok(meta) if meta.len() > MAX_ZIP_BYTES => Err(GetError::Failed(format!(
                "the zip is larger than {MAX_ZIP_BYTES} bytes"
            ))),
            Ok(_) => std::fs::copy(&path, dest)
                .map(|_| ())
                .map_err(|e| GetError::Failed(e.to_string())),
        };
    }
    if !url.starts_with("https://") && !url.starts_with("http://") {
        return Err(GetError::Failed(
            "not an https://, http:// or file:// URL".into(),
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(ureq::Proxy::try_from_env())
        // No limit on the whole download (a slow link may take long for an SDK); only on
        // connecting and on the proxy's first answer.
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
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
        // `direct` ends the list: the proxy after it is never asked.
        let err = fetch_zip(
            &format!("direct,file://{}", full.path().display()),
            "example.com/m",
            "v1.0.0",
            &dest,
        )
        .expect_err("direct");
        assert!(
            err.contains("no module proxy") && err.contains("`direct`"),
            "{err}"
        );

        // A proxy that fails (here: a directory where the zip should be) stops a `,` list but
        // not a `|` list.
        let broken = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(broken.path().join("example.com/m/@v/v1.0.0.zip")).expect("mkdir");
        let err = fetch_zip(
            &format!(
                "file://{},file://{}",
                broken.path().display(),
                full.path().display()
            ),
            "example.com/m",
            "v1.0.0",
            &dest,
        )
        .expect_err("a failure stops a comma list");
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::remove_file(&dest).ok();
        fetch_zip(
            &format!(
                "file://{}|file://{}",
                broken.path().display(),
                full.path().display()
            ),
            "example.com/m",
            "v1.0.0",
            &dest,
        )
        .expect("a pipe list falls through on any error");
        assert_eq!(std::fs::read(&dest).expect("read"), b"zip bytes");
    }

    #[test]
    fn entries_without_a_scheme_are_https_and_credentials_are_not_shown() {
        assert_eq!(
            with_scheme("goproxy.corp.example"),
            "https://goproxy.corp.example"
        );
        assert_eq!(
            with_scheme("https://proxy.golang.org"),
            "https://proxy.golang.org"
        );
        assert_eq!(with_scheme("file:///srv/proxy"), "file:///srv/proxy");
        assert_eq!(with_scheme("direct"), "direct");
        assert_eq!(
            redacted("https://user:token@proxy.corp/golang.org/toolchain/@v/x.zip"),
            "https://xxxxx@proxy.corp/golang.org/toolchain/@v/x.zip"
        );
        assert_eq!(
            redacted("https://proxy.golang.org/a@v/x"),
            "https://proxy.golang.org/a@v/x"
        );
        assert_eq!(percent_decoded("/srv/my%20proxy"), b"/srv/my proxy");
    }
}
