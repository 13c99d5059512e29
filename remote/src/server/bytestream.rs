//! `google.bytestream.ByteStream` over the CAS: Read with offset and limit, Write (verified
//! before the blob becomes visible, resumable after an interruption), QueryWriteStatus, and the
//! `compressed-blobs/zstd` variants of both.
//!
//! Invariants: a blob becomes readable only through [`BlobWriter::commit`], after its whole
//! content hashed to the announced digest; a broken or wrong upload leaves nothing in the CAS.
//! A read never delivers a corrupt blob complete: blobs up to 1 MiB are read whole and verified
//! before the first byte is sent; larger ones stream while they are hashed (and compressed, for
//! `compressed-blobs/zstd`, so memory stays bounded at any size), and the last piece is withheld
//! until the digest matches (a mismatch ends the stream with DATA_LOSS and removes the blob). A large blob whose file the server's
//! [`VerifiedBlobs`](kiln_cache::VerifiedBlobs) memo vouches for (hashed right within
//! `--reverify-after`, its stat unchanged since) streams without the hash; its file must still
//! be unchanged when the last piece is due.

use std::io::Write;
use std::pin::Pin;

use bazel_remote_apis::google::bytestream as bs;
use bs::byte_stream_server::ByteStream;
use bytes::Bytes;
use kiln_cache::{BlobReader, BlobWriter, CacheError, Digest};
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::auth::Access;
use super::metrics::Timer;
use super::resource::{self, Compression};
use super::store::{Store, INLINE_BYTES};
use super::streamed_read;

/// Bytes per ReadResponse at most (well under the 4 MiB message limit of gRPC clients).
pub(super) const READ_CHUNK: usize = 1 << 20;
/// Received bytes handed to the disk writer at once.
const WRITE_BATCH: usize = 1 << 20;
/// zstd level for compressed reads: fast, since the point is the network.
const ZSTD_LEVEL: i32 = 1;

/// The ByteStream service.
pub struct ByteStreamService {
    store: Store,
}

