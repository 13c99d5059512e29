//! Content digests: BLAKE3 or SHA-256 hash plus size, the REAPI `Digest` shape.
//!
//! Both functions give 32-byte (64 hex digit) hashes, so anything keyed on a digest keys on the
//! pair (function, hash), never on the hash alone.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::CacheError;

/// Single updates at least this large are hashed with BLAKE3's multi-threaded mode. Streamed
/// files never are (their chunks are smaller): during a build the cores are busy running
/// actions, and at 512 KiB per update the worker wake-ups cost more CPU than they saved. On a
/// 2-core VM, hashing a Go binary of ~7 MiB from `/dev/shm` took 1.7 ms of CPU on one thread and
/// 2.5 ms split across rayon's; in a build relinking 25 such binaries, the output hashes took
/// ~6 ms each once the link processes competed with the workers.
const PARALLEL_THRESHOLD: usize = 16 << 20;
/// Read buffer for streaming hashes: large enough for BLAKE3's SIMD paths and few reads, small
/// enough not to fault in a fresh megabyte for every file.
const CHUNK: usize = 256 << 10;
/// Files up to this size are hashed from one read.
const SMALL_FILE: u64 = 64 << 10;

/// The hash function a workspace uses for its digests.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DigestFunction {
    /// BLAKE3, Kiln's default.
    #[default]
    Blake3,
    /// SHA-256, for older REAPI servers and Bazel clients.
    Sha256,
}

impl DigestFunction {
    /// Both functions, for iterating over storage directories.
    pub const ALL: [DigestFunction; 2] = [DigestFunction::Blake3, DigestFunction::Sha256];

    /// Lowercase name used in paths, databases and `kiln.toml`: `blake3` or `sha256`.
    pub fn name(self) -> &'static str {
        match self {
            DigestFunction::Blake3 => "blake3",
            DigestFunction::Sha256 => "sha256",
        }
    }
}

impl fmt::Display for DigestFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DigestFunction {
    type Err = CacheError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "blake3" => Ok(DigestFunction::Blake3),
            "sha256" | "sha-256" => Ok(DigestFunction::Sha256),
            _ => Err(CacheError::UnknownDigestFunction(s.to_string())),
        }
    }
}

/// A content digest: function, 32-byte hash and size in bytes.
///
/// Displays as `<hex>/<size>` (the REAPI resource-name form). Serializes as
/// `{"function": "blake3", "hash": "<hex>", "size": N}`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "DigestRepr", try_from = "DigestRepr")]
pub struct Digest {
    /// The hash function that produced `hash`.
    pub function: DigestFunction,
    /// The raw hash.
    pub hash: [u8; 32],
    /// Size of the content in bytes.
    pub size: u64,
}

impl Digest {
    /// Digest of an in-memory byte string.
    pub fn of_bytes(function: DigestFunction, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(function);
        hasher.update(bytes);
        hasher.finish()
    }

    /// Digest of a file's content, streamed on the calling thread.
    pub fn of_file(function: DigestFunction, path: &Path) -> io::Result<Digest> {
        let mut file = File::open(path)?;
        // Most build files are small: read them whole instead of zeroing a read buffer each time.
        if file.metadata()?.len() <= SMALL_FILE {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            return Ok(Self::of_bytes(function, &bytes));
        }
        Self::of_reader(function, file)
    }

    /// Digest of everything `reader` yields.
    pub fn of_reader(function: DigestFunction, mut reader: impl Read) -> io::Result<Digest> {
        let mut hasher = Hasher::new(function);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_full(&mut reader, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    }

    /// Digest of the empty byte string.
    pub fn empty(function: DigestFunction) -> Digest {
        Digest::of_bytes(function, &[])
    }

    /// The hash as 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        // By hand: `hex::encode` goes through a char iterator, and keys, paths and protos of every
        // cache hit call this several times.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.hash {
            out.push(DIGITS[usize::from(byte >> 4)] as char);
            out.push(DIGITS[usize::from(byte & 0x0f)] as char);
        }
        out
    }

    /// Builds a digest from 64 hex digits and a size.
    pub fn from_hex(function: DigestFunction, hex: &str, size: u64) -> Result<Digest, CacheError> {
        let invalid = |reason| CacheError::InvalidDigest {
            input: hex.to_string(),
            reason,
        };
        if hex.len() != 64 {
            return Err(invalid("expected 64 hex digits"));
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hex, &mut hash).map_err(|_| invalid("not hexadecimal"))?;
        Ok(Digest {
            function,
            hash,
            size,
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.hex(), self.size)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.function, self.hex(), self.size)
    }
}

#[derive(Serialize, Deserialize)]
struct DigestRepr {
    function: DigestFunction,
    hash: String,
    size: u64,
}

impl From<Digest> for DigestRepr {
    fn from(d: Digest) -> Self {
        DigestRepr {
            function: d.function,
            hash: d.hex(),
            size: d.size,
        }
    }
}

impl TryFrom<DigestRepr> for Digest {
    type Error = CacheError;

