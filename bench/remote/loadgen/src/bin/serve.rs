//! `kiln_remote::server` exactly as `kiln serve --allow-anonymous write` runs it, as a small
//! release binary that builds without the rest of Kiln (Starlark, rules), for quick benchmark
//! runs. Usage: `serve ADDR DIR MAX_SIZE_BYTES`; stops on SIGTERM.

use kiln_remote::server::{Auth, ReadLimits, Server, ServerConfig};

/// The allocator `kiln` runs with (cli/src/allocator.rs); run.sh sets the one option kiln changes,
/// `MIMALLOC_ARENA_EAGER_COMMIT=0`, in the environment.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, dir, max] = args.as_slice() else {
        return Err("usage: serve ADDR DIR MAX_SIZE_BYTES".into());
    };
    let server = Server::bind(ServerConfig {
        addr: addr.parse()?,
        dir: dir.into(),
        max_size_bytes: max.parse()?,
        metrics_addr: None,
        tls: None,
        auth: Auth::open(),
        anonymous_writes: true,
        fsync: false,
        reverify_after: std::time::Duration::from_secs(300),
        shutdown_grace: std::time::Duration::from_secs(30),
        read_limits: ReadLimits::default(),
    })
    .await?;
    server
        .run(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
            term.recv().await;
        })
        .await?;
    Ok(())
}
