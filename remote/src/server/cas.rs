//! `ContentAddressableStorage`: FindMissingBlobs (which refreshes what it finds), the batch
//! calls (each blob verified before it is stored; a wrong one gets its own INVALID_ARGUMENT and
//! stores nothing), and GetTree. Split/splice and chunk mappings are UNIMPLEMENTED, and the
//! capabilities do not advertise them.

use std::collections::HashSet;
use std::pin::Pin;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::rpc::Status as RpcStatus;
use kiln_cache::{CacheError, Digest, DigestFunction, LocalCache};
use prost::Message;
use re::compressor::Value as Compressor;
use re::content_addressable_storage_server::ContentAddressableStorage;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

use super::auth::Access;
use super::digests;
use super::store::{Store, INLINE_BYTES, INLINE_DIGESTS, MAX_TREE_BYTES};
use super::{ENTRY_OVERHEAD_BYTES, MAX_BATCH_BYTES, MAX_MESSAGE_BYTES};

/// Directories per GetTree page when the client does not say.
const DEFAULT_PAGE: usize = 1000;
/// Bytes of directories per GetTree page at most (a page also ends at the count asked for), so
/// every page fits in a message; a single directory larger than this is INVALID_ARGUMENT.
const PAGE_BYTES: u64 = (MAX_MESSAGE_BYTES / 2) as u64;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The CAS service.
pub struct CasService {
    store: Store,
}

impl CasService {
    /// A service over `store`.
    pub fn new(store: Store) -> Self {
        CasService { store }
    }
}

fn rpc_status(code: Code, message: impl Into<String>) -> Option<RpcStatus> {
    Some(RpcStatus {
        code: code as i32,
        message: message.into(),
        details: Vec::new(),
    })
}

#[tonic::async_trait]
impl ContentAddressableStorage for CasService {
    async fn find_missing_blobs(
        &self,
        request: Request<re::FindMissingBlobsRequest>,
    ) -> Result<Response<re::FindMissingBlobsResponse>, Status> {
        let _t = self.store.metrics.time("FindMissingBlobs");
        self.store.authorize(request.metadata(), Access::Read)?;
        let req = request.into_inner();
        let function = digests::function(req.digest_function)?;
        let wanted = req
            .blob_digests
            .iter()
            .map(|d| digests::parse(function, Some(d)))
            .collect::<Result<Vec<_>, _>>()?;
        let small = wanted.len() <= INLINE_DIGESTS;
        let missing = self
            .store
            .run(small, move |cache| {
                wanted
                    .into_iter()
                    .filter(|d| !Store::has_blob(cache, d))
                    .map(|d| digests::to_proto(&d))
                    .collect::<Vec<_>>()
            })
            .await?;
        Ok(Response::new(re::FindMissingBlobsResponse {
            missing_blob_digests: missing,
        }))
    }