    fn try_from(r: DigestRepr) -> Result<Self, Self::Error> {
        Digest::from_hex(r.function, &r.hash, r.size)
    }
}

/// Incremental hasher for either function; counts the bytes it has seen.
pub(crate) struct Hasher {
    state: HasherState,
    pub(crate) size: u64,
}

enum HasherState {
    Blake3(Box<blake3::Hasher>),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub(crate) fn new(function: DigestFunction) -> Hasher {
        let state = match function {
            DigestFunction::Blake3 => HasherState::Blake3(Box::new(blake3::Hasher::new())),
            DigestFunction::Sha256 => HasherState::Sha256(sha2::Sha256::new()),
        };
        Hasher { state, size: 0 }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        match &mut self.state {
            HasherState::Blake3(h) if bytes.len() >= PARALLEL_THRESHOLD => {
                h.update_rayon(bytes);
            }
            HasherState::Blake3(h) => {
                h.update(bytes);
            }
            HasherState::Sha256(h) => h.update(bytes),
        }
    }

    pub(crate) fn finish(self) -> Digest {
        let (function, hash) = match self.state {
            HasherState::Blake3(h) => (DigestFunction::Blake3, *h.finalize().as_bytes()),
            HasherState::Sha256(h) => (DigestFunction::Sha256, h.finalize().into()),
        };
        Digest {
            function,
            hash,
            size: self.size,
        }
    }
}

/// Reads until `buf` is full or the reader is exhausted.
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// An [`io::Write`] adapter that hashes every byte the inner writer accepts.
///
/// Use it to hash while copying (`io::copy(&mut src, &mut writer)`), or over [`io::sink`] to
/// hash a stream without storing it.
pub struct DigestWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> DigestWriter<W> {
    /// Wraps `inner`, hashing with `function`.
    pub fn new(function: DigestFunction, inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Hasher::new(function),
        }
    }

    /// Number of bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.hasher.size
    }

    /// The inner writer, for calls such as `sync_all`.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Returns the inner writer and the digest of everything written.
    pub fn finish(self) -> (W, Digest) {
        (self.inner, self.hasher.finish())
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLAKE3_EMPTY: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
    const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const BLAKE3_ABC: &str = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";

    #[test]
    fn known_vectors() {
        let b = Digest::empty(DigestFunction::Blake3);
        assert_eq!(b.hex(), BLAKE3_EMPTY);
        assert_eq!(b.size, 0);
        assert_eq!(Digest::empty(DigestFunction::Sha256).hex(), SHA256_EMPTY);
        let abc = Digest::of_bytes(DigestFunction::Sha256, b"abc");
        assert_eq!(abc.hex(), SHA256_ABC);
        assert_eq!(abc.size, 3);
        assert_eq!(
            Digest::of_bytes(DigestFunction::Blake3, b"abc").hex(),
            BLAKE3_ABC
        );
        assert_eq!(DigestFunction::default(), DigestFunction::Blake3);
    }

    #[test]
    fn streaming_matches_one_shot_for_both_functions() {
        // Larger than PARALLEL_THRESHOLD and CHUNK, so that the one-shot hash takes the rayon
        // path and the streamed ones go through several chunks.
        let len = PARALLEL_THRESHOLD.max(3 * CHUNK) + 17;
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        for f in DigestFunction::ALL {
            let one_shot = Digest::of_bytes(f, &data);
            let streamed = Digest::of_reader(f, &data[..]).unwrap();
            assert_eq!(one_shot, streamed);
            let mut w = DigestWriter::new(f, Vec::new());
            for piece in data.chunks(7001) {
                w.write_all(piece).unwrap();
            }
            let (copy, written) = w.finish();
            assert_eq!(written, one_shot);
            assert_eq!(copy, data);
            assert_eq!(one_shot.size, data.len() as u64);
        }
        let blake = blake3::hash(&data);
        assert_eq!(
            Digest::of_bytes(DigestFunction::Blake3, &data).hash,
            *blake.as_bytes()
        );
    }

    #[test]
    fn text_forms_roundtrip() {
        let d = Digest::of_bytes(DigestFunction::Sha256, b"abc");
        assert_eq!(d.to_string(), format!("{SHA256_ABC}/3"));
        assert_eq!(
            Digest::from_hex(DigestFunction::Sha256, SHA256_ABC, 3).unwrap(),
            d
        );
        assert!(Digest::from_hex(DigestFunction::Sha256, "abc", 3).is_err());
        assert!(Digest::from_hex(DigestFunction::Sha256, &"zz".repeat(32), 3).is_err());
        assert_eq!(
            "blake3".parse::<DigestFunction>().unwrap(),
            DigestFunction::Blake3
        );
        assert_eq!(
            "SHA256".parse::<DigestFunction>().unwrap(),
            DigestFunction::Sha256
        );
        assert!("md5".parse::<DigestFunction>().is_err());
        assert_eq!(DigestFunction::Sha256.name(), "sha256");
    }
}
