//! `Capabilities.GetCapabilities`: a cache-only endpoint offering SHA-256 and BLAKE3, action
//! cache updates, zstd on ByteStream and in batches, and the batch size the message-size limits
//! were set for. API versions 2.0 to 2.3 (Bazel 4 wants 2.0 inside the range).

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::build::bazel::semver::SemVer;
use re::capabilities_server::Capabilities;
use re::compressor::Value as Compressor;
use tonic::{Request, Response, Status};

use super::auth::Access;
use super::digests;
use super::store::Store;
use super::MAX_BATCH_BYTES;

/// The Capabilities service.
pub struct CapabilitiesService {
    store: Store,
    update_enabled: bool,
}

impl CapabilitiesService {
    /// `update_enabled` tells clients whether they may write results (anonymous read-only
    /// servers say no, so Bazel does not try).
    pub fn new(store: Store, update_enabled: bool) -> Self {
        CapabilitiesService {
            store,
            update_enabled,
        }
    }
}

fn version(major: i32, minor: i32) -> Option<SemVer> {
    Some(SemVer {
        major,
        minor,
        ..Default::default()
    })
}

#[tonic::async_trait]
impl Capabilities for CapabilitiesService {
    async fn get_capabilities(
        &self,
        request: Request<re::GetCapabilitiesRequest>,
    ) -> Result<Response<re::ServerCapabilities>, Status> {
        let _t = self.store.metrics.time("GetCapabilities");
        self.store.authorize(request.metadata(), Access::Read)?;
        let cache = re::CacheCapabilities {
            digest_functions: digests::OFFERED.iter().map(|f| *f as i32).collect(),
            action_cache_update_capabilities: Some(re::ActionCacheUpdateCapabilities {
                update_enabled: self.update_enabled,
            }),
            cache_priority_capabilities: Some(re::PriorityCapabilities {
                priorities: vec![re::priority_capabilities::PriorityRange {
                    min_priority: 0,
                    max_priority: 0,
                }],
            }),
            max_batch_total_size_bytes: MAX_BATCH_BYTES as i64,
            symlink_absolute_path_strategy: re::symlink_absolute_path_strategy::Value::Disallowed
                as i32,
            supported_compressors: vec![Compressor::Zstd as i32],
            supported_batch_update_compressors: vec![Compressor::Zstd as i32],
            ..Default::default()
        };
        Ok(Response::new(re::ServerCapabilities {
            cache_capabilities: Some(cache),
            low_api_version: version(2, 0),
            high_api_version: version(2, 3),
            ..Default::default()
        }))
    }
}
