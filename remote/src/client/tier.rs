//! [`RemoteClient`]: the engine's remote tier over gRPC. It connects on first use (a build with
//! nothing to do never touches the network) and asks for the server's capabilities first. A
//! server that is unreachable, hangs or lacks the workspace's digest function is dropped for the
//! rest of the build with one warning; other failures are misses or skipped uploads, each warned
//! about once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2::ActionResult;
use kiln_cache::{Digest, LocalCache};
use kiln_graph::remote_tier::{BlobSource, RemoteCache, ResultUpload};
use tonic::{Code, Status};

use super::capabilities::{negotiate, Negotiated};
use super::config::{ClientConfig, ConfigError, Header, Target};
use super::connection::{Calls, Clients};
use super::retry::Policy;

/// Most warnings reported per build; the rest are counted.
const MAX_WARNINGS: usize = 8;
/// Retries of a transient failure, and the first backoff.
const RETRIES: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(100);

/// A remote REAPI cache used as a tier behind the local cache.
pub struct RemoteClient {
    config: ClientConfig,
    target: Target,
    headers: Vec<Header>,
    live: OnceLock<Option<Live>>,
    /// Set when the server stopped answering: the rest of the build is local.
    down: AtomicBool,
    /// Set when the server refused an upload for good (read-only access).
    no_uploads: AtomicBool,
    warnings: Mutex<Warnings>,
}

#[derive(Default)]
struct Warnings {
    seen: HashSet<String>,
    pending: Vec<String>,
    dropped: usize,
}

/// A connected, negotiated server.
struct Live {
    runtime: tokio::runtime::Runtime,
    clients: Clients,
    negotiated: Negotiated,
}

impl RemoteClient {
    /// A client for `config` (checked now; the server is contacted on first use).
    pub fn new(config: ClientConfig) -> Result<RemoteClient, ConfigError> {
        config.validate()?;
        let target = config.target()?;
        let headers = config.metadata()?;
        Ok(RemoteClient {
            config,
            target,
            headers,
            live: OnceLock::new(),
            down: AtomicBool::new(false),
            no_uploads: AtomicBool::new(false),
            warnings: Mutex::new(Warnings::default()),
        })
    }

    fn policy(&self) -> Policy {
        Policy {
            retries: RETRIES,
            backoff: BACKOFF,
            deadline: self.config.timeout,
        }
    }

    fn warn(&self, message: String) {
        let Ok(mut warnings) = self.warnings.lock() else {
            return;
        };
        if warnings.seen.insert(message.clone()) {
            if warnings.pending.len() < MAX_WARNINGS {
                warnings.pending.push(message);
            } else {
                warnings.dropped += 1;
            }
        }
    }

    /// The connected server, connecting on first use; `None` once the remote is out of the build.
    fn live(&self) -> Option<&Live> {
        if self.down.load(Ordering::SeqCst) {
            return None;
        }
        self.live.get_or_init(|| self.connect()).as_ref()
    }

