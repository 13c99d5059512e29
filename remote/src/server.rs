//! `kiln serve`: a REAPI v2 cache server (Capabilities, ActionCache, ContentAddressableStorage,
//! ByteStream) over the same storage code and layout as Kiln's local cache.
//!
//! API boundary: [`ServerConfig`] → [`Server::bind`] → [`Server::run`] with a shutdown future.
//! Modules: `capabilities`, `action_cache`, `cas`, `bytestream` (+ `read_route`, which sends
//! Read's pieces without a copy, `streamed_read` for blobs over 1 MiB, `resource` names, `uploads` kept for resumption), `digests` (message ↔ cache digests), `auth` (bearer tokens), `tls`,
//! `metrics` + `http` (Prometheus, health), `eviction` (size cap while serving), `store`
//! (shared state), `small_frames` (a small response leaves in one write).
//!
//! Invariants:
//! - A blob is visible only after its bytes hashed to its name; the empty blob always exists.
//! - An action-cache hit names only blobs that are present (checked on every Get).
//! - Shutdown stops accepting, lets in-flight calls (uploads included) finish within the grace
//!   period, then flushes the index, so a restart finds everything that was acknowledged; an
//!   upload cut off by the grace period leaves no blob.

mod action_cache;
mod auth;
mod bytestream;
mod capabilities;
mod cas;
mod digests;
mod eviction;
mod http;
mod metrics;
mod read_route;
mod resource;
mod small_frames;
mod store;
mod streamed_read;
mod tls;
mod unclean_stop;
mod uploads;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use kiln_cache::{CacheConfig, LocalCache, VerifiedBlobs};
use re::action_cache_server::ActionCacheServer;
use re::capabilities_server::CapabilitiesServer;
use re::content_addressable_storage_server::ContentAddressableStorageServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use auth::{Access, Auth, AuthError};
pub use metrics::Metrics;
pub use store::ReadLimits;
pub use tls::TlsFiles;

use small_frames::SmallFrames;
use store::Store;

/// The `max_batch_total_size_bytes` advertised; batch calls above it are INVALID_ARGUMENT.
pub const MAX_BATCH_BYTES: u64 = 4 << 20;
/// Largest gRPC message accepted or sent: twice a full batch, room for the digests and framing
/// of a batch of many small blobs (see [`ENTRY_OVERHEAD_BYTES`]).
pub const MAX_MESSAGE_BYTES: usize = 2 * (MAX_BATCH_BYTES as usize);
/// What one entry of a batch costs in a message beside its data, at most: its digest (hash in
/// hex, size), status, compressor and protobuf framing.
pub const ENTRY_OVERHEAD_BYTES: u64 = 128;

/// How often an idle connection is probed (HTTP/2 PING and TCP keepalive).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a PING may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// After the grace period, how long cut-off uploads get to end before the server stops waiting.
const CUT_OFF_MARGIN: Duration = Duration::from_secs(2);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A configuration file could not be read.
    #[error("Cannot read `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A listening address could not be bound.
    #[error("Cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The cache directory could not be opened.
    #[error(transparent)]
    Cache(#[from] kiln_cache::CacheError),
    /// The TLS settings were refused.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The transport failed while serving.
    #[error("gRPC server failed: {0}")]
    Transport(String),
}

/// Everything `kiln serve` is started with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// gRPC address.
    pub addr: SocketAddr,
    /// Cache directory (the local cache layout).
    pub dir: PathBuf,
    /// Size cap in bytes.
    pub max_size_bytes: u64,
    /// Address of the metrics and health HTTP port, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// TLS files; plain h2c when `None`.
    pub tls: Option<TlsFiles>,
    /// Who may read and write.
    pub auth: Auth,
    /// Whether clients without a token may write (advertised as `update_enabled`).
    pub anonymous_writes: bool,
    /// fsync each blob before it becomes visible.
    pub fsync: bool,
    /// How long a large blob hashed right on a read is served again without re-hashing, while
    /// its file is unchanged (see [`kiln_cache::VerifiedBlobs`]); zero re-hashes every read.
    pub reverify_after: Duration,
    /// After the stop signal, how long in-flight calls may take to finish; calls still running
    /// then (a stalled upload, say) are dropped, and what they had not finished stores nothing.
    pub shutdown_grace: Duration,
    /// Bounds on large reads: how many stream at once, how long one waits on a stalled client.
    pub read_limits: ReadLimits,
}

