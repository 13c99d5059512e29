//! The remote cache as the engine sees it: a tier behind the local cache that the [`Runner`]
//! consults when the local action cache misses, and to which it uploads what it ran. `graph` knows
//! no gRPC: `kiln-remote` implements [`RemoteCache`] and the CLI wires it in.
//!
//! Every method answers a remote problem (unreachable server, timeout, bad reply) with a miss or a
//! skipped upload and a warning, never an error: a remote cache can make a build faster, not fail it.
//!
//! [`Runner`]: crate::execute::Runner

use std::path::PathBuf;
use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use kiln_cache::{Digest, LocalCache};

/// A remote REAPI cache (action cache + CAS).
pub trait RemoteCache: Send + Sync {
    /// The action's result, if the remote has one. Any problem is a miss.
    fn get_action_result(&self, key: &Digest) -> Option<reapi::ActionResult>;

    /// Downloads `digests` into `cache`, verifying each blob's content against its digest.
    /// Returns the digests that are now in the local cache; a blob the remote does not have (or
    /// sent corrupt) is simply absent from the answer.
    fn fetch(&self, digests: &[Digest], cache: &LocalCache) -> Vec<Digest>;

    /// Uploads a locally executed action: the blobs the remote is missing, then the result.
    fn upload(&self, upload: ResultUpload);

    /// Warnings collected so far (each reported once), for the build's output.
    fn take_warnings(&self) -> Vec<String>;
}

/// Which outputs of remote cache hits are downloaded ("builds without the bytes").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DownloadOutputs {
    /// Every output of every remote hit.
    All,
    /// Only the outputs the user asked for (and test logs); intermediate outputs are fetched only
    /// when a local action reads them.
    #[default]
    TopLevel,
    /// Nothing but what local actions read and test logs; top-level outputs of remote hits are
    /// not written to `kiln-out/`.
    Minimal,
}

impl DownloadOutputs {
    /// The flag value: `all`, `toplevel` or `minimal`.
    pub fn name(self) -> &'static str {
        match self {
            DownloadOutputs::All => "all",
            DownloadOutputs::TopLevel => "toplevel",
            DownloadOutputs::Minimal => "minimal",
        }
    }
}

/// The remote tier of one build.
#[derive(Clone)]
pub struct RemoteTier {
    /// The remote cache.
    pub cache: Arc<dyn RemoteCache>,
    /// Which outputs of remote hits to download.
    pub download: DownloadOutputs,
    /// Upload the results of actions run locally.
    pub upload_local_results: bool,
}

/// Where an uploaded blob's bytes are.
#[derive(Debug)]
pub enum BlobSource {
    /// In memory (encoded messages, logs).
    Bytes(Vec<u8>),
    /// In a file (a blob of the local CAS).
    File(PathBuf),
}

/// A locally executed action's result and the blobs it names.
#[derive(Debug)]
pub struct ResultUpload {
    /// The action key.
    pub key: Digest,
    /// The result, naming blobs by digest only (nothing inline, as REAPI asks of uploads).
    pub result: reapi::ActionResult,
    /// Every blob the remote needs: the `Action`, its `Command`, outputs and logs.
    pub blobs: Vec<(Digest, BlobSource)>,
}