impl ByteStreamService {
    /// A service over `store`.
    pub fn new(store: Store) -> Self {
        ByteStreamService { store }
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<bs::ReadResponse, Status>> + Send>>;

/// The data of one Read, piece by piece (each at most [`READ_CHUNK`] bytes); an error ends it.
pub(super) type ReadPieces = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

#[tonic::async_trait]
impl ByteStream for ByteStreamService {
    type ReadStream = ReadStream;

    /// Read through tonic's codec. `kiln serve` routes Read to
    /// [`read_route`](super::read_route) instead, which sends the same pieces without copying
    /// them into tonic's encode buffer; both share [`ByteStreamService::open_read`].
    async fn read(
        &self,
        request: Request<bs::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let (metadata, _, req) = request.into_parts();
        let pieces = self.open_read(&metadata, req).await?;
        Ok(Response::new(Box::pin(pieces.map(|piece| {
            piece.map(|data| bs::ReadResponse { data: data.into() })
        }))))
    }

    async fn write(
        &self,
        request: Request<Streaming<bs::WriteRequest>>,
    ) -> Result<Response<bs::WriteResponse>, Status> {
        let _t = self.store.metrics.time("Write");
        self.store.authorize(request.metadata(), Access::Write)?;
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("Write stream with no request"))?;
        let name = first.resource_name.clone();
        let res = resource::parse_write(&name)?;
        let digest = res.digest;
        let done = |compression| {
            Response::new(bs::WriteResponse {
                committed_size: match compression {
                    Compression::Identity => digest.size as i64,
                    Compression::Zstd => -1,
                },
            })
        };
        if self.store.inline(|cache| Store::has_blob(cache, &digest)) {
            return Ok(done(res.compression));
        }
        let upload = Upload::start(&self.store, &name, res.compression, digest, &first).await?;
        upload.receive(first, stream).await?;
        Ok(done(res.compression))
    }

    async fn query_write_status(
        &self,
        request: Request<bs::QueryWriteStatusRequest>,
    ) -> Result<Response<bs::QueryWriteStatusResponse>, Status> {
        let _t = self.store.metrics.time("QueryWriteStatus");
        self.store.authorize(request.metadata(), Access::Write)?;
        let name = request.into_inner().resource_name;
        let digest = resource::parse_write(&name)?.digest;
        if self.store.inline(|cache| Store::has_blob(cache, &digest)) {
            return Ok(Response::new(bs::QueryWriteStatusResponse {
                committed_size: digest.size as i64,
                complete: true,
            }));
        }
        let committed = self.store.uploads.committed(&name).unwrap_or(0);
        Ok(Response::new(bs::QueryWriteStatusResponse {
            committed_size: committed as i64,
            complete: false,
        }))
    }
}

impl ByteStreamService {
    /// Checks a Read (rights, resource name, offset and limit) and opens the blob's data:
    /// NOT_FOUND when it is absent, and pieces that end in DATA_LOSS when it turns out corrupt.
    pub(super) async fn open_read(
        &self,
        metadata: &MetadataMap,
        req: bs::ReadRequest,
    ) -> Result<ReadPieces, Status> {
        // A streamed read takes the timer along: its latency is the whole stream's.
        let timer = self.store.metrics.time("Read");
        self.store.authorize(metadata, Access::Read)?;
        let res = resource::parse_read(&req.resource_name)?;
        if req.read_offset < 0 {
            return Err(Status::out_of_range("Negative read_offset"));
        }
        if req.read_limit < 0 {
            return Err(Status::invalid_argument("Negative read_limit"));
        }
        if res.compression == Compression::Zstd && req.read_limit != 0 {
            return Err(Status::invalid_argument(
                "read_limit must be 0 for compressed-blobs",
            ));
        }
        let digest = res.digest;
        if digest.size > READ_CHUNK as u64 {
            // Waiting for a slot holds no thread; see `ReadLimits`.
            let slot = self
                .store
                .read_slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Status::unavailable("The server is stopping"))?;
            let range = (req.read_offset, req.read_limit);
            return self.read_streamed(digest, res.compression, range, (timer, slot));
        }
        let found = self
            .store
            .run(digest.size <= INLINE_BYTES, move |cache| {
                let Some(data) = Store::read_blob(cache, &digest)? else {
                    return Ok(None);
                };
                match res.compression {
                    Compression::Identity => Ok(Some(data)),
                    Compression::Zstd => zstd::bulk::compress(&data, ZSTD_LEVEL)
                        .map(Some)
                        .map_err(|e| Status::internal(format!("zstd: {e}"))),
                }
            })
            .await??;
        self.store.metrics.lookup("cas", found.is_some());
        let data = found.ok_or_else(|| Status::not_found(format!("Blob `{digest}` not found")))?;
        let (offset, end) = window(data.len() as u64, req.read_offset, req.read_limit)?;
        let (offset, end) = (offset as usize, end as usize);
        self.store.metrics.bytes_out.inc_by((end - offset) as u64);
        let data = Bytes::from(data).slice(offset..end);
        // An empty range is still one (empty) response, as clients expect a message.
        let pieces: Vec<Result<Bytes, Status>> = if data.is_empty() {
            vec![Ok(data)]
        } else {
            (0..data.len())
                .step_by(READ_CHUNK)
                .map(|at| Ok(data.slice(at..data.len().min(at + READ_CHUNK))))
                .collect()
        };
        Ok(Box::pin(tokio_stream::iter(pieces)))
    }

