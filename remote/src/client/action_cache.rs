//! ActionCache calls: `GetActionResult` (NOT_FOUND is a miss) and `UpdateActionResult`.

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    ActionResult, GetActionResultRequest, UpdateActionResultRequest,
};
use kiln_cache::Digest;
use kiln_graph::action_key::to_proto;
use tonic::{Code, Status};

use super::capabilities::reapi_function;
use super::connection::Calls;
use super::retry::retry;

impl Calls<'_> {
    /// The stored result of action `key`, `None` on a miss.
    pub async fn get_action_result(&self, key: &Digest) -> Result<Option<ActionResult>, Status> {
        let request = GetActionResultRequest {
            instance_name: self.instance.to_string(),
            action_digest: Some(to_proto(key)),
            inline_stdout: false,
            inline_stderr: false,
            inline_output_files: Vec::new(),
            digest_function: reapi_function(self.function),
        };
        let result = retry(&self.policy, || {
            let mut client = self.clients.action_cache.clone();
            let request = request.clone();
            async move { Ok(client.get_action_result(request).await?.into_inner()) }
        })
        .await;
        match result {
            Ok(result) => Ok(Some(result)),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }

    /// Stores `result` as the result of action `key`.
    pub async fn update_action_result(
        &self,
        key: &Digest,
        result: &ActionResult,
    ) -> Result<(), Status> {
        let request = UpdateActionResultRequest {
            instance_name: self.instance.to_string(),
            action_digest: Some(to_proto(key)),
            action_result: Some(result.clone()),
            results_cache_policy: None,
            digest_function: reapi_function(self.function),
        };
        retry(&self.policy, || {
            let mut client = self.clients.action_cache.clone();
            let request = request.clone();
            async move {
                client.update_action_result(request).await?;
                Ok(())
            }
        })
        .await
    }
}
