//! What the user configures for a remote cache (`--remote_cache`, `--remote_instance_name`,
//! `--remote_header`, `--remote_timeout`), validated before a build starts so that a typo is a
//! command-line error, not a warning halfway through.

use std::time::Duration;

use kiln_cache::DigestFunction;
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};

/// A remote cache client's settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `grpc://host:port` (plain HTTP/2), `grpcs://host:port` or `host:port` (TLS, as in Bazel).
    pub url: String,
    /// REAPI instance name (empty for none).
    pub instance_name: String,
    /// Extra gRPC headers sent with every call, e.g. `authorization`.
    pub headers: Vec<(String, String)>,
    /// Deadline of one call (a ByteStream transfer gets more time per 16 MiB).
    pub timeout: Duration,
    /// The workspace's digest function; the server must offer it.
    pub function: DigestFunction,
    /// TLS material for a `grpcs://` cache beyond the system's roots.
    pub tls: ClientTls,
}

/// TLS material a `grpcs://` client can add to the system's trusted roots.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// PEM certificates trusted to sign the server's certificate (Bazel's `--tls_certificate`),
    /// besides the system's roots.
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// PEM certificate and private key shown to a server that asks for a client certificate
    /// (Bazel's `--tls_client_certificate` and `--tls_client_key`).
    pub client_identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    fn is_set(&self) -> bool {
        self.ca_certificate_pem.is_some() || self.client_identity_pem.is_some()
    }
}

/// A remote cache setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The URL's scheme or address is wrong.
    #[error(
        "Invalid remote cache `{url}`: {why}; expected `grpc://host:port` or `grpcs://host:port`"
    )]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// TLS certificates were given for a plain-text cache.
    #[error("TLS certificates were given, but the remote cache `{url}` is plain text; use `grpcs://host:port`")]
    TlsWithoutGrpcs {
        /// The URL as given.
        url: String,
    },
    /// A header is not `KEY=VALUE` with a valid gRPC key and printable ASCII value.
    #[error("Invalid remote header `{header}`: {why}")]
    BadHeader {
        /// The header as given.
        header: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Where to connect: an `http://` or `https://` URI for tonic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub uri: String,
    pub tls: bool,
}

/// A header ready to send.
pub(crate) type Header = (MetadataKey<Ascii>, MetadataValue<Ascii>);

impl ClientConfig {
    /// Checks the URL and headers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.target()?.tls && self.tls.is_set() {
            return Err(ConfigError::TlsWithoutGrpcs {
                url: self.url.clone(),
            });
        }
        self.metadata()?;
        Ok(())
    }

    pub(crate) fn target(&self) -> Result<Target, ConfigError> {
        let bad = |why: &str| ConfigError::BadUrl {
            url: self.url.clone(),
            why: why.to_string(),
        };
        let (tls, rest) = if let Some(rest) = self.url.strip_prefix("grpc://") {
            (false, rest)
        } else if let Some(rest) = self.url.strip_prefix("grpcs://") {
            (true, rest)
        } else if self.url.contains("://") {
            return Err(bad("only gRPC caches are supported"));
        } else {
            // No scheme means TLS, as in Bazel since 1.0.
            (true, self.url.as_str())
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(bad("it must name a host and port only"));
        }
        let uri = format!("{}://{rest}", if tls { "https" } else { "http" });
        tonic::transport::Endpoint::from_shared(uri.clone())
            .map_err(|e| bad(&format!("not a valid address ({e})")))?;
        Ok(Target { uri, tls })
    }

    pub(crate) fn metadata(&self) -> Result<Vec<Header>, ConfigError> {
        self.headers
            .iter()
            .map(|(key, value)| header(key, value))
            .collect()
    }
}

fn header(key: &str, value: &str) -> Result<Header, ConfigError> {
    let bad = |why: &str| ConfigError::BadHeader {
        header: format!("{key}={value}"),
        why: why.to_string(),
    };
    let lower = key.to_ascii_lowercase();
    if lower.ends_with("-bin") {
        return Err(bad("binary (`-bin`) headers are not supported"));
    }
    let key = MetadataKey::from_bytes(lower.as_bytes())
        .map_err(|_| bad("the key must be letters, digits, `-`, `_` or `.`"))?;
    if value.chars().any(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(bad("the value must be printable ASCII"));
    }
    let value =
        MetadataValue::try_from(value).map_err(|_| bad("the value must be printable ASCII"))?;
    Ok((key, value))
}

/// Parses one `--remote_header KEY=VALUE`.
pub fn parse_header(text: &str) -> Result<(String, String), ConfigError> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(ConfigError::BadHeader {
            header: text.to_string(),
            why: "expected KEY=VALUE".to_string(),
        });
    };
    let (key, value) = (key.trim(), value.trim());
    header(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> ClientConfig {
        ClientConfig {
            url: url.to_string(),
            instance_name: String::new(),
            headers: Vec::new(),
            timeout: Duration::from_secs(5),
            function: DigestFunction::Blake3,
            tls: ClientTls::default(),
        }
    }

    #[test]
    fn tls_certificates_need_a_grpcs_cache() {
        let with_ca = |url: &str| ClientConfig {
            tls: ClientTls {
                ca_certificate_pem: Some(b"pem".to_vec()),
                client_identity_pem: None,
            },
            ..config(url)
        };
        let err = with_ca("grpc://cache:9092").validate().unwrap_err();
        assert!(err.to_string().contains("use `grpcs://host:port`"), "{err}");
        assert!(with_ca("grpcs://cache:9092").validate().is_ok());
        assert!(config("grpc://cache:9092").validate().is_ok());
    }

    #[test]
    fn schemes() {
        let target = |url: &str| config(url).target().map_err(|e| e.to_string());
        assert_eq!(
            target("grpc://localhost:9092"),
            Ok(Target {
                uri: "http://localhost:9092".into(),
                tls: false
            })
        );
        assert_eq!(
            target("grpcs://cache.example:443/"),
            Ok(Target {
                uri: "https://cache.example:443".into(),
                tls: true
            })
        );
        assert_eq!(target("cache.example:443").map(|t| t.tls), Ok(true));
        let err = target("http://cache:8080").unwrap_err();
        assert!(err.contains("only gRPC caches"), "{err}");
        assert!(target("grpc://").is_err());
        assert!(target("grpc://host:1/path").is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("Authorization=Bearer abc").unwrap(),
            ("Authorization".to_string(), "Bearer abc".to_string())
        );
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("bad key=x").is_err());
        assert!(parse_header("x-bin=abc").is_err());
        assert!(parse_header("x=caf\u{e9}").is_err());
    }
}
