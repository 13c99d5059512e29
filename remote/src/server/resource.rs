//! ByteStream resource names:
//! `{instance}/[uploads/{uuid}/](blobs|compressed-blobs/{compressor})/[{function}/]{hash}/{size}[/…]`.
//!
//! The digest-function segment is present for BLAKE3 (`blake3`) and absent for SHA-256, whose
//! use is inferred from the hash length; a `sha256` segment is accepted too. The instance name is
//! ignored, as bazel-remote does. Anything after the size is optional metadata and ignored.

use kiln_cache::{Digest, DigestFunction};
use tonic::Status;

use super::digests;

/// How a blob travels in a ByteStream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Raw bytes (`blobs/`).
    Identity,
    /// A zstd frame of the blob (`compressed-blobs/zstd/`).
    Zstd,
}

/// A parsed resource name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The blob named.
    pub digest: Digest,
    /// How its bytes are encoded on the wire.
    pub compression: Compression,
}

/// Parses a download name (`…/blobs/…` without an `uploads/{uuid}` part).
pub fn parse_read(name: &str) -> Result<Resource, Status> {
    let segments: Vec<&str> = name.split('/').collect();
    let at = blob_keyword(&segments, name)?;
    if at >= 2 && segments[at - 2] == "uploads" {
        return Err(bad(name, "an upload name cannot be read"));
    }
    parse_blob(&segments[at..], name)
}

/// Parses an upload name (`…/uploads/{uuid}/blobs/…`).
pub fn parse_write(name: &str) -> Result<Resource, Status> {
    let segments: Vec<&str> = name.split('/').collect();
    let at = blob_keyword(&segments, name)?;
    if at < 2 || segments[at - 2] != "uploads" || segments[at - 1].is_empty() {
        return Err(bad(name, "expected `uploads/{uuid}/` before the blob"));
    }
    parse_blob(&segments[at..], name)
}

/// Index of the first `blobs` or `compressed-blobs` segment.
fn blob_keyword(segments: &[&str], name: &str) -> Result<usize, Status> {
    segments
        .iter()
        .position(|s| *s == "blobs" || *s == "compressed-blobs")
        .ok_or_else(|| bad(name, "no `blobs/` or `compressed-blobs/` segment"))
}

fn parse_blob(rest: &[&str], name: &str) -> Result<Resource, Status> {
    let (compression, rest) = match rest {
        ["blobs", rest @ ..] => (Compression::Identity, rest),
        ["compressed-blobs", "zstd", rest @ ..] => (Compression::Zstd, rest),
        ["compressed-blobs", other, ..] => {
            return Err(bad(name, &format!("compressor `{other}` is not supported")))
        }
        _ => return Err(bad(name, "missing compressor")),
    };
    let (function, rest) = match rest {
        ["blake3", rest @ ..] => (DigestFunction::Blake3, rest),
        ["sha256", rest @ ..] => (DigestFunction::Sha256, rest),
        _ => (DigestFunction::Sha256, rest),
    };
    let [hash, size, ..] = rest else {
        return Err(bad(name, "expected `{hash}/{size}`"));
    };
    let size: i64 = size
        .parse()
        .map_err(|_| bad(name, &format!("size `{size}` is not a number")))?;
    let digest = digests::from_parts(function, hash, size)?;
    Ok(Resource {
        digest,
        compression,
    })
}

fn bad(name: &str, why: &str) -> Status {
    Status::invalid_argument(format!("Bad resource name `{name}`: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn show(r: Result<Resource, Status>) -> String {
        match r {
            Ok(r) => format!(
                "{} {} {:?}",
                r.digest.function, r.digest.size, r.compression
            ),
            Err(e) => format!("{:?}", e.code()),
        }
    }

    #[test]
    fn read_names() {
        let cases = [
            (format!("blobs/{H}/5"), "sha256 5 Identity"),
            (format!("inst/a/blobs/{H}/5"), "sha256 5 Identity"),
            (format!("blobs/blake3/{H}/7"), "blake3 7 Identity"),
            (format!("blobs/sha256/{H}/7"), "sha256 7 Identity"),
            (
                format!("i/compressed-blobs/zstd/{H}/9"),
                "sha256 9 Identity",
            ),
            (
                format!("compressed-blobs/zstd/blake3/{H}/9/meta"),
                "blake3 9 Zstd",
            ),
            (format!("compressed-blobs/lz4/{H}/9"), "InvalidArgument"),
            (format!("blobs/{H}"), "InvalidArgument"),
            (format!("blobs/{H}/-1"), "InvalidArgument"),
            (format!("blobs/{H}/x"), "InvalidArgument"),
            ("blobs/abc/3".to_string(), "InvalidArgument"),
            (format!("uploads/u/blobs/{H}/5"), "InvalidArgument"),
            ("".to_string(), "InvalidArgument"),
        ];
        for (name, want) in cases {
            let want = want.replace("sha256 9 Identity", "sha256 9 Zstd");
            assert_eq!(show(parse_read(&name)), want, "{name}");
        }
    }

    #[test]
    fn write_names() {
        assert_eq!(
            show(parse_write(&format!("uploads/1-2/blobs/{H}/5"))),
            "sha256 5 Identity"
        );
        assert_eq!(
            show(parse_write(&format!(
                "main/uploads/u/compressed-blobs/zstd/blake3/{H}/5"
            ))),
            "blake3 5 Zstd"
        );
        assert_eq!(
            show(parse_write(&format!("blobs/{H}/5"))),
            "InvalidArgument"
        );
        assert_eq!(
            show(parse_write(&format!("uploads//blobs/{H}/5"))),
            "InvalidArgument"
        );
    }
}
