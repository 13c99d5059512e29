//! Shared helpers of the server tests: an in-process `kiln serve` on a free port, tonic clients
//! over real gRPC, and digest and upload helpers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use kiln_remote::server::{Auth, ReadLimits, Server, ServerConfig, ServerError};
use sha2::Digest as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

pub use bs::byte_stream_client::ByteStreamClient;
pub use re::action_cache_client::ActionCacheClient;
pub use re::capabilities_client::CapabilitiesClient;
pub use re::content_addressable_storage_client::ContentAddressableStorageClient;

/// A server running in this test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub dir: PathBuf,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), ServerError>>,
}

/// An open server (anyone may write) with a 1 GiB cap, metrics on a free port.
pub fn config(dir: &Path) -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        dir: dir.to_path_buf(),
        max_size_bytes: 1 << 30,
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        tls: None,
        auth: Auth::open(),
        anonymous_writes: true,
        fsync: false,
        reverify_after: std::time::Duration::from_secs(300),
        shutdown_grace: std::time::Duration::from_secs(30),
        read_limits: ReadLimits::default(),
    }
}

/// Starts a server with `config`.
pub async fn start(config: ServerConfig) -> TestServer {
    let dir = config.dir.clone();
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let metrics_addr = server.metrics_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        metrics_addr,
        dir,
        stop,
        handle,
    }
}

impl TestServer {
    /// A plain-text channel to the server.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A CAS, a ByteStream and an ActionCache client on one channel.
    pub async fn clients(
        &self,
    ) -> (
        ContentAddressableStorageClient<Channel>,
        ByteStreamClient<Channel>,
        ActionCacheClient<Channel>,
    ) {
        let channel = self.channel().await;
        (
            ContentAddressableStorageClient::new(channel.clone()),
            ByteStreamClient::new(channel.clone()),
            ActionCacheClient::new(channel),
        )
    }

    /// Asks the server to stop (as SIGTERM does) and waits until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.handle.await.unwrap().unwrap();
    }

    /// Begins a graceful stop without waiting; returns the join handle.
    pub fn begin_stop(self) -> JoinHandle<Result<(), ServerError>> {
        let _ = self.stop.send(());
        self.handle
    }

    /// `GET path` on the metrics port: (status line, body).
    pub async fn http_get(&self, path: &str) -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(self.metrics_addr.unwrap())
            .await
            .unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }
}

pub fn sha256(data: &[u8]) -> re::Digest {
    re::Digest {
        hash: hex::encode(sha2::Sha256::digest(data)),
        size_bytes: data.len() as i64,
    }
}

pub fn blake3(data: &[u8]) -> re::Digest {
    re::Digest {
        hash: blake3::hash(data).to_hex().to_string(),
        size_bytes: data.len() as i64,
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Uploads `data` under `name` in `chunk`-byte requests, finishing the write.
pub async fn write(
    client: &mut ByteStreamClient<Channel>,
    name: &str,
    data: &[u8],
    chunk: usize,
) -> Result<i64, tonic::Status> {
    let requests = write_requests(name, data, 0, chunk, true);
    client
        .write(tokio_stream::iter(requests))
        .await
        .map(|r| r.into_inner().committed_size)
}

/// The requests of an upload starting at `offset`.
pub fn write_requests(
    name: &str,
    data: &[u8],
    offset: usize,
    chunk: usize,
    finish: bool,
) -> Vec<bs::WriteRequest> {
    let mut out = Vec::new();
    let mut at = offset;
    loop {
        let end = (at + chunk).min(data.len());
        out.push(bs::WriteRequest {
            resource_name: if out.is_empty() {
                name.to_string()
            } else {
                String::new()
            },
            write_offset: at as i64,
            finish_write: finish && end == data.len(),
            data: data[at..end].to_vec(),
        });
        at = end;
        if at >= data.len() {
            break;
        }
    }
    out
}

/// Downloads a whole resource.
pub async fn read(
    client: &mut ByteStreamClient<Channel>,
    name: &str,
    offset: i64,
    limit: i64,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = client
        .read(bs::ReadRequest {
            resource_name: name.to_string(),
            read_offset: offset,
            read_limit: limit,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.message().await? {
        out.extend_from_slice(&msg.data);
    }
    Ok(out)
}

/// `uploads/{uuid}/blobs/{hash}/{size}`.
pub fn upload_name(digest: &re::Digest) -> String {
    format!(
        "uploads/{}/blobs/{}/{}",
        uuid(),
        digest.hash,
        digest.size_bytes
    )
}

/// `blobs/{hash}/{size}`.
pub fn blob_name(digest: &re::Digest) -> String {
    format!("blobs/{}/{}", digest.hash, digest.size_bytes)
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn find_missing(
    client: &mut ContentAddressableStorageClient<Channel>,
    digests: Vec<re::Digest>,
) -> Vec<re::Digest> {
    client
        .find_missing_blobs(re::FindMissingBlobsRequest {
            blob_digests: digests,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .missing_blob_digests
}
