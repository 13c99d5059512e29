//! ContentAddressableStorage calls: `FindMissingBlobs`, `BatchUpdateBlobs` and `BatchReadBlobs`.
//! The caller forms the batches (`batch.rs`) and verifies what it downloads.

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    batch_update_blobs_request, BatchReadBlobsRequest, BatchUpdateBlobsRequest,
    FindMissingBlobsRequest,
};
use kiln_cache::{Digest, DigestFunction};
use kiln_graph::action_key::{from_proto, to_proto};
use tonic::{Code, Status};

use super::capabilities::reapi_function;
use super::connection::Calls;
use super::retry::retry;

/// Digests per `FindMissingBlobs` request (about 100 bytes each on the wire).
const FIND_MISSING_CHUNK: usize = 10_000;

impl Calls<'_> {
    /// The digests among `digests` that the server does not have.
    pub async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, Status> {
        let mut missing = Vec::new();
        for chunk in digests.chunks(FIND_MISSING_CHUNK) {
            let request = FindMissingBlobsRequest {
                instance_name: self.instance.to_string(),
                blob_digests: chunk.iter().map(to_proto).collect(),
                digest_function: reapi_function(self.function),
            };
            let response = retry(&self.policy, || {
                let mut client = self.clients.cas.clone();
                let request = request.clone();
                async move { Ok(client.find_missing_blobs(request).await?.into_inner()) }
            })
            .await?;
            for digest in &response.missing_blob_digests {
                let digest = from_proto(self.function, digest).ok_or_else(|| {
                    Status::internal("the server named a malformed digest as missing")
                })?;
                missing.push(digest);
            }
        }
        Ok(missing)
    }

    /// Uploads small blobs in one call; fails if any blob is refused.
    pub async fn batch_update(&self, blobs: Vec<(Digest, Vec<u8>)>) -> Result<(), Status> {
        let request = update_request(self.instance, self.function, blobs);
        let response = retry(&self.policy, || {
            let mut client = self.clients.cas.clone();
            let request = request.clone();
            async move { Ok(client.batch_update_blobs(request).await?.into_inner()) }
        })
        .await?;
        for blob in &response.responses {
            if let Some(status) = blob.status.as_ref().filter(|s| s.code != 0) {
                let hash = blob.digest.as_ref().map(|d| d.hash.as_str()).unwrap_or("?");
                return Err(Status::new(
                    Code::from_i32(status.code),
                    format!("blob {hash} refused: {}", status.message),
                ));
            }
        }
        Ok(())
    }

    /// Downloads small blobs in one call: the ones the server sent (unverified).
    pub async fn batch_read(&self, digests: &[Digest]) -> Result<Vec<(Digest, Vec<u8>)>, Status> {
        let request = BatchReadBlobsRequest {
            instance_name: self.instance.to_string(),
            digests: digests.iter().map(to_proto).collect(),
            acceptable_compressors: Vec::new(),
            digest_function: reapi_function(self.function),
        };
        let response = retry(&self.policy, || {
            let mut client = self.clients.cas.clone();
            let request = request.clone();
            async move { Ok(client.batch_read_blobs(request).await?.into_inner()) }
        })
        .await?;
        let mut found = Vec::new();
        for blob in response.responses {
            if blob.status.as_ref().is_some_and(|s| s.code != 0) || blob.compressor != 0 {
                continue;
            }
            let Some(digest) = blob
                .digest
                .as_ref()
                .and_then(|d| from_proto(self.function, d))
            else {
                continue;
            };
            if digests.contains(&digest) {
                found.push((digest, blob.data));
            }
        }
        Ok(found)
    }
}

/// The `BatchUpdateBlobs` request carrying `blobs`.
pub(crate) fn update_request(
    instance: &str,
    function: DigestFunction,
    blobs: Vec<(Digest, Vec<u8>)>,
) -> BatchUpdateBlobsRequest {
    BatchUpdateBlobsRequest {
        instance_name: instance.to_string(),
        requests: blobs
            .into_iter()
            .map(|(digest, data)| batch_update_blobs_request::Request {
                digest: Some(to_proto(&digest)),
                data,
                compressor: 0,
            })
            .collect(),
        digest_function: reapi_function(function),
    }
}
