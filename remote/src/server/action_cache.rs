//! `ActionCache`: Get answers NOT_FOUND unless every blob the result names is present (output
//! files, stdout/stderr, each output directory's `Tree` and every file inside it), and checking
//! them refreshes them for eviction; Update validates the result's digests and stores it.
//!
//! Entries live in the cache crate's action cache, keyed on (digest function, action hash).

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use kiln_cache::{Digest, DigestFunction, LocalCache};
use prost::Message;
use re::action_cache_server::ActionCache;
use tonic::{Request, Response, Status};

use super::auth::Access;
use super::digests;
use super::store::{Store, INLINE_BYTES, INLINE_DIGESTS, MAX_TREE_BYTES};

/// Total bytes inlined into one Get response (well under the 4 MiB gRPC default).
const INLINE_BUDGET: u64 = 3 << 20;

/// The ActionCache service.
pub struct ActionCacheService {
    store: Store,
}

impl ActionCacheService {
    /// A service over `store`.
    pub fn new(store: Store) -> Self {
        ActionCacheService { store }
    }
}

#[tonic::async_trait]
impl ActionCache for ActionCacheService {
    async fn get_action_result(
        &self,
        request: Request<re::GetActionResultRequest>,
    ) -> Result<Response<re::ActionResult>, Status> {
        let _t = self.store.metrics.time("GetActionResult");
        self.store.authorize(request.metadata(), Access::Read)?;
        let req = request.into_inner();
        let function = digests::function(req.digest_function)?;
        let action = digests::parse(function, req.action_digest.as_ref())?;
        // The entry is small: read it here; check and inline on a blocking thread only when
        // that means reading trees or many or large blobs.
        let found = match self.store.inline(|cache| load(cache, &action)) {
            Some(result) if is_small(&result, &req) => self
                .store
                .inline(|cache| complete(cache, function, result, &req))?,
            Some(result) => {
                self.store
                    .blocking(move |cache| complete(cache, function, result, &req))
                    .await??
            }
            None => None,
        };
        self.store.metrics.lookup("ac", found.is_some());
        found
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("No complete result for action `{action}`")))
    }

    async fn update_action_result(
        &self,
        request: Request<re::UpdateActionResultRequest>,
    ) -> Result<Response<re::ActionResult>, Status> {
        let _t = self.store.metrics.time("UpdateActionResult");
        self.store.authorize(request.metadata(), Access::Write)?;
        let req = request.into_inner();
        let function = digests::function(req.digest_function)?;
        let action = digests::parse(function, req.action_digest.as_ref())?;
        let result = req
            .action_result
            .ok_or_else(|| Status::invalid_argument("Missing action_result"))?;
        referenced(function, &result)?;
        let bytes = result.encode_to_vec();
        let len = bytes.len() as u64;
        self.store
            .run(len <= INLINE_BYTES, move |cache| {
                cache.put_action_result(&action, &bytes)
            })
            .await?
            .map_err(|e| Status::internal(format!("Cannot store the action result: {e}")))?;
        self.store.note_written(len);
        Ok(Response::new(result))
    }
}

/// The stored result, if there is one and it decodes.
fn load(cache: &LocalCache, action: &Digest) -> Option<re::ActionResult> {
    let bytes = match cache.get_action_result(action) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, %action, "action-cache read failed; answering a miss");
            return None;
        }
    };
    let decoded = re::ActionResult::decode(bytes.as_slice());
    if decoded.is_err() {
        tracing::warn!(%action, "undecodable action result; answering a miss");
    }
    decoded.ok()
}

/// Whether completing `result` is small work: no trees to read, few blobs to check, little
/// to inline.
fn is_small(result: &re::ActionResult, req: &re::GetActionResultRequest) -> bool {
    let size = |d: Option<&re::Digest>| d.map_or(0, |d| d.size_bytes.max(0) as u64);
    let mut inlined = 0u64;
    if req.inline_stdout {
        inlined = inlined.saturating_add(size(result.stdout_digest.as_ref()));
    }
    if req.inline_stderr {
        inlined = inlined.saturating_add(size(result.stderr_digest.as_ref()));
    }
    for file in &result.output_files {
        if req.inline_output_files.contains(&file.path) {
            inlined = inlined.saturating_add(size(file.digest.as_ref()));
        }
    }
    result.output_directories.is_empty()
        && result.output_files.len() + 2 <= INLINE_DIGESTS
        && inlined <= INLINE_BYTES
}

