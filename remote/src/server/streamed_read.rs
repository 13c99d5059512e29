//! A large blob's Read, on a blocking thread: the blob is read in [`READ_CHUNK`] pieces while
//! [`BlobReader`] hashes it, optionally zstd-compressed on the way, and sent one piece behind,
//! so the last piece goes out only after the whole blob hashed to its name. Memory stays at a
//! few pieces whatever the blob's size.

use std::io::Write;

use bytes::Bytes;
use kiln_cache::{BlobReader, CacheError};
use tokio::sync::mpsc::Sender;
use tonic::Status;

use super::bytestream::READ_CHUNK;
use super::store::Store;

/// How the blob's bytes are sent.
pub(super) enum Encoding {
    /// As stored.
    Identity,
    /// As one zstd frame (`compressed-blobs/zstd`).
    Zstd(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

impl Encoding {
    /// A zstd frame at `level`.
    pub(super) fn zstd(level: i32) -> Result<Encoding, Status> {
        zstd::stream::write::Encoder::new(Vec::new(), level)
            .map(|encoder| Encoding::Zstd(Box::new(encoder)))
            .map_err(|e| Status::internal(format!("zstd: {e}")))
    }

    /// The bytes to send for one piece of the blob (zstd may hold them back for later).
    fn encode(&mut self, piece: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Encoding::Identity => Ok(piece),
            Encoding::Zstd(encoder) => {
                encoder.write_all(&piece)?;
                Ok(std::mem::take(encoder.get_mut()))
            }
        }
    }

    /// The bytes that end the stream.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoding::Identity => Ok(Vec::new()),
            Encoding::Zstd(encoder) => encoder.finish(),
        }
    }
}

/// Sends the part of `reader`'s encoded blob inside `[offset, end)` (positions in the encoded
/// stream), always one piece behind: the last goes out only after [`BlobReader::finish`]
/// verified the whole blob. An `offset` past the encoded end is OUT_OF_RANGE, found at the end.
/// Stops quietly when the client has gone.
pub(super) fn send_verified(
    mut reader: BlobReader,
    mut encoding: Encoding,
    (offset, end): (u64, u64),
    tx: &Sender<Result<Bytes, Status>>,
    store: &Store,
) {
    let digest = *reader.digest();
    let fail = |status: Status| {
        let _ = tx.blocking_send(Err(status));
    };
    let failed = |e: CacheError| {
        tracing::warn!(error = %e, %digest, "cache read failed mid-stream");
        fail(Status::internal(format!("Cannot read `{digest}`: {e}")));
    };
    let zstd_failed = |e: std::io::Error| fail(Status::internal(format!("zstd: {e}")));
    let mut range = Range {
        offset,
        end,
        produced: 0,
        held: None,
    };
    while range.produced < end {
        let raw = match reader.read_chunk(READ_CHUNK) {
            Ok(raw) if raw.is_empty() => break,
            Ok(raw) => raw,
            Err(e) => return failed(e),
        };
        let encoded = match encoding.encode(raw) {
            Ok(encoded) => encoded,
            Err(e) => return zstd_failed(e),
        };
        if let Some(piece) = range.hold(encoded) {
            store.metrics.bytes_out.inc_by(piece.len() as u64);
            if tx.blocking_send(Ok(piece)).is_err() {
                return;
            }
        }
    }
    match reader.finish() {
        Ok(true) => {}
        Ok(false) => {
            store.log_cache_warnings();
            return fail(Status::data_loss(format!(
                "Blob `{digest}` failed its digest check on the server (and was removed), or changed while it was read"
            )));
        }
        Err(e) => return failed(e),
    }
    let tail = match encoding.finish() {
        Ok(tail) => tail,
        Err(e) => return zstd_failed(e),
    };
    let before_tail = range.hold(tail);
    let produced = range.produced;
    if offset > produced {
        return fail(Status::out_of_range(format!(
            "read_offset {offset} is past the end ({produced} bytes)"
        )));
    }
    for piece in before_tail.into_iter().chain(range.held) {
        store.metrics.bytes_out.inc_by(piece.len() as u64);
        if tx.blocking_send(Ok(piece)).is_err() {
            return;
        }
    }
    if produced == offset {
        // Nothing in range: one empty response, as for an empty blob.
        let _ = tx.blocking_send(Ok(Bytes::new()));
    }
}

/// The requested part of the encoded stream, and the piece held back from it.
struct Range {
    offset: u64,
    end: u64,
    /// Encoded bytes produced so far: the position of the next encoded piece.
    produced: u64,
    held: Option<Bytes>,
}

impl Range {
    /// Takes the next encoded piece: keeps its part inside the range as the held piece and
    /// returns the one held before, which may now be sent.
    fn hold(&mut self, encoded: Vec<u8>) -> Option<Bytes> {
        let start = self.produced;
        self.produced += encoded.len() as u64;
        let (lo, hi) = (self.offset.max(start), self.end.min(self.produced));
        if lo >= hi {
            return None;
        }
        let piece = Bytes::from(encoded).slice((lo - start) as usize..(hi - start) as usize);
        self.held.replace(piece)
    }
}
