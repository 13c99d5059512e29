//! `kiln serve`: flags, logging set-up and signal handling around `kiln_remote::server`.
//! SIGTERM or SIGINT stops accepting calls, lets in-flight ones (uploads too) finish within
//! `--shutdown-grace`, flushes the index and exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use kiln_remote::server::{Access, Auth, ReadLimits, Server, ServerConfig, TlsFiles};

use crate::exit::{self, Exit};

/// Who may use the cache without a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Anonymous {
    /// Nobody: every call needs a token.
    None,
    /// Anyone may read; writing needs a read-write token.
    Read,
    /// Anyone may read and write.
    Write,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `key=value` text.
    Text,
    /// One JSON object per line.
    Json,
}

/// `kiln serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// gRPC address to listen on.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub addr: SocketAddr,
    /// Cache directory (the same layout as Kiln's local cache).
    #[arg(long)]
    pub dir: PathBuf,
    /// Size cap, e.g. `200G`; least recently used entries are evicted beyond it.
    #[arg(long = "max-size", default_value = "10G")]
    pub max_size: String,
    /// Address of the HTTP port with `/metrics` (Prometheus) and `/healthz`.
    #[arg(long = "metrics-addr")]
    pub metrics_addr: Option<SocketAddr>,
    /// TLS certificate chain (PEM); with `--tls-key`, the gRPC port speaks TLS only.
    #[arg(long = "tls-cert", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long = "tls-key", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long = "tls-client-ca", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Bearer tokens file: one `<token> ro|rw` per line.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// What clients without a token may do.
    #[arg(long = "allow-anonymous", value_enum, default_value = "none")]
    pub allow_anonymous: Anonymous,
    /// fsync each blob before it becomes visible (survives power loss; slower).
    #[arg(long)]
    pub fsync: bool,
    /// Seconds a large blob (over 1 MiB) hashed right on a read is served again without
    /// re-hashing, as long as its file's metadata is unchanged; 0 re-hashes on every read.
    #[arg(long = "reverify-after", value_name = "SECONDS", default_value_t = 300)]
    pub reverify_after: u64,
    /// Seconds that in-flight calls get to finish after SIGTERM or SIGINT; uploads still
    /// running then are refused with UNAVAILABLE and store nothing.
    #[arg(long = "shutdown-grace", value_name = "SECONDS", default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Log format on stderr (`RUST_LOG` sets the level, default `info`).
    #[arg(long = "log-format", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: &ServeArgs) -> Result<i32> {
    let config = config(args)?;
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("Cannot start the async runtime")?;
    runtime.block_on(async move {
        // Before binding: a signal that arrives while the server starts must not kill it.
        let stop = stop_signal();
        let server = Server::bind(config)
            .await
            .map_err(|e| Exit::new(exit::LOCAL_ENVIRONMENT, e.to_string()))?;
        server.run(stop).await?;
        Ok(exit::SUCCESS)
    })
}

fn config(args: &ServeArgs) -> Result<ServerConfig> {
    let bad = |msg: String| Exit::new(exit::BAD_COMMAND_LINE, msg);
    let max_size_bytes =
        crate::config::parse_size(&args.max_size).map_err(|e| bad(format!("--max-size: {e:#}")))?;
    let anonymous = match args.allow_anonymous {
        Anonymous::None => Access::None,
        Anonymous::Read => Access::Read,
        Anonymous::Write => Access::Write,
    };
    let tokens = match &args.tokens {
        Some(path) => {
            Auth::load_tokens(path).map_err(|e| Exit::new(exit::BAD_COMMAND_LINE, e.to_string()))?
        }
        None if anonymous == Access::None => {
            return Err(bad(
                "`kiln serve` needs `--tokens FILE`, or `--allow-anonymous read` or \
                 `--allow-anonymous write` for a cache without tokens"
                    .to_string(),
            )
            .into())
        }
        None => Default::default(),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.tls_client_ca.clone(),
        }),
        _ => None,
    };
    Ok(ServerConfig {
        addr: args.addr,
        dir: args.dir.clone(),
        max_size_bytes,
        metrics_addr: args.metrics_addr,
        tls,
        auth: Auth::new(tokens, anonymous),
        anonymous_writes: anonymous == Access::Write,
        fsync: args.fsync,
        reverify_after: std::time::Duration::from_secs(args.reverify_after),
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace),
        read_limits: ReadLimits::default(),
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Installs the SIGTERM and SIGINT handlers now (an `async fn` would install them only when
/// first polled, after the server has started and said so) and returns a future that completes
/// on the first of them. Must be called inside the runtime.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::warn!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight calls"),
            _ = int.recv() => tracing::info!("SIGINT: finishing in-flight calls"),
        }
    }
}
