//! The gRPC channel: one lazily connected HTTP/2 channel (TLS with the system's roots for
//! `grpcs://`), the configured headers added to every call, and a client per REAPI service.

use std::sync::Arc;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2::{
    action_cache_client::ActionCacheClient, capabilities_client::CapabilitiesClient,
    content_addressable_storage_client::ContentAddressableStorageClient,
};
use bazel_remote_apis::google::bytestream::byte_stream_client::ByteStreamClient;
use kiln_cache::DigestFunction;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use super::config::{ClientTls, Header, Target};
use super::retry::Policy;

/// Largest message accepted from the server (batch reads are kept well below it).
const MAX_MESSAGE: usize = 64 << 20;

/// Adds the configured headers to each call.
#[derive(Clone)]
pub(crate) struct Headers(Arc<Vec<Header>>);

impl tonic::service::Interceptor for Headers {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        for (key, value) in self.0.iter() {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(request)
    }
}

type Service = InterceptedService<Channel, Headers>;

/// One client per service, all on the same channel (cheap to clone).
#[derive(Clone)]
pub(crate) struct Clients {
    pub capabilities: CapabilitiesClient<Service>,
    pub action_cache: ActionCacheClient<Service>,
    pub cas: ContentAddressableStorageClient<Service>,
    pub bytestream: ByteStreamClient<Service>,
}

impl Clients {
    /// Sets up the channel without connecting yet. Must run inside the Tokio runtime.
    pub fn new(
        target: &Target,
        tls: &ClientTls,
        headers: Vec<Header>,
        connect_timeout: Duration,
    ) -> Result<Clients, String> {
        let mut endpoint = Endpoint::from_shared(target.uri.clone())
            .map_err(|e| e.to_string())?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        if target.tls {
            let mut config = ClientTlsConfig::new().with_native_roots();
            if let Some(pem) = &tls.ca_certificate_pem {
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some((cert, key)) = &tls.client_identity_pem {
                config = config.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(config).map_err(|e| e.to_string())?;
        }
        let channel = endpoint.connect_lazy();
        let headers = Headers(Arc::new(headers));
        let with = |channel: &Channel| InterceptedService::new(channel.clone(), headers.clone());
        Ok(Clients {
            capabilities: CapabilitiesClient::new(with(&channel)),
            action_cache: ActionCacheClient::new(with(&channel))
                .max_decoding_message_size(MAX_MESSAGE),
            cas: ContentAddressableStorageClient::new(with(&channel))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            bytestream: ByteStreamClient::new(with(&channel))
                .max_decoding_message_size(MAX_MESSAGE),
        })
    }
}

/// What every call needs: the clients, the instance name, the digest function and the policy.
pub(crate) struct Calls<'a> {
    pub clients: &'a Clients,
    pub instance: &'a str,
    pub function: DigestFunction,
    pub policy: Policy,
}