    /// Streams a large blob (zstd-compressed on the way when `compression` asks) from a
    /// blocking thread while it is hashed; see [`streamed_read`].
    fn read_streamed(
        &self,
        digest: Digest,
        compression: Compression,
        (read_offset, read_limit): (i64, i64),
        (timer, slot): (Timer, tokio::sync::OwnedSemaphorePermit),
    ) -> Result<ReadPieces, Status> {
        // Opening is an open and an fstat: done here, like other small work.
        let verified = Some(self.store.verified.clone());
        let reader = match BlobReader::open_with(self.store.cache.clone(), digest, verified) {
            Ok(reader) => reader,
            Err(e) => {
                tracing::warn!(error = %e, %digest, "cache read failed; answering a miss");
                None
            }
        };
        self.store.metrics.lookup("cas", reader.is_some());
        let reader =
            reader.ok_or_else(|| Status::not_found(format!("Blob `{digest}` not found")))?;
        if reader.vouched() {
            self.store.metrics.reads_vouched.inc();
        }
        let (encoding, range) = match compression {
            Compression::Identity => (
                streamed_read::Encoding::Identity,
                window(digest.size, read_offset, read_limit)?,
            ),
            // The compressed length is known only at the end: the range is checked there.
            Compression::Zstd => (
                streamed_read::Encoding::zstd(ZSTD_LEVEL)?,
                (read_offset as u64, u64::MAX),
            ),
        };
        // Two pieces in flight, and a place kept for a stalled read's closing status.
        let (tx, rx) = tokio::sync::mpsc::channel(3);
        let store = self.store.clone();
        let streaming = store.metrics.streaming_read();
        tokio::task::spawn_blocking(move || {
            streamed_read::send_verified(reader, encoding, range, &tx, &store);
            drop((streaming, timer, slot));
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// The `[offset, end)` byte range a Read asks of a blob of `size` bytes.
fn window(size: u64, read_offset: i64, read_limit: i64) -> Result<(u64, u64), Status> {
    let offset = read_offset as u64;
    if offset > size {
        return Err(Status::out_of_range(format!(
            "read_offset {offset} is past the end ({size} bytes)"
        )));
    }
    let end = match read_limit {
        0 => size,
        limit => size.min(offset.saturating_add(limit as u64)),
    };
    Ok((offset, end))
}

/// The largest zstd window (as a power of two) an upload of `size` bytes may declare: enough
/// for the blob itself, and never less than what streaming compressors use by default (8 MiB
/// covers levels up to 19), so a frame for a small blob cannot make the decoder allocate the
/// 128 MiB of zstd's default limit.
fn zstd_window_log_max(size: u64) -> u32 {
    let needed = 64 - size.saturating_sub(1).leading_zeros();
    needed.clamp(23, 27)
}

/// Where received bytes go: straight into the blob, or through a zstd decoder.
enum Sink {
    Identity(BlobWriter),
    Zstd(zstd::stream::write::Decoder<'static, BlobWriter>),
}

impl Sink {
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Identity(w) => w.write_all(data),
            Sink::Zstd(d) => d.write_all(data),
        }
    }

    fn finish(self) -> std::io::Result<BlobWriter> {
        match self {
            Sink::Identity(w) => Ok(w),
            Sink::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
        }
    }
}

/// One Write call's state. Dropped unfinished — the client went away, and with it the
/// handler's future — a plain upload is kept for resumption.
struct Upload {
    store: Store,
    name: String,
    digest: Digest,
    /// `None` once committed.
    sink: Option<Sink>,
    /// Offset the next request must carry (wire bytes: compressed for zstd).
    offset: u64,
    pending: Vec<u8>,
    /// False once the upload is known to be wrong: then it is not worth keeping.
    resumable: bool,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.resumable {
            return;
        }
        if let Some(Sink::Identity(writer)) = self.sink.take() {
            let pending = std::mem::take(&mut self.pending);
            self.store
                .uploads
                .keep(std::mem::take(&mut self.name), writer, pending);
        }
    }
}

impl Upload {
    /// Marks the upload as wrong: it will not be kept for resumption.
    fn discard(&mut self) {
        self.resumable = false;
    }

    /// Starts fresh at offset 0 or resumes a kept upload at its committed offset.
    async fn start(
        store: &Store,
        name: &str,
        compression: Compression,
        digest: Digest,
        first: &bs::WriteRequest,
    ) -> Result<Upload, Status> {
        let kept = store.uploads.take(name);
        let offset = first.write_offset;
        let (sink, offset, pending) = match (compression, kept) {
            (Compression::Identity, Some(k)) if offset as u64 == k.committed() && offset > 0 => {
                (Sink::Identity(k.writer), offset as u64, k.pending)
            }
            _ if offset != 0 => {
                return Err(Status::invalid_argument(format!(
                    "write_offset {offset} does not match the 0 bytes committed for `{name}`"
                )))
            }
            (compression, _) => {
                let cache = store.cache.clone();
                let writer = tokio::task::spawn_blocking(move || BlobWriter::new(cache, digest))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(|e| Status::internal(format!("Cannot start the upload: {e}")))?;
                let sink = match compression {
                    Compression::Identity => Sink::Identity(writer),
                    Compression::Zstd => {
                        let mut decoder = zstd::stream::write::Decoder::new(writer)
                            .map_err(|e| Status::internal(format!("zstd: {e}")))?;
                        decoder
                            .window_log_max(zstd_window_log_max(digest.size))
                            .map_err(|e| Status::internal(format!("zstd: {e}")))?;
                        Sink::Zstd(decoder)
                    }
                };
                (sink, 0, Vec::new())
            }
        };
        Ok(Upload {
            store: store.clone(),
            name: name.to_string(),
            digest,
            sink: Some(sink),
            offset,
            pending,
            resumable: true,
        })
    }

    /// Consumes the stream; commits on `finish_write`. A broken stream keeps the upload for
    /// resumption (identity only, on drop); a wrong one is dropped.
    async fn receive(
        mut self,
        first: bs::WriteRequest,
        mut stream: Streaming<bs::WriteRequest>,
    ) -> Result<(), Status> {
        let mut next = Some(first);
        loop {
            let req = match next.take() {
                Some(req) => req,
                None => match self.next_message(&mut stream).await {
                    Ok(Some(req)) => req,
                    Ok(None) => {
                        return Err(Status::invalid_argument(
                            "Write stream ended without finish_write",
                        ));
                    }
                    Err(status) => {
                        tracing::info!(name = %self.name, %status, "upload interrupted");
                        return Err(status);
                    }
                },
            };
            if req.write_offset as u64 != self.offset {
                self.discard();
                return Err(Status::invalid_argument(format!(
                    "write_offset {} but {} bytes were received",
                    req.write_offset, self.offset
                )));
            }
            if !req.resource_name.is_empty() && req.resource_name != self.name {
                self.discard();
                return Err(Status::invalid_argument(
                    "resource_name changed within one Write",
                ));
            }
            self.offset += req.data.len() as u64;
            if self.pending.is_empty() {
                // Take the message's buffer as it is: no copy for the common 1 MiB message.
                self.pending = req.data;
            } else {
                self.pending.extend_from_slice(&req.data);
            }
            if self.pending.len() >= WRITE_BATCH || req.finish_write {
                self = self.drain().await?;
            }
            if req.finish_write {
                return self.commit().await;
            }
        }
    }

    /// The stream's next request, or UNAVAILABLE once the shutdown grace period is over (the
    /// upload is then dropped unfinished: nothing of it becomes visible).
    async fn next_message(
        &mut self,
        stream: &mut Streaming<bs::WriteRequest>,
    ) -> Result<Option<bs::WriteRequest>, Status> {
        let store = self.store.clone();
        tokio::select! {
            message = stream.message() => message,
            () = store.grace_ended() => {
                self.discard();
                tracing::warn!(name = %self.name, "upload cut off by the shutdown grace period");
                Err(Status::unavailable("The server is shutting down; retry the upload"))
            }
        }
    }

    /// Hands the pending bytes to the sink on a blocking thread.
    async fn drain(mut self) -> Result<Upload, Status> {
        let digest = self.digest;
        let metrics = self.store.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let data = std::mem::take(&mut self.pending);
            let written = match self.sink.as_mut() {
                Some(sink) => sink.write_all(&data),
                None => Ok(()),
            };
            match written {
                Ok(()) => Ok(self),
                Err(e) => {
                    self.discard();
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        metrics.digest_mismatches.inc();
                    }
                    Err(Status::invalid_argument(format!(
                        "Upload of `{digest}` rejected: {e}"
                    )))
                }
            }
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
    }

    async fn commit(mut self) -> Result<(), Status> {
        let digest = self.digest;
        let store = self.store.clone();
        let Some(sink) = self.sink.take() else {
            return Err(Status::internal("Upload committed twice"));
        };
        let result = tokio::task::spawn_blocking(move || {
            let writer = sink
                .finish()
                .map_err(|e| Status::invalid_argument(format!("Bad zstd stream: {e}")))?;
            writer.commit().map_err(|e| match e {
                CacheError::DigestMismatch { actual, .. } => Status::invalid_argument(format!(
                    "Uploaded bytes have digest `{actual}`, not `{digest}`; nothing was stored"
                )),
                e => Status::internal(format!("Cannot store `{digest}`: {e}")),
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        match result {
            Ok(_) => {
                store.note_written(digest.size);
                Ok(())
            }
            Err(status) => {
                if status.code() == tonic::Code::InvalidArgument {
                    store.metrics.digest_mismatches.inc();
                }
                Err(status)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::zstd_window_log_max;

    /// `data` compressed as a stream (no content size in the frame), as Bazel's client does.
    fn streamed(data: &[u8], level: i32, window_log: Option<u32>) -> Vec<u8> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
        if let Some(log) = window_log {
            encoder.window_log(log).unwrap();
        }
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn decodes_with_limit(frame: &[u8], size: u64) -> bool {
        let mut decoder = zstd::stream::write::Decoder::new(Vec::new()).unwrap();
        decoder.window_log_max(zstd_window_log_max(size)).unwrap();
        decoder
            .write_all(frame)
            .and_then(|()| decoder.flush())
            .is_ok()
    }

    #[test]
    fn the_zstd_window_is_bounded_by_the_blob_but_admits_default_streams() {
        assert_eq!(zstd_window_log_max(0), 23);
        assert_eq!(zstd_window_log_max(4096), 23);
        assert_eq!(zstd_window_log_max((16 << 20) + 1), 25);
        assert_eq!(zstd_window_log_max(u64::MAX), 27);
        let data = vec![7u8; 4096];
        for level in [1, 3, 19] {
            assert!(decodes_with_limit(&streamed(&data, level, None), 4096));
        }
        assert!(
            !decodes_with_limit(&streamed(&data, 3, Some(27)), 4096),
            "a 128 MiB window for a 4 KiB blob is refused"
        );
    }
}