/// Verified action-cache entries the server keeps in memory: a repeated `GetActionResult` then
/// reads no file (see [`CacheConfig::action_result_memo_bytes`]).
const ACTION_RESULT_MEMO_BYTES: u64 = 64 << 20;

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    config: ServerConfig,
    store: Store,
    grpc: TcpListener,
    http: Option<TcpListener>,
    /// The index repair after an unclean stop, while it runs.
    repair: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Opens the cache (no disk scan when its index exists) and binds the ports.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let dir = config.dir.clone();
        let cache_config = CacheConfig {
            max_size_bytes: config.max_size_bytes,
            fsync: config.fsync,
            action_result_memo_bytes: ACTION_RESULT_MEMO_BYTES,
        };
        let cache = tokio::task::spawn_blocking(move || LocalCache::open(&dir, cache_config))
            .await
            .map_err(|e| ServerError::Transport(e.to_string()))??;
        // The eviction task flushes the access records every second: requests never do.
        cache.flush_in_background();
        let store = Store::new(
            Arc::new(cache),
            config.auth.clone(),
            Metrics::new(),
            VerifiedBlobs::new(config.reverify_after),
            config.read_limits,
        );
        let repair = unclean_stop::recover_if_needed(&config.dir, &store);
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        };
        let grpc = bind(config.addr).await?;
        let http = match config.metrics_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Server {
            config,
            store,
            grpc,
            http,
            repair,
        })
    }

    /// The bound gRPC address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.addr)
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then finishes in-flight calls and flushes the index.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            config,
            store,
            grpc,
            http,
            repair,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if let Some(listener) = http {
            let app = http::router(store.metrics.clone());
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::warn!(error = %e, "metrics port failed");
                }
            });
        }
        let evictor = tokio::spawn(eviction::run(store.clone()));
        let mut builder = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(8 << 20))
            .initial_connection_window_size(Some(32 << 20))
            // A peer that vanished (a laptop off the VPN) is found and its calls ended.
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
        if let Some(tls) = &config.tls {
            builder = builder
                .tls_config(tls.load()?)
                .map_err(|e| ServerError::Tls(e.to_string()))?;
        }
        let routes = builder
            .add_service(CapabilitiesServer::new(
                capabilities::CapabilitiesService::new(
                    store.clone(),
                    config.anonymous_writes || config.auth_has_writers(),
                ),
            ))
            .add_service(SmallFrames::new(
                ActionCacheServer::new(action_cache::ActionCacheService::new(store.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            ))
            .add_service(SmallFrames::new(
                ContentAddressableStorageServer::new(cas::CasService::new(store.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            ))
            .add_service(SmallFrames::new(read_route::ByteStreamRoutes::new(
                bytestream::ByteStreamService::new(store.clone()),
                MAX_MESSAGE_BYTES,
            )));
        tracing::info!(
            addr = %grpc.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            dir = %config.dir.display(),
            max_size_bytes = config.max_size_bytes,
            tls = config.tls.is_some(),
            "serving"
        );
        let serving = routes.serve_with_incoming_shutdown(
            // Small unary calls must not wait on Nagle's algorithm and delayed ACKs.
            TcpIncoming::from(grpc)
                .with_nodelay(Some(true))
                .with_keepalive(Some(KEEPALIVE_INTERVAL)),
            stopped(stop_rx.clone()),
        );
        let grace = config.shutdown_grace;
        let grace_store = store.clone();
        let grace_over = async move {
            stopped(stop_rx).await;
            tokio::time::sleep(grace).await;
            // Uploads give up first (storing nothing); what still runs a moment later — a
            // client that stopped reading, say — is left behind.
            grace_store.end_grace();
            tokio::time::sleep(CUT_OFF_MARGIN).await;
        };
        let result = tokio::select! {
            served = serving => served.map_err(|e| ServerError::Transport(e.to_string())),
            () = grace_over => {
                tracing::warn!(
                    grace_seconds = grace.as_secs_f64(),
                    "calls still running after the shutdown grace period are dropped"
                );
                Ok(())
            }
        };
        evictor.abort();
        store.uploads.clear();
        let cache = store.cache.clone();
        let flushed = tokio::task::spawn_blocking(move || cache.flush()).await;
        match flushed {
            Ok(Ok(())) => unclean_stop::mark_clean(&config.dir, repair.as_ref()),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not flush the cache index at shutdown"),
            Err(_) => {}
        }
        store.log_cache_warnings();
        tracing::info!("stopped");
        result
    }
}

impl ServerConfig {
    fn auth_has_writers(&self) -> bool {
        self.auth.has_writers()
    }
}
