//! A large blob's Read, on a blocking thread: the blob is read in [`READ_CHUNK`] pieces while
//! [`BlobReader`] hashes it, optionally zstd-compressed on the way, and sent one piece behind,
//! so the last piece goes out only after the whole blob hashed to its name. Memory stays at a
//! few pieces whatever the blob's size.

use std::io::Write;

use std::cell::Cell;

use bytes::Bytes;
use kiln_cache::{BlobReader, CacheError, Digest};
use tokio::runtime::Handle;
use tokio::sync::mpsc::{OwnedPermit, Sender};
use tokio::time::timeout;
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
/// Stops quietly when the client has gone, and with DEADLINE_EXCEEDED when it stalls.
pub(super) fn send_verified(
    mut reader: BlobReader,
    mut encoding: Encoding,
    (offset, end): (u64, u64),
    tx: &Sender<Result<Bytes, Status>>,
    store: &Store,
) {
    let digest = *reader.digest();
    let Some(outbox) = Outbox::open(tx, store, digest) else {
        return;
    };
    let send = |item: Result<Bytes, Status>| outbox.send(item);
    let fail = |status: Status| {
        send(Err(status));
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
            if !send(Ok(piece)) {
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
        if !send(Ok(piece)) {
            return;
        }
    }
    if produced == offset {
        // Nothing in range: one empty response, as for an empty blob.
        send(Ok(Bytes::new()));
    }
}

/// Where a streamed read's pieces go: the response stream, with one place in it kept for the
/// status that ends a read abandoned on a stalled client.
struct Outbox<'a> {
    tx: &'a Sender<Result<Bytes, Status>>,
    last_word: Cell<Option<OwnedPermit<Result<Bytes, Status>>>>,
    store: &'a Store,
    digest: Digest,
}

impl<'a> Outbox<'a> {
    /// Keeps the place for the last word; `None` when the client has gone already.
    fn open(
        tx: &'a Sender<Result<Bytes, Status>>,
        store: &'a Store,
        digest: Digest,
    ) -> Option<Self> {
        // A blocking-pool thread runs inside the runtime's context, so it may wait on its handle.
        let reserved = Handle::current()
            .block_on(tx.clone().reserve_owned())
            .ok()?;
        Some(Outbox {
            tx,
            last_word: Cell::new(Some(reserved)),
            store,
            digest,
        })
    }

    /// Hands `item` to the response stream, waiting at most the store's stall limit for the
    /// client to make room. False when the client has gone, or took nothing for that long: then
    /// the stream ends with DEADLINE_EXCEEDED (never a short blob that looks complete), and the
    /// read's blocking thread and slot are free again.
    fn send(&self, item: Result<Bytes, Status>) -> bool {
        let limit = self.store.read_stall_limit;
        let sent = Handle::current().block_on(async { timeout(limit, self.tx.send(item)).await });
        match sent {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.store.metrics.stalled_reads.inc();
                let digest = self.digest;
                tracing::warn!(%digest, ?limit, "a client took nothing of a Read for the stall limit; read abandoned");
                if let Some(place) = self.last_word.take() {
                    place.send(Err(Status::deadline_exceeded(format!(
                        "The client took nothing of `{digest}` for {limit:?}; read abandoned"
                    ))));
                }
                false
            }
        }
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
