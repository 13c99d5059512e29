//! Converting REAPI `Digest` messages and `digest_function` fields into cache digests, with the
//! status codes the spec asks for when they are malformed.
//!
//! A request that names no digest function (`UNKNOWN`, as Bazel 4 sends) means SHA-256: of the
//! "old" functions whose use is inferred from the hash length, SHA-256 is the only one with 64
//! hex digits that this server stores.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use kiln_cache::{Digest, DigestFunction};
use re::digest_function::Value as Fn;
use tonic::Status;

/// The digest functions this server offers, as REAPI enum values.
pub const OFFERED: [Fn; 2] = [Fn::Sha256, Fn::Blake3];

/// The function a request's `digest_function` field selects.
pub fn function(value: i32) -> Result<DigestFunction, Status> {
    match Fn::try_from(value) {
        Ok(Fn::Unknown) | Ok(Fn::Sha256) => Ok(DigestFunction::Sha256),
        Ok(Fn::Blake3) => Ok(DigestFunction::Blake3),
        Ok(other) => Err(Status::invalid_argument(format!(
            "Digest function `{}` is not offered; use SHA256 or BLAKE3",
            other.as_str_name()
        ))),
        Err(_) => Err(Status::invalid_argument(format!(
            "Unknown digest function value {value}"
        ))),
    }
}

/// Parses a `Digest` message for `function`: lowercase 64-hex hash, non-negative size.
pub fn parse(function: DigestFunction, digest: Option<&re::Digest>) -> Result<Digest, Status> {
    let digest = digest.ok_or_else(|| Status::invalid_argument("Missing digest"))?;
    from_parts(function, &digest.hash, digest.size_bytes)
}

/// Parses a hash and size as found in a message or a resource name.
pub fn from_parts(function: DigestFunction, hash: &str, size: i64) -> Result<Digest, Status> {
    if size < 0 {
        return Err(Status::invalid_argument(format!(
            "Digest `{hash}/{size}` has a negative size"
        )));
    }
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Status::invalid_argument(format!(
            "Digest hash `{hash}` is not 64 lowercase hex digits of {function}"
        )));
    }
    Digest::from_hex(function, hash, size as u64)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The `Digest` message for a cache digest.
pub fn to_proto(digest: &Digest) -> re::Digest {
    re::Digest {
        hash: digest.hex(),
        size_bytes: digest.size as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_function_means_sha256_and_others_are_refused() {
        assert_eq!(function(0).unwrap(), DigestFunction::Sha256);
        assert_eq!(function(1).unwrap(), DigestFunction::Sha256);
        assert_eq!(function(9).unwrap(), DigestFunction::Blake3);
        assert_eq!(
            function(2).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            function(99).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn malformed_digests_are_invalid_arguments() {
        let sha = DigestFunction::Sha256;
        let good = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(from_parts(sha, good, 0).is_ok());
        for (hash, size) in [(good, -1), ("abc", 3), (&good.to_uppercase()[..], 0)] {
            let err = from_parts(sha, hash, size).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{hash}/{size}");
        }
        assert_eq!(
            parse(sha, None).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