    async fn batch_update_blobs(
        &self,
        request: Request<re::BatchUpdateBlobsRequest>,
    ) -> Result<Response<re::BatchUpdateBlobsResponse>, Status> {
        let _t = self.store.metrics.time("BatchUpdateBlobs");
        self.store.authorize(request.metadata(), Access::Write)?;
        let req = request.into_inner();
        let function = digests::function(req.digest_function)?;
        // The limit is on blob sizes: a compressed entry counts as the size its digest
        // announces, which also bounds what its decompression may allocate.
        let total = req
            .requests
            .iter()
            .map(|r| {
                let announced = r.digest.as_ref().map_or(0, |d| d.size_bytes.max(0) as u64);
                announced.max(r.data.len() as u64)
            })
            .fold(0u64, u64::saturating_add);
        if total > MAX_BATCH_BYTES {
            return Err(Status::invalid_argument(format!(
                "Batch of {total} bytes exceeds max_batch_total_size_bytes {MAX_BATCH_BYTES}"
            )));
        }
        let store = self.store.clone();
        let small = total <= INLINE_BYTES && req.requests.len() <= INLINE_DIGESTS;
        let (responses, stored) = self
            .store
            .run(small, move |cache| {
                let mut stored = 0;
                let responses = req
                    .requests
                    .into_iter()
                    .map(|r| {
                        let digest = r.digest.clone();
                        let status = match update_one(cache, function, r) {
                            Ok(n) => {
                                stored += n;
                                rpc_status(Code::Ok, "")
                            }
                            Err(s) => {
                                if s.code() == Code::InvalidArgument {
                                    store.metrics.digest_mismatches.inc();
                                }
                                rpc_status(s.code(), s.message())
                            }
                        };
                        re::batch_update_blobs_response::Response { digest, status }
                    })
                    .collect::<Vec<_>>();
                (responses, stored)
            })
            .await?;
        self.store.note_written(stored);
        Ok(Response::new(re::BatchUpdateBlobsResponse { responses }))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<re::BatchReadBlobsRequest>,
    ) -> Result<Response<re::BatchReadBlobsResponse>, Status> {
        let _t = self.store.metrics.time("BatchReadBlobs");
        self.store.authorize(request.metadata(), Access::Read)?;
        let req = request.into_inner();
        let function = digests::function(req.digest_function)?;
        let wanted = req
            .digests
            .iter()
            .map(|d| digests::parse(function, Some(d)))
            .collect::<Result<Vec<_>, _>>()?;
        let total = wanted
            .iter()
            .map(|d| d.size)
            .fold(0u64, u64::saturating_add);
        if total > MAX_BATCH_BYTES {
            return Err(Status::invalid_argument(format!(
                "Batch of {total} bytes exceeds max_batch_total_size_bytes {MAX_BATCH_BYTES}; \
                 read large blobs with ByteStream"
            )));
        }
        let response = (wanted.len() as u64).saturating_mul(ENTRY_OVERHEAD_BYTES) + total;
        if response > MAX_MESSAGE_BYTES as u64 {
            return Err(Status::invalid_argument(format!(
                "A response to {} digests would exceed the message limit of {MAX_MESSAGE_BYTES} \
                 bytes; ask for fewer at a time",
                wanted.len()
            )));
        }
        let metrics = self.store.metrics.clone();
        let small = total <= INLINE_BYTES && wanted.len() <= INLINE_DIGESTS;
        let responses = self
            .store
            .run(small, move |cache| {
                wanted
                    .into_iter()
                    .map(|d| {
                        let found = Store::read_blob(cache, &d).ok().flatten();
                        metrics.lookup("cas", found.is_some());
                        let (data, status) = match found {
                            Some(data) => {
                                metrics.bytes_out.inc_by(data.len() as u64);
                                (data, rpc_status(Code::Ok, ""))
                            }
                            None => (Vec::new(), rpc_status(Code::NotFound, "Blob not found")),
                        };
                        re::batch_read_blobs_response::Response {
                            digest: Some(digests::to_proto(&d)),
                            data,
                            compressor: Compressor::Identity as i32,
                            status,
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        Ok(Response::new(re::BatchReadBlobsResponse { responses }))
    }

    type GetTreeStream = BoxStream<re::GetTreeResponse>;

    async fn get_tree(
        &self,
        request: Request<re::GetTreeRequest>,
    ) -> Result<Response<Self::GetTreeStream>, Status> {
        let _t = self.store.metrics.time("GetTree");
        self.store.authorize(request.metadata(), Access::Read)?;
        let req = request.into_inner();
        let function = digests::function(req.digest_function)?;
        let root = digests::parse(function, req.root_digest.as_ref())?;
        let start: usize = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse()
                .map_err(|_| Status::invalid_argument("Bad page_token"))?
        };
        let page = match req.page_size {
            n if n < 0 => return Err(Status::invalid_argument("Negative page_size")),
            0 => DEFAULT_PAGE,
            n => n as usize,
        };
        let directories = self
            .store
            .blocking(move |cache| walk_tree(cache, function, &root))
            .await??;
        if directories.is_empty() {
            return Err(Status::not_found(format!(
                "Root directory `{root}` not found"
            )));
        }
        if start > directories.len() {
            return Err(Status::invalid_argument(
                "page_token past the end of the tree",
            ));
        }
        let mut pages = Vec::new();
        let mut at = start;
        loop {
            let end = page_end(&directories, at, page);
            let next_page_token = if end < directories.len() {
                end.to_string()
            } else {
                String::new()
            };
            pages.push(Ok(re::GetTreeResponse {
                directories: directories[at..end].to_vec(),
                next_page_token,
            }));
            at = end;
            if at >= directories.len() {
                break;
            }
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(pages))))
    }

    async fn split_blob(
        &self,
        _request: Request<re::SplitBlobRequest>,
    ) -> Result<Response<re::SplitBlobResponse>, Status> {
        Err(Status::unimplemented("SplitBlob is not supported"))
    }

    type GetChunkMappingStream = BoxStream<re::GetChunkMappingResponse>;

    async fn get_chunk_mapping(
        &self,
        _request: Request<re::GetChunkMappingRequest>,
    ) -> Result<Response<Self::GetChunkMappingStream>, Status> {
        Err(Status::unimplemented("GetChunkMapping is not supported"))
    }

    async fn splice_blob(
        &self,
        _request: Request<re::SpliceBlobRequest>,
    ) -> Result<Response<re::SpliceBlobResponse>, Status> {
        Err(Status::unimplemented("SpliceBlob is not supported"))
    }

    async fn register_chunk_mapping(
        &self,
        _request: Request<tonic::Streaming<re::RegisterChunkMappingRequest>>,
    ) -> Result<Response<re::RegisterChunkMappingResponse>, Status> {
        Err(Status::unimplemented(
            "RegisterChunkMapping is not supported",
        ))
    }
}

/// Where the page starting at `at` ends: after `page` directories or [`PAGE_BYTES`] of them,
/// whichever comes first, and never before one directory.
fn page_end(directories: &[re::Directory], at: usize, page: usize) -> usize {
    let mut bytes = 0u64;
    let mut end = at;
    while end < directories.len() && end - at < page {
        bytes += directories[end].encoded_len() as u64;
        if bytes > PAGE_BYTES && end > at {
            break;
        }
        end += 1;
    }
    end
}

/// Verifies and stores one batch entry; returns the bytes stored.
fn update_one(
    cache: &LocalCache,
    function: DigestFunction,
    r: re::batch_update_blobs_request::Request,
) -> Result<u64, Status> {
    let digest = digests::parse(function, r.digest.as_ref())?;
    let data = match Compressor::try_from(r.compressor) {
        Ok(Compressor::Identity) => r.data,
        Ok(Compressor::Zstd) => zstd::bulk::decompress(&r.data, digest.size as usize)
            .map_err(|e| Status::invalid_argument(format!("Bad zstd data for `{digest}`: {e}")))?,
        _ => {
            return Err(Status::invalid_argument(format!(
                "Compressor {} is not supported",
                r.compressor
            )))
        }
    };
    if digest.size == 0 && data.is_empty() && digest == Digest::empty(function) {
        return Ok(0);
    }
    match cache.put_bytes_expecting(&digest, &data) {
        Ok(()) => Ok(data.len() as u64),
        Err(CacheError::DigestMismatch { actual, .. }) => Err(Status::invalid_argument(format!(
            "Data has digest `{actual}`, not `{digest}`"
        ))),
        Err(e) => Err(Status::internal(format!("Cannot store `{digest}`: {e}"))),
    }
}

/// The directories of the tree at `root`, breadth first, each once; missing parts are omitted.
/// A directory blob too large for a message, or a tree over [`MAX_TREE_BYTES`], is
/// INVALID_ARGUMENT, refused before it is read.
fn walk_tree(
    cache: &LocalCache,
    function: DigestFunction,
    root: &Digest,
) -> Result<Vec<re::Directory>, Status> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut read = 0u64;
    let mut queue = std::collections::VecDeque::from([*root]);
    while let Some(digest) = queue.pop_front() {
        if !seen.insert(digest) {
            continue;
        }
        read = read.saturating_add(digest.size);
        if read > MAX_TREE_BYTES {
            return Err(Status::invalid_argument(format!(
                "The tree at `{root}` holds more than {MAX_TREE_BYTES} bytes of directories"
            )));
        }
        let Some(bytes) = Store::read_blob_up_to(cache, &digest, PAGE_BYTES)? else {
            continue;
        };
        let directory = re::Directory::decode(bytes.as_slice()).map_err(|e| {
            Status::invalid_argument(format!("Blob `{digest}` is not a Directory: {e}"))
        })?;
        for child in &directory.directories {
            queue.push_back(digests::parse(function, child.digest.as_ref())?);
        }
        out.push(directory);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory_of(bytes: usize) -> re::Directory {
        re::Directory {
            files: vec![re::FileNode {
                name: "x".repeat(bytes),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_tree_page_ends_at_its_count_or_its_bytes() {
        let small: Vec<_> = (0..5).map(|_| directory_of(10)).collect();
        assert_eq!(page_end(&small, 0, 2), 2);
        assert_eq!(page_end(&small, 4, 2), 5);
        let third = PAGE_BYTES as usize / 3;
        let large: Vec<_> = (0..5).map(|_| directory_of(third)).collect();
        assert_eq!(
            page_end(&large, 0, 1000),
            2,
            "three would pass the byte bound"
        );
        assert_eq!(page_end(&large, 4, 1000), 5);
        let huge = vec![directory_of(PAGE_BYTES as usize + 1), directory_of(10)];
        assert_eq!(page_end(&huge, 0, 1000), 1, "one directory, however large");
    }
}
