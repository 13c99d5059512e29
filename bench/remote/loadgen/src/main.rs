//! Load generator for REAPI caches (`kiln serve`, bazel-remote): CAS writes and reads of
//! 4 KiB blobs (one blob per BatchUpdateBlobs / BatchReadBlobs call) and 16 MiB blobs
//! (ByteStream, 1 MiB chunks), and ActionCache Get hits, with N concurrent clients, SHA-256.
//! Each client repeats the operation until SECONDS have passed (after a 1 s warm-up that is not
//! counted), so every figure rests on seconds of work, not on a handful of calls.
//! Prints one JSON line per run, with the generator's own CPU time.
//!
//! Usage:
//!   loadgen run ADDR OP CLIENTS SECONDS SEED            OP: write4k read4k write16m read16m acget
//!   loadgen fill ADDR COUNT SEED                         COUNT distinct 4 KiB blobs, 32 clients
//!   loadgen ready ADDR TIMEOUT_SECS                      waits for a FindMissingBlobs answer

use std::time::{Duration, Instant};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use bs::byte_stream_client::ByteStreamClient;
use re::action_cache_client::ActionCacheClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;
use sha2::Digest as _;
use tonic::transport::{Channel, Endpoint};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn blob(seed: u64, index: u64, len: usize) -> Vec<u8> {
    let mut x = (seed << 32 ^ index).wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn digest(data: &[u8]) -> re::Digest {
    re::Digest {
        hash: hex::encode(sha2::Sha256::digest(data)),
        size_bytes: data.len() as i64,
    }
}

async fn channel(addr: &str) -> Result<Channel, Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(32 << 20))
        .connect()
        .await?)
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

const SMALL: usize = 4096;
const LARGE: usize = 16 << 20;
const CHUNK: usize = 1 << 20;

async fn write_small(cas: &mut ContentAddressableStorageClient<Channel>, data: Vec<u8>) -> Result<(), Error> {
    let d = digest(&data);
    let resp = cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![re::batch_update_blobs_request::Request { digest: Some(d), data, compressor: 0 }],
            ..Default::default()
        })
        .await?
        .into_inner();
    match resp.responses.first().and_then(|r| r.status.as_ref()) {
        Some(s) if s.code != 0 => Err(format!("batch update: {}", s.message).into()),
        _ => Ok(()),
    }
}

async fn write_large(bsc: &mut ByteStreamClient<Channel>, data: Vec<u8>, tag: u64) -> Result<(), Error> {
    let d = digest(&data);
    let name = format!("uploads/lg-{tag}/blobs/{}/{}", d.hash, d.size_bytes);
    let mut reqs = Vec::new();
    for (i, c) in data.chunks(CHUNK).enumerate() {
        reqs.push(bs::WriteRequest {
            resource_name: if i == 0 { name.clone() } else { String::new() },
            write_offset: (i * CHUNK) as i64,
            finish_write: (i + 1) * CHUNK >= data.len(),
            data: c.to_vec(),
        });
    }
    let resp = bsc.write(tokio_stream::iter(reqs)).await?.into_inner();
    if resp.committed_size != d.size_bytes {
        return Err(format!("committed {} of {}", resp.committed_size, d.size_bytes).into());
    }
    Ok(())
}

async fn read_large(bsc: &mut ByteStreamClient<Channel>, d: &re::Digest) -> Result<usize, Error> {
    let mut s = bsc
        .read(bs::ReadRequest {
            resource_name: format!("blobs/{}/{}", d.hash, d.size_bytes),
            read_offset: 0,
            read_limit: 0,
        })
        .await?
        .into_inner();
    let mut n = 0;
    while let Some(m) = s.message().await? {
        n += m.data.len();
    }
    if n as i64 != d.size_bytes {
        return Err("short read".into());
    }
    Ok(n)
}

