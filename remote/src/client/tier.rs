//! [`RemoteClient`]: the engine's remote tier over gRPC. It connects on first use (a build with
//! nothing to do never touches the network) and asks for the server's capabilities first. A
//! server that is unreachable, hangs or lacks the workspace's digest function is dropped for the
//! rest of the build with one warning, and so is one whose calls keep failing (`breaker.rs`);
//! other failures are misses or skipped uploads, each warned about once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2::ActionResult;
use kiln_cache::{Digest, LocalCache};
use kiln_graph::remote_tier::{BlobSource, RemoteCache, ResultUpload};
use tonic::{Code, Status};

use super::batch::{batches, fits, message_overhead};
use super::breaker::{Breaker, TRIP_AFTER};
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
    /// Counts consecutive failed calls; sets `down` when they are too many.
    breaker: Breaker,
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
            breaker: Breaker::default(),
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

    /// Adds a warning unless it was given before; true if it is new.
    fn warn(&self, message: String) -> bool {
        let Ok(mut warnings) = self.warnings.lock() else {
            return false;
        };
        if !warnings.seen.insert(message.clone()) {
            return false;
        }
        if warnings.pending.len() < MAX_WARNINGS {
            warnings.pending.push(message);
        } else {
            warnings.dropped += 1;
        }
        true
    }

    /// Takes back warnings not reported yet (a later warning says it all).
    fn retract(&self, messages: &[String]) {
        if let Ok(mut warnings) = self.warnings.lock() {
            warnings.pending.retain(|w| !messages.contains(w));
        }
    }

    /// Drops the remote for the rest of the build with one warning saying why, in place of the
    /// not yet reported warnings in `replaces`.
    fn drop_remote(&self, why: String, replaces: &[String]) {
        if !self.down.swap(true, Ordering::SeqCst) {
            self.retract(replaces);
            self.warn(format!(
                "Remote cache `{}` {why}; the rest of this build uses the local cache only",
                self.config.url
            ));
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

    /// Records a call the server answered.
    fn answered(&self) {
        self.breaker.success();
    }

    /// Records a call that failed after its retries: a server that stopped answering leaves the
    /// build at once, one whose calls keep failing after [`TRIP_AFTER`] in a row; each other
    /// failure is a warning. NOT_FOUND is an answer: it never counts towards dropping the remote.
    /// A call that was in flight when the remote was dropped adds nothing: one warning said why.
    fn failed(&self, what: &str, status: &Status) {
        if self.down.load(Ordering::SeqCst) {
            return;
        }
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => self.drop_remote(
                format!("stopped answering ({what}: {})", describe(status)),
                &[],
            ),
            code => {
                let message = format!(
                    "Remote cache `{}`: {what} failed: {}",
                    self.config.url,
                    describe(status)
                );
                let new = self.warn(message.clone());
                if code == Code::NotFound {
                    return;
                }
                if let Some(streak) = self.breaker.failure(new.then_some(message)) {
                    self.drop_remote(
                        format!(
                            "failed {TRIP_AFTER} calls in a row (the last, {what}: {})",
                            describe(status)
                        ),
                        &streak,
                    );
                }
            }
        }
    }

    /// Most bytes of entries (blob data and [`ENTRY_OVERHEAD`](super::batch::ENTRY_OVERHEAD)
    /// apiece) in one batched call.
    fn batch_budget(&self, live: &Live) -> u64 {
        live.negotiated
            .batch_limit
            .saturating_sub(message_overhead(&self.config.instance_name))
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
            Ok(()) => self.answered(),
            Err(status) if status.code() == Code::NotFound => {
                self.answered();
                return false;
            }
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
        let missing: HashSet<Digest> = match live.runtime.block_on(calls.find_missing(&digests)) {
            Ok(missing) => {
                self.answered();
                missing.into_iter().collect()
            }
            Err(status) => {
                self.failed("FindMissingBlobs", &status);
                return Err(String::new());
            }
        };
        // What went wrong is warned about once, here; the caller only stops.
        let sent = |status: Result<(), Status>| {
            status.map(|()| self.answered()).map_err(|status| {
                self.failed("upload", &status);
                self.refused(status.code());
                String::new()
            })
        };
        let budget = self.batch_budget(live);
        let (small, large): (Vec<_>, Vec<_>) = blobs
            .into_iter()
            .filter(|(d, _)| missing.contains(d))
            .partition(|(d, _)| fits(d.size, budget));
        for (digest, source) in &large {
            sent(live.runtime.block_on(calls.write_blob(digest, source)))?;
        }
        let sizes: Vec<u64> = small.iter().map(|(d, _)| d.size).collect();
        let mut small = small.into_iter();
        for range in batches(&sizes, budget) {
            let mut batch = Vec::with_capacity(range.len());
            for (digest, source) in small.by_ref().take(range.len()) {
                let bytes = match source {
                    BlobSource::Bytes(b) => b,
                    BlobSource::File(path) => std::fs::read(&path)
                        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?,
                };
                batch.push((digest, bytes));
            }
            sent(live.runtime.block_on(calls.batch_update(batch)))?;
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
            Ok(result) => {
                self.answered();
                result
            }
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
        let budget = self.batch_budget(live);
        small.retain(|d| {
            let is_small = fits(d.size, budget);
            if !is_small {
                large.push(*d);
            }
            is_small
        });
        let calls = self.calls(&live.clients);
        let sizes: Vec<u64> = small.iter().map(|d| d.size).collect();
        for range in batches(&sizes, budget) {
            match live.runtime.block_on(calls.batch_read(&small[range])) {
                Ok(blobs) => {
                    self.answered();
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
        match live
            .runtime
            .block_on(calls.update_action_result(&upload.key, &upload.result))
        {
            Ok(()) => self.answered(),
            Err(status) => {
                self.failed("UpdateActionResult", &status);
                self.refused(status.code());
            }
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