/// `result` if every blob it names is present, with what was asked inlined.
fn complete(
    cache: &LocalCache,
    function: DigestFunction,
    mut result: re::ActionResult,
    req: &re::GetActionResultRequest,
) -> Result<Option<re::ActionResult>, Status> {
    let Ok(mut blobs) = referenced(function, &result) else {
        return Ok(None);
    };
    for dir in &result.output_directories {
        let Ok(tree) = digests::parse(function, dir.tree_digest.as_ref()) else {
            return Ok(None);
        };
        // A tree too large to check in memory is a miss, unread.
        let Ok(Some(tree_bytes)) = Store::read_blob_up_to(cache, &tree, MAX_TREE_BYTES) else {
            return Ok(None);
        };
        let Ok(tree) = re::Tree::decode(tree_bytes.as_slice()) else {
            return Ok(None);
        };
        for directory in tree.root.iter().chain(&tree.children) {
            for file in &directory.files {
                let Ok(d) = digests::parse(function, file.digest.as_ref()) else {
                    return Ok(None);
                };
                blobs.push(d);
            }
        }
    }
    if !blobs.iter().all(|d| Store::has_blob(cache, d)) {
        return Ok(None);
    }
    inline(cache, function, &mut result, req)?;
    Ok(Some(result))
}

/// Validates the digests an ActionResult names and returns those that must be in the CAS
/// (output files, trees, stdout, stderr).
fn referenced(function: DigestFunction, result: &re::ActionResult) -> Result<Vec<Digest>, Status> {
    let mut blobs = Vec::new();
    for file in &result.output_files {
        if file.path.is_empty() || file.path.starts_with('/') {
            return Err(Status::invalid_argument(format!(
                "Output file path `{}` must be relative and non-empty",
                file.path
            )));
        }
        blobs.push(digests::parse(function, file.digest.as_ref())?);
    }
    for dir in &result.output_directories {
        if dir.path.starts_with('/') {
            return Err(Status::invalid_argument(format!(
                "Output directory path `{}` must be relative",
                dir.path
            )));
        }
        blobs.push(digests::parse(function, dir.tree_digest.as_ref())?);
    }
    for digest in [&result.stdout_digest, &result.stderr_digest]
        .into_iter()
        .flatten()
    {
        blobs.push(digests::parse(function, Some(digest))?);
    }
    Ok(blobs)
}

/// Inlines the requested stdout, stderr and output files within [`INLINE_BUDGET`].
fn inline(
    cache: &LocalCache,
    function: DigestFunction,
    result: &mut re::ActionResult,
    req: &re::GetActionResultRequest,
) -> Result<(), Status> {
    let mut budget = INLINE_BUDGET;
    let mut take = |digest: Option<&re::Digest>| -> Result<Option<Vec<u8>>, Status> {
        let Ok(d) = digests::parse(function, digest) else {
            return Ok(None);
        };
        if d.size > budget {
            return Ok(None);
        }
        let bytes = Store::read_blob(cache, &d)?;
        if let Some(b) = &bytes {
            budget -= b.len() as u64;
        }
        Ok(bytes)
    };
    if req.inline_stdout && result.stdout_raw.is_empty() {
        if let Some(bytes) = take(result.stdout_digest.as_ref())? {
            result.stdout_raw = bytes;
        }
    }
    if req.inline_stderr && result.stderr_raw.is_empty() {
        if let Some(bytes) = take(result.stderr_digest.as_ref())? {
            result.stderr_raw = bytes;
        }
    }
    for file in &mut result.output_files {
        if file.contents.is_empty() && req.inline_output_files.contains(&file.path) {
            if let Some(bytes) = take(file.digest.as_ref())? {
                file.contents = bytes;
            }
        }
    }
    Ok(())
}