/// Blobs and AC entries the read operations use, written before timing starts.
async fn prepare(addr: &str, op: &str, seed: u64, count: u64) -> Result<Vec<re::Digest>, Error> {
    let ch = channel(addr).await?;
    let mut cas = ContentAddressableStorageClient::new(ch.clone());
    let mut bsc = ByteStreamClient::new(ch.clone());
    let mut ac = ActionCacheClient::new(ch);
    let mut out = Vec::new();
    for i in 0..count {
        match op {
            "read4k" => {
                let data = blob(seed, i, SMALL);
                out.push(digest(&data));
                write_small(&mut cas, data).await?;
            }
            "read16m" => {
                let data = blob(seed, i, LARGE);
                out.push(digest(&data));
                write_large(&mut bsc, data, i).await?;
            }
            "acget" => {
                let data = blob(seed, i, SMALL);
                let file = digest(&data);
                write_small(&mut cas, data).await?;
                let action = digest(&blob(seed ^ 0xAC, i, 64));
                ac.update_action_result(re::UpdateActionResultRequest {
                    action_digest: Some(action.clone()),
                    action_result: Some(re::ActionResult {
                        output_files: vec![re::OutputFile {
                            path: "out".into(),
                            digest: Some(file),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await?;
                out.push(action);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// How long each client runs the operation before timing starts.
const WARM_UP: Duration = Duration::from_secs(1);

/// One operation by one client; `unique` names a blob no other call writes. Returns the bytes
/// moved.
async fn one_op(
    op: &str,
    seed: u64,
    unique: u64,
    prepared: &[re::Digest],
    cas: &mut ContentAddressableStorageClient<Channel>,
    bsc: &mut ByteStreamClient<Channel>,
    ac: &mut ActionCacheClient<Channel>,
) -> Result<u64, Error> {
    match op {
        "write4k" => {
            write_small(cas, blob(seed, unique, SMALL)).await?;
            Ok(SMALL as u64)
        }
        "write16m" => {
            write_large(bsc, blob(seed, unique, LARGE), unique).await?;
            Ok(LARGE as u64)
        }
        "read4k" => {
            let d = &prepared[(unique as usize).wrapping_mul(7919) % prepared.len()];
            let resp = cas
                .batch_read_blobs(re::BatchReadBlobsRequest {
                    digests: vec![d.clone()],
                    ..Default::default()
                })
                .await?
                .into_inner();
            match resp.responses.first() {
                Some(r) if r.data.len() == SMALL => Ok(SMALL as u64),
                _ => Err("read4k: missing blob".into()),
            }
        }
        "read16m" => {
            let d = &prepared[unique as usize % prepared.len()];
            Ok(read_large(bsc, d).await? as u64)
        }
        "acget" => {
            let d = &prepared[(unique as usize).wrapping_mul(7919) % prepared.len()];
            ac.get_action_result(re::GetActionResultRequest {
                action_digest: Some(d.clone()),
                ..Default::default()
            })
            .await?;
            Ok(0)
        }
        other => Err(format!("unknown op {other}").into()),
    }
}

async fn run(addr: String, op: String, clients: u64, seconds: u64, seed: u64) -> Result<(), Error> {
    let distinct = match op.as_str() {
        "read16m" => 4,
        "read4k" | "acget" => 256,
        _ => 0,
    };
    let prepared = std::sync::Arc::new(prepare(&addr, &op, seed, distinct).await?);
    let mut channels = Vec::new();
    for _ in 0..clients {
        channels.push(channel(&addr).await?);
    }
    let warm_until = Instant::now() + WARM_UP;
    let timed = Duration::from_secs(seconds);
    // Every client starts timing at the same instant, after the warm-up.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(clients as usize + 1));
    let mut tasks = Vec::new();
    for (c, ch) in channels.into_iter().enumerate() {
        let (op, prepared, barrier) = (op.clone(), prepared.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut cas = ContentAddressableStorageClient::new(ch.clone());
            let mut bsc = ByteStreamClient::new(ch.clone());
            let mut ac = ActionCacheClient::new(ch);
            let mut i = 0u64;
            let mut next = || {
                i += 1;
                (c as u64) << 32 | i
            };
            while Instant::now() < warm_until {
                one_op(&op, seed, next(), &prepared, &mut cas, &mut bsc, &mut ac).await?;
            }
            barrier.wait().await;
            let end = Instant::now() + timed;
            let (mut ops, mut bytes) = (0u64, 0u64);
            while Instant::now() < end {
                bytes += one_op(&op, seed, next(), &prepared, &mut cas, &mut bsc, &mut ac).await?;
                ops += 1;
            }
            Ok::<(u64, u64, Instant), Error>((ops, bytes, Instant::now()))
        }));
    }
    barrier.wait().await;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let (mut total, mut bytes, mut last) = (0u64, 0u64, start);
    for t in tasks {
        let (ops, b, ended) = t.await??;
        total += ops;
        bytes += b;
        last = last.max(ended);
    }
    let wall = (last - start).as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{{\"op\":\"{op}\",\"clients\":{clients},\"ops\":{total},\"seconds\":{wall:.3},\"ops_per_sec\":{:.1},\"mib_per_sec\":{:.1},\"loadgen_cpu_seconds\":{cpu:.3},\"loadgen_cores\":{:.2}}}",
        total as f64 / wall,
        bytes as f64 / wall / (1 << 20) as f64,
        cpu / wall
    );
    Ok(())
}

async fn fill(addr: String, count: u64, seed: u64) -> Result<(), Error> {
    let per = count.div_ceil(32);
    let mut tasks = Vec::new();
    for c in 0..32u64 {
        let ch = channel(&addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut cas = ContentAddressableStorageClient::new(ch);
            // 64 blobs per batch call to fill quickly.
            let mut i = c * per;
            let end = ((c + 1) * per).min(count);
            while i < end {
                let n = (end - i).min(64);
                let requests = (i..i + n)
                    .map(|k| {
                        let data = blob(seed, k, SMALL);
                        re::batch_update_blobs_request::Request { digest: Some(digest(&data)), data, compressor: 0 }
                    })
                    .collect();
                let stored = cas
                    .batch_update_blobs(re::BatchUpdateBlobsRequest { requests, ..Default::default() })
                    .await?
                    .into_inner();
                // Every blob must be stored, or the start-up measurement times a smaller cache.
                if let Some(bad) = stored.responses.iter().find(|r| r.status.as_ref().is_some_and(|s| s.code != 0)) {
                    return Err(format!("fill: a blob was refused: {:?}", bad.status).into());
                }
                i += n;
            }
            Ok::<(), Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn ready(addr: String, timeout: u64) -> Result<(), Error> {
    let start = Instant::now();
    loop {
        if let Ok(ch) = channel(&addr).await {
            let mut cas = ContentAddressableStorageClient::new(ch);
            if cas.find_missing_blobs(re::FindMissingBlobsRequest::default()).await.is_ok() {
                return Ok(());
            }
        }
        if start.elapsed() > Duration::from_secs(timeout) {
            return Err("server not ready".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().ok_or_else(|| Error::from("missing argument; see the usage in src/main.rs"));
    let num = |i: usize| -> Result<u64, Error> { Ok(arg(i)?.parse()?) };
    match arg(1)?.as_str() {
        "run" => run(arg(2)?, arg(3)?, num(4)?, num(5)?, num(6)?).await,
        "fill" => fill(arg(2)?, num(3)?, num(4)?).await,
        "ready" => ready(arg(2)?, num(3)?).await,
        other => Err(format!("unknown command {other}").into()),
    }
}