    fn connect(&self) -> Option<Live> {
        let unusable = |why: String| {
            self.warn(format!(
                "Remote cache `{}` is not used: {why}; building with the local cache only",
                self.config.url
            ));
            None
        };
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kiln-remote")
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => return unusable(format!("cannot start its client ({e})")),
        };
        let clients = {
            let _entered = runtime.enter();
            match Clients::new(
                &self.target,
                &self.config.tls,
                self.headers.clone(),
                self.config.timeout,
            ) {
                Ok(c) => c,
                Err(e) => return unusable(e),
            }
        };
        let calls = self.calls(&clients);
        // Retries included, the first contact costs at most one timeout: a server that does not
        // answer (or an address that drops packets) must not hold the build for long.
        let timeout = self.config.timeout;
        let capabilities = match runtime
            .block_on(async { tokio::time::timeout(timeout, calls.capabilities()).await })
        {
            Ok(Ok(c)) => c,
            Ok(Err(status)) => return unusable(describe(&status)),
            Err(_) => return unusable(format!("no answer within {:.1} s", timeout.as_secs_f64())),
        };
        let negotiated = match negotiate(&capabilities, self.config.function) {
            Ok(n) => n,
            Err(why) => return unusable(why),
        };
        Some(Live {
            runtime,
            clients,
            negotiated,
        })
    }

    fn calls<'a>(&'a self, clients: &'a Clients) -> Calls<'a> {
        Calls {
            clients,
            instance: &self.config.instance_name,
            function: self.config.function,
            policy: self.policy(),
        }
    }

    /// Records a failed call: a server that stopped answering leaves the build; anything else is
    /// a warning.
    fn failed(&self, what: &str, status: &Status) {
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                if !self.down.swap(true, Ordering::SeqCst) {
                    self.warn(format!(
                        "Remote cache `{}` stopped answering ({what}: {}); the rest of this build uses the local cache only",
                        self.config.url,
                        describe(status)
                    ));
                }
            }
            _ => self.warn(format!(
                "Remote cache `{}`: {what} failed: {}",
                self.config.url,
                describe(status)
            )),
        }
    }

    fn read_one_large(&self, live: &Live, digest: &Digest, cache: &LocalCache) -> bool {
        let tmp_dir = cache.root().join("tmp");
        let _ = std::fs::create_dir_all(&tmp_dir);
        let mut file = match tempfile::NamedTempFile::new_in(&tmp_dir) {
            Ok(f) => f,
            Err(e) => {
                self.warn(format!(
                    "Cannot download from the remote cache into `{}`: {e}",
                    tmp_dir.display()
                ));
                return false;
            }
        };
        let calls = self.calls(&live.clients);
        match live
            .runtime
            .block_on(calls.read_blob(digest, file.as_file_mut()))
        {
            Ok(()) => {}
            Err(status) if status.code() == Code::NotFound => return false,
            Err(status) => {
                self.failed("download", &status);
                return false;
            }
        }
        match cache.put_file_expecting(file.path(), digest) {
            Ok(_) => true,
            Err(e) => {
                self.warn(format!(
                    "Remote cache `{}` sent blob {digest} with the wrong content; ignored ({e})",
                    self.config.url
                ));
                false
            }
        }
    }

    fn upload_blobs(&self, live: &Live, blobs: Vec<(Digest, BlobSource)>) -> Result<(), String> {
        let calls = self.calls(&live.clients);
        let mut unique = HashSet::new();
        let blobs: Vec<(Digest, BlobSource)> = blobs
            .into_iter()
            .filter(|(d, _)| d.size > 0 && unique.insert(*d))
            .collect();
        let digests: Vec<Digest> = blobs.iter().map(|(d, _)| *d).collect();
        let missing: HashSet<Digest> = live
            .runtime
            .block_on(calls.find_missing(&digests))
            .map_err(|s| {
                self.failed("FindMissingBlobs", &s);
                String::new()
            })?
            .into_iter()
            .collect();
        let mut batch: Vec<(Digest, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0u64;
        let limit = live.negotiated.batch_limit;
        let send = |batch: Vec<(Digest, Vec<u8>)>| {
            live.runtime
                .block_on(calls.batch_update(batch))
                .map_err(|s| {
                    self.failed("upload", &s);
                    s.code()
                })
        };
        for (digest, source) in blobs.into_iter().filter(|(d, _)| missing.contains(d)) {
            if digest.size > limit {
                live.runtime
                    .block_on(calls.write_blob(&digest, &source))
                    .map_err(|s| {
                        self.failed("upload", &s);
                        self.refused(s.code());
                        String::new()
                    })?;
                continue;
            }
            let bytes = match source {
                BlobSource::Bytes(b) => b,
                BlobSource::File(path) => std::fs::read(&path).map_err(|e| e.to_string())?,
            };
            if batch_bytes + digest.size > limit && !batch.is_empty() {
                send(std::mem::take(&mut batch)).map_err(|c| {
                    self.refused(c);
                    String::new()
                })?;
                batch_bytes = 0;
            }
            batch_bytes += digest.size;
            batch.push((digest, bytes));
        }
        if !batch.is_empty() {
            send(batch).map_err(|c| {
                self.refused(c);
                String::new()
            })?;
        }
        Ok(())
    }

    /// A server that says we may not write will keep saying it: stop trying.
    fn refused(&self, code: Code) {
        if matches!(code, Code::PermissionDenied | Code::Unauthenticated) {
            self.no_uploads.store(true, Ordering::SeqCst);
        }
    }
}

