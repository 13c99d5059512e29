//! A small in-memory REAPI cache server (real gRPC over loopback) for the remote-cache tests, with
//! knobs a real server does not have: seed, evict or corrupt a blob, offer only some digest
//! functions, fail the next calls as UNAVAILABLE or every call with a code. It records the headers
//! and instance names it sees, its calls in order, and which blobs each call named.

#![allow(dead_code)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use bazel_remote_apis::google::bytestream as bs;
use bazel_remote_apis::google::rpc::Status as RpcStatus;
use kiln_cache::{Digest, DigestFunction};
use reapi::action_cache_server::{ActionCache, ActionCacheServer};
use reapi::capabilities_server::{Capabilities, CapabilitiesServer};
use reapi::content_addressable_storage_server::{
    ContentAddressableStorage, ContentAddressableStorageServer,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

type Result<T> = std::result::Result<Response<T>, Status>;

/// `max_batch_total_size_bytes` as advertised; batches carrying more blob bytes are refused.
const BATCH_LIMIT: usize = 1 << 20;
/// The largest message the CAS service decodes: a quarter more than a batch, as real servers
/// allow (`kiln serve`: 4 MiB batches, 5 MiB messages).
const MAX_MESSAGE: usize = BATCH_LIMIT + BATCH_LIMIT / 4;
type BoxStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

/// What the server holds and what it has seen.
#[derive(Default)]
pub struct State {
    cas: Mutex<HashMap<String, Vec<u8>>>,
    ac: Mutex<HashMap<String, reapi::ActionResult>>,
    /// Digest functions offered (REAPI enum values).
    pub functions: Mutex<Vec<i32>>,
    /// The next this many calls fail with UNAVAILABLE.
    pub fail_next: AtomicU32,
    /// Every call but GetCapabilities waits forever (a server that hangs once connected).
    pub hang_after_capabilities: AtomicBool,
    /// Every `authorization` header received.
    pub authorization: Mutex<Vec<String>>,
    /// Every instance name received.
    pub instances: Mutex<Vec<String>>,
    /// Calls per method.
    pub calls: Mutex<HashMap<&'static str, usize>>,
    /// Every call's method, in order.
    pub log: Mutex<Vec<&'static str>>,
    /// Methods that fail every call with a code; `"*"` stands for every method but
    /// GetCapabilities.
    pub always_fail: Mutex<HashMap<&'static str, tonic::Code>>,
    /// Each blob a call named (`hash/size`), with the call's method: the digests asked about
    /// (FindMissingBlobs), uploaded (BatchUpdateBlobs, Write) and downloaded (BatchReadBlobs, Read).
    pub blobs: Mutex<Vec<(&'static str, String)>>,
    /// The number of blobs in each batched call, with its method.
    pub batch_lens: Mutex<Vec<(&'static str, usize)>>,
}

/// The fake's name for the blob with this content in a BLAKE3 workspace: `hash/size`.
pub fn blob_name(content: &[u8]) -> String {
    let d = Digest::of_bytes(DigestFunction::Blake3, content);
    format!("{}/{}", d.hex(), d.size)
}

fn key(d: &Option<reapi::Digest>) -> std::result::Result<String, Status> {
    let d = d
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("no digest"))?;
    Ok(format!("{}/{}", d.hash, d.size_bytes))
}

/// Whether `data` has digest `d` under either function.
fn matches(d: &reapi::Digest, data: &[u8]) -> bool {
    [DigestFunction::Blake3, DigestFunction::Sha256]
        .iter()
        .any(|f| {
            let actual = Digest::of_bytes(*f, data);
            actual.hex() == d.hash && actual.size as i64 == d.size_bytes
        })
}

impl State {
    fn enter<T>(
        &self,
        method: &'static str,
        request: &Request<T>,
    ) -> std::result::Result<(), Status> {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
        self.log.lock().unwrap().push(method);
        if let Some(value) = request.metadata().get("authorization") {
            self.authorization
                .lock()
                .unwrap()
                .push(value.to_str().unwrap_or("?").to_string());
        }
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(Status::unavailable("injected failure"));
        }
        let always = self.always_fail.lock().unwrap();
        let code = always
            .get(method)
            .or_else(|| always.get("*").filter(|_| method != "GetCapabilities"));
        if let Some(code) = code {
            return Err(Status::new(*code, "injected failure"));
        }
        Ok(())
    }

    fn named(&self, method: &'static str, key: String) {
        self.blobs.lock().unwrap().push((method, key));
    }

    fn batch(&self, method: &'static str, len: usize) {
        self.batch_lens.lock().unwrap().push((method, len));
    }

    /// The blobs calls of `method` named, in order.
    pub fn named_by(&self, method: &str) -> Vec<String> {
        self.blobs
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| *m == method)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// Stores a blob as if a client had uploaded it (under its BLAKE3 and SHA-256 digests).
    pub fn seed(&self, content: &[u8]) {
        let mut cas = self.cas.lock().unwrap();
        for function in [DigestFunction::Blake3, DigestFunction::Sha256] {
            let d = Digest::of_bytes(function, content);
            cas.insert(format!("{}/{}", d.hex(), d.size), content.to_vec());
        }
    }

    /// [`enter`](State::enter), then a wait forever when the server is set to hang.
    async fn enter_or_hang<T>(
        &self,
        method: &'static str,
        request: &Request<T>,
    ) -> std::result::Result<(), Status> {
        self.enter(method, request)?;
        if self.hang_after_capabilities.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    fn instance(&self, name: &str) {
        self.instances.lock().unwrap().push(name.to_string());
    }

    /// Removes every stored blob with this content; returns how many.
    pub fn evict(&self, content: &[u8]) -> usize {
        let mut cas = self.cas.lock().unwrap();
        let before = cas.len();
        cas.retain(|_, v| v.as_slice() != content);
        before - cas.len()
    }

    /// Replaces every stored blob with this content by bytes of the same length that do not match
    /// its digest; returns how many.
    pub fn corrupt(&self, content: &[u8]) -> usize {
        let mut cas = self.cas.lock().unwrap();
        let mut n = 0;
        for v in cas.values_mut() {
            if v.as_slice() == content {
                *v = vec![b'#'; v.len()];
                n += 1;
            }
        }
        n
    }

    /// Number of action-cache entries.
    pub fn ac_len(&self) -> usize {
        self.ac.lock().unwrap().len()
    }

    /// Number of calls of `method`.
    pub fn count(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }
}

#[derive(Clone)]
struct Service(Arc<State>);

#[tonic::async_trait]
impl Capabilities for Service {
    async fn get_capabilities(
        &self,
        request: Request<reapi::GetCapabilitiesRequest>,
    ) -> Result<reapi::ServerCapabilities> {
        self.0.enter("GetCapabilities", &request)?;
        self.0.instance(&request.get_ref().instance_name);
        Ok(Response::new(reapi::ServerCapabilities {
            cache_capabilities: Some(reapi::CacheCapabilities {
                digest_functions: self.0.functions.lock().unwrap().clone(),
                action_cache_update_capabilities: Some(reapi::ActionCacheUpdateCapabilities {
                    update_enabled: true,
                }),
                max_batch_total_size_bytes: BATCH_LIMIT as i64,
                ..Default::default()
            }),
            low_api_version: Some(bazel_remote_apis::build::bazel::semver::SemVer {
                major: 2,
                ..Default::default()
            }),
            high_api_version: Some(bazel_remote_apis::build::bazel::semver::SemVer {
                major: 2,
                minor: 3,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl ActionCache for Service {
    async fn get_action_result(
        &self,
        request: Request<reapi::GetActionResultRequest>,
    ) -> Result<reapi::ActionResult> {
        self.0.enter_or_hang("GetActionResult", &request).await?;
        self.0.instance(&request.get_ref().instance_name);
        let k = key(&request.get_ref().action_digest)?;
        match self.0.ac.lock().unwrap().get(&k) {
            Some(r) => Ok(Response::new(r.clone())),
            None => Err(Status::not_found("no such action")),
        }
    }

    async fn update_action_result(
        &self,
        request: Request<reapi::UpdateActionResultRequest>,
    ) -> Result<reapi::ActionResult> {
        self.0.enter_or_hang("UpdateActionResult", &request).await?;
        let r = request.into_inner();
        let k = key(&r.action_digest)?;
        let result = r
            .action_result
            .ok_or_else(|| Status::invalid_argument("no result"))?;
        self.0.ac.lock().unwrap().insert(k, result.clone());
        Ok(Response::new(result))
    }
}

#[tonic::async_trait]
impl ContentAddressableStorage for Service {
    async fn find_missing_blobs(
        &self,
        request: Request<reapi::FindMissingBlobsRequest>,
    ) -> Result<reapi::FindMissingBlobsResponse> {
        self.0.enter_or_hang("FindMissingBlobs", &request).await?;
        for d in &request.get_ref().blob_digests {
            self.0
                .named("FindMissingBlobs", format!("{}/{}", d.hash, d.size_bytes));
        }
        let cas = self.0.cas.lock().unwrap();
        let missing = request
            .get_ref()
            .blob_digests
            .iter()
            .filter(|d| !cas.contains_key(&format!("{}/{}", d.hash, d.size_bytes)))
            .cloned()
            .collect();
        Ok(Response::new(reapi::FindMissingBlobsResponse {
            missing_blob_digests: missing,
        }))
    }

    async fn batch_update_blobs(
        &self,
        request: Request<reapi::BatchUpdateBlobsRequest>,
    ) -> Result<reapi::BatchUpdateBlobsResponse> {
        self.0.enter_or_hang("BatchUpdateBlobs", &request).await?;
        let mut responses = Vec::new();
        let requests = request.into_inner().requests;
        self.0.batch("BatchUpdateBlobs", requests.len());
        let total: usize = requests.iter().map(|r| r.data.len()).sum();
        if total > BATCH_LIMIT {
            return Err(Status::invalid_argument(format!(
                "batch of {total} bytes exceeds max_batch_total_size_bytes"
            )));
        }
        for blob in requests {
            let digest = blob.digest.clone().unwrap_or_default();
            self.0.named("BatchUpdateBlobs", key(&blob.digest)?);
            let code = if matches(&digest, &blob.data) {
                self.0
                    .cas
                    .lock()
                    .unwrap()
                    .insert(key(&blob.digest)?, blob.data);
                0
            } else {
                tonic::Code::InvalidArgument as i32
            };
            responses.push(reapi::batch_update_blobs_response::Response {
                digest: Some(digest),
                status: Some(RpcStatus {
                    code,
                    ..Default::default()
                }),
            });
        }
        Ok(Response::new(reapi::BatchUpdateBlobsResponse { responses }))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<reapi::BatchReadBlobsRequest>,
    ) -> Result<reapi::BatchReadBlobsResponse> {
        self.0.enter_or_hang("BatchReadBlobs", &request).await?;
        let digests = &request.get_ref().digests;
        self.0.batch("BatchReadBlobs", digests.len());
        let total: i64 = digests.iter().map(|d| d.size_bytes).sum();
        if total > BATCH_LIMIT as i64 {
            return Err(Status::invalid_argument(format!(
                "batch of {total} bytes exceeds max_batch_total_size_bytes"
            )));
        }
        for d in digests {
            self.0
                .named("BatchReadBlobs", format!("{}/{}", d.hash, d.size_bytes));
        }
        let cas = self.0.cas.lock().unwrap();
        let responses = request
            .get_ref()
            .digests
            .iter()
            .map(|d| {
                let found = cas.get(&format!("{}/{}", d.hash, d.size_bytes));
                reapi::batch_read_blobs_response::Response {
                    digest: Some(d.clone()),
                    data: found.cloned().unwrap_or_default(),
                    compressor: 0,
                    status: Some(RpcStatus {
                        code: if found.is_some() {
                            0
                        } else {
                            tonic::Code::NotFound as i32
                        },
                        ..Default::default()
                    }),
                }
            })
            .collect();
        Ok(Response::new(reapi::BatchReadBlobsResponse { responses }))
    }

    type GetTreeStream = BoxStream<reapi::GetTreeResponse>;

    async fn get_tree(&self, _: Request<reapi::GetTreeRequest>) -> Result<Self::GetTreeStream> {
        Err(Status::unimplemented("GetTree"))
    }

    async fn split_blob(
        &self,
        _: Request<reapi::SplitBlobRequest>,
    ) -> Result<reapi::SplitBlobResponse> {
        Err(Status::unimplemented("SplitBlob"))
    }

    type GetChunkMappingStream = BoxStream<reapi::GetChunkMappingResponse>;

    async fn get_chunk_mapping(
        &self,
        _: Request<reapi::GetChunkMappingRequest>,
    ) -> Result<Self::GetChunkMappingStream> {
        Err(Status::unimplemented("GetChunkMapping"))
    }

    async fn splice_blob(
        &self,
        _: Request<reapi::SpliceBlobRequest>,
    ) -> Result<reapi::SpliceBlobResponse> {
        Err(Status::unimplemented("SpliceBlob"))
    }

    async fn register_chunk_mapping(
        &self,
        _: Request<Streaming<reapi::RegisterChunkMappingRequest>>,
    ) -> Result<reapi::RegisterChunkMappingResponse> {
        Err(Status::unimplemented("RegisterChunkMapping"))
    }
}

/// `…/blobs/{function/}{hash}/{size}`: the last two segments.
fn blob_key(resource: &str) -> std::result::Result<String, Status> {
    let parts: Vec<&str> = resource.rsplitn(3, '/').collect();
    match parts.as_slice() {
        [size, hash, ..] => Ok(format!("{hash}/{size}")),
        _ => Err(Status::invalid_argument("bad resource name")),
    }
}

#[tonic::async_trait]
impl bs::byte_stream_server::ByteStream for Service {
    type ReadStream = BoxStream<bs::ReadResponse>;

    async fn read(&self, request: Request<bs::ReadRequest>) -> Result<Self::ReadStream> {
        self.0.enter_or_hang("Read", &request).await?;
        let r = request.into_inner();
        let k = blob_key(&r.resource_name)?;
        self.0.named("Read", k.clone());
        let data = self
            .0
            .cas
            .lock()
            .unwrap()
            .get(&k)
            .cloned()
            .ok_or_else(|| Status::not_found("no such blob"))?;
        let rest = data[(r.read_offset as usize).min(data.len())..].to_vec();
        let chunks: Vec<std::result::Result<bs::ReadResponse, Status>> = rest
            .chunks(256 << 10)
            .map(|c| Ok(bs::ReadResponse { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn write(
        &self,
        request: Request<Streaming<bs::WriteRequest>>,
    ) -> Result<bs::WriteResponse> {
        self.0.enter_or_hang("Write", &request).await?;
        let mut stream = request.into_inner();
        let mut name = String::new();
        let mut data = Vec::new();
        while let Some(message) = stream.message().await? {
            if name.is_empty() {
                name = message.resource_name.clone();
            }
            data.extend_from_slice(&message.data);
            if message.finish_write {
                break;
            }
        }
        let k = blob_key(&name)?;
        self.0.named("Write", k.clone());
        let (hash, size) = k.split_once('/').unwrap_or_default();
        let digest = reapi::Digest {
            hash: hash.to_string(),
            size_bytes: size.parse().unwrap_or(-1),
        };
        if !matches(&digest, &data) {
            return Err(Status::invalid_argument("digest mismatch"));
        }
        let committed = data.len() as i64;
        self.0.cas.lock().unwrap().insert(k, data);
        Ok(Response::new(bs::WriteResponse {
            committed_size: committed,
        }))
    }

    async fn query_write_status(
        &self,
        _: Request<bs::QueryWriteStatusRequest>,
    ) -> Result<bs::QueryWriteStatusResponse> {
        Err(Status::unimplemented("QueryWriteStatus"))
    }
}

/// A running server; stops when dropped.
pub struct FakeRemote {
    /// `grpc://127.0.0.1:PORT`.
    pub url: String,
    /// Its state and knobs.
    pub state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeRemote {
    /// Starts a server offering BLAKE3 and SHA-256.
    pub fn start() -> FakeRemote {
        FakeRemote::offering(&[
            reapi::digest_function::Value::Sha256,
            reapi::digest_function::Value::Blake3,
        ])
    }

    /// Starts a server offering only `functions`.
    pub fn offering(functions: &[reapi::digest_function::Value]) -> FakeRemote {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let state = Arc::new(State::default());
        *state.functions.lock().unwrap() = functions.iter().map(|f| *f as i32).collect();
        let service = Service(Arc::clone(&state));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(CapabilitiesServer::new(service.clone()))
                .add_service(ActionCacheServer::new(service.clone()))
                .add_service(
                    ContentAddressableStorageServer::new(service.clone())
                        .max_decoding_message_size(MAX_MESSAGE),
                )
                .add_service(bs::byte_stream_server::ByteStreamServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        FakeRemote {
            url: format!("grpc://127.0.0.1:{port}"),
            state,
            _runtime: runtime,
        }
    }
}