/// The status code, its message and the innermost cause (`Connection refused`, ...).
fn describe(status: &Status) -> String {
    let mut text = format!("{:?}", status.code());
    let message = status.message().trim();
    if !message.is_empty() {
        text.push_str(&format!(": {message}"));
    }
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(status);
    let mut innermost = None;
    while let Some(e) = cause {
        innermost = Some(e.to_string());
        cause = e.source();
    }
    if let Some(innermost) = innermost.filter(|i| !text.contains(i.as_str())) {
        text.push_str(&format!(" ({innermost})"));
    }
    text
}

impl RemoteCache for RemoteClient {
    fn get_action_result(&self, key: &Digest) -> Option<ActionResult> {
        let live = self.live()?;
        let calls = self.calls(&live.clients);
        match live.runtime.block_on(calls.get_action_result(key)) {
            Ok(result) => result,
            Err(status) => {
                self.failed("GetActionResult", &status);
                None
            }
        }
    }

    fn fetch(&self, digests: &[Digest], cache: &LocalCache) -> Vec<Digest> {
        let mut got = Vec::new();
        let mut small = Vec::new();
        let mut large = Vec::new();
        for digest in digests {
            if digest.size == 0 {
                // The empty blob always exists; no need to ask.
                if cache.put_bytes(digest.function, &[]).is_ok() {
                    got.push(*digest);
                }
            } else if cache.contains(digest) {
                got.push(*digest);
            } else if !small.contains(digest) && !large.contains(digest) {
                small.push(*digest);
            }
        }
        if small.is_empty() {
            return got;
        }
        let Some(live) = self.live() else {
            return got;
        };
        small.retain(|d| {
            let is_small = d.size <= live.negotiated.batch_limit;
            if !is_small {
                large.push(*d);
            }
            is_small
        });
        let calls = self.calls(&live.clients);
        let mut start = 0;
        while start < small.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < small.len()
                && (end == start || bytes + small[end].size <= live.negotiated.batch_limit)
            {
                bytes += small[end].size;
                end += 1;
            }
            match live.runtime.block_on(calls.batch_read(&small[start..end])) {
                Ok(blobs) => {
                    for (digest, data) in blobs {
                        if Digest::of_bytes(digest.function, &data) != digest {
                            self.warn(format!(
                                "Remote cache `{}` sent blob {digest} with the wrong content; ignored",
                                self.config.url
                            ));
                            continue;
                        }
                        if cache.put_bytes(digest.function, &data).is_ok() {
                            got.push(digest);
                        }
                    }
                }
                Err(status) => {
                    self.failed("BatchReadBlobs", &status);
                    return got;
                }
            }
            start = end;
        }
        for digest in large {
            if self.down.load(Ordering::SeqCst) {
                break;
            }
            if self.read_one_large(live, &digest, cache) {
                got.push(digest);
            }
        }
        got
    }

    fn upload(&self, upload: ResultUpload) {
        if self.no_uploads.load(Ordering::SeqCst) {
            return;
        }
        let Some(live) = self.live() else {
            return;
        };
        if !live.negotiated.update_enabled {
            self.no_uploads.store(true, Ordering::SeqCst);
            self.warn(format!(
                "Remote cache `{}` does not accept action results; local results are not uploaded",
                self.config.url
            ));
            return;
        }
        // The action-cache entry goes up only once every blob it names is there.
        if let Err(why) = self.upload_blobs(live, upload.blobs) {
            if !why.is_empty() {
                self.warn(format!(
                    "Cannot upload to the remote cache `{}`: {why}",
                    self.config.url
                ));
            }
            return;
        }
        let calls = self.calls(&live.clients);
        if let Err(status) = live
            .runtime
            .block_on(calls.update_action_result(&upload.key, &upload.result))
        {
            self.failed("UpdateActionResult", &status);
            self.refused(status.code());
        }
    }

    fn take_warnings(&self) -> Vec<String> {
        let Ok(mut warnings) = self.warnings.lock() else {
            return Vec::new();
        };
        let mut out = std::mem::take(&mut warnings.pending);
        if warnings.dropped > 0 {
            out.push(format!(
                "{} more remote cache warnings not shown",
                warnings.dropped
            ));
            warnings.dropped = 0;
        }
        out
    }
}
