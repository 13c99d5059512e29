//! `kiln serve` under load and in operation: 64 concurrent clients on overlapping blobs,
//! eviction under the cap while serving, restart keeping data, graceful shutdown finishing an
//! upload in flight, bearer-token rules, TLS and mutual TLS, metrics and health.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use common::*;
use kiln_remote::server::{Access, Auth, TlsFiles};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_share_overlapping_blobs_without_errors_or_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    // 96 blobs, small and large; client i uses blobs i..i+24 (mod 96), so each blob is
    // written and read by many clients at once.
    let blobs: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..96u64)
            .map(|i| {
                bytes(
                    i,
                    if i % 8 == 0 {
                        300_000 + i as usize
                    } else {
                        4096 + i as usize
                    },
                )
            })
            .collect(),
    );
    let mut clients = Vec::new();
    for c in 0..64usize {
        let channel = server.channel().await;
        let blobs = blobs.clone();
        clients.push(tokio::spawn(async move {
            let mut bs = ByteStreamClient::new(channel.clone());
            let mut cas = ContentAddressableStorageClient::new(channel);
            let mine: Vec<usize> = (0..24).map(|k| (c * 3 + k) % blobs.len()).collect();
            for (n, &i) in mine.iter().enumerate() {
                let data = &blobs[i];
                let d = sha256(data);
                if n % 2 == 0 {
                    let committed = write(&mut bs, &upload_name(&d), data, 32 << 10).await?;
                    assert_eq!(committed, data.len() as i64);
                } else {
                    let resp = cas
                        .batch_update_blobs(re::BatchUpdateBlobsRequest {
                            requests: vec![re::batch_update_blobs_request::Request {
                                digest: Some(d.clone()),
                                data: data.clone(),
                                compressor: 0,
                            }],
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    assert_eq!(resp.responses[0].status.as_ref().unwrap().code, 0);
                }
            }
            for &i in mine.iter().rev() {
                let data = &blobs[i];
                let got = read(&mut bs, &blob_name(&sha256(data)), 0, 0).await?;
                assert!(got == *data, "blob {i} came back different");
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for client in clients {
        client.await.unwrap().unwrap();
    }
    let mut cas = ContentAddressableStorageClient::new(server.channel().await);
    let all: Vec<_> = blobs.iter().map(|b| sha256(b)).collect();
    assert!(find_missing(&mut cas, all).await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_keeps_the_cache_under_its_cap_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_size_bytes = 2 << 20;
    let server = start(cfg).await;
    let channel = server.channel().await;
    let mut bs = ByteStreamClient::new(channel.clone());
    let blobs: Vec<Vec<u8>> = (0..48).map(|i| bytes(100 + i, 128 << 10)).collect();
    for data in &blobs {
        write(&mut bs, &upload_name(&sha256(data)), data, 64 << 10)
            .await
            .unwrap();
    }
    // The evictor runs in the background; wait for it (bounded, not a timing assertion).
    let mut size = u64::MAX;
    for _ in 0..200 {
        let (_, metrics) = server.http_get("/metrics").await;
        size = metric(&metrics, "kiln_cache_size_bytes");
        if metric(&metrics, "kiln_cache_evictions_total") > 0 && size <= 2 << 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(size <= 2 << 20, "cache holds {size} bytes over a 2 MiB cap");
    // The server still serves: what is left reads back intact, the newest blob is there,
    // the evicted ones are clean misses.
    let mut present = 0;
    for data in &blobs {
        match read(&mut bs, &blob_name(&sha256(data)), 0, 0).await {
            Ok(got) => {
                assert!(got == *data);
                present += 1;
            }
            Err(status) => assert_eq!(status.code(), Code::NotFound),
        }
    }
    assert!(present > 0 && present < blobs.len(), "{present}");
    let newest = blobs.last().unwrap();
    assert_eq!(
        read(&mut bs, &blob_name(&sha256(newest)), 0, 0)
            .await
            .unwrap(),
        *newest
    );
    let on_disk: u64 = std::fs::read_dir(dir.path().join("cas/sha256"))
        .unwrap()
        .flatten()
        .flat_map(|shard| std::fs::read_dir(shard.path()).unwrap().flatten())
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 2 << 20, "{on_disk} bytes of blob files on disk");
    server.stop().await;
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_blobs_and_action_results_and_shutdown_finishes_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let channel = server.channel().await;
    let mut bs = ByteStreamClient::new(channel.clone());
    let mut ac = ActionCacheClient::new(channel.clone());
    let kept = bytes(7, 50_000);
    write(&mut bs, &upload_name(&sha256(&kept)), &kept, 8192)
        .await
        .unwrap();
    let result = re::ActionResult {
        output_files: vec![re::OutputFile {
            path: "o".into(),
            digest: Some(sha256(&kept)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let action = sha256(b"restart action");
    ac.update_action_result(re::UpdateActionResultRequest {
        action_digest: Some(action.clone()),
        action_result: Some(result.clone()),
        ..Default::default()
    })
    .await
    .unwrap();

    // An upload is half sent when the stop signal arrives; it still completes.
    let late = bytes(8, 400_000);
    let late_d = sha256(&late);
    let name = upload_name(&late_d);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut reqs = write_requests(&name, &late, 0, 50_000, true).into_iter();
    for req in reqs.by_ref().take(4) {
        tx.send(req).await.unwrap();
    }
    let mut bs2 = ByteStreamClient::new(channel);
    let upload = tokio::spawn(async move {
        bs2.write(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stopping = server.begin_stop();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for req in reqs {
        tx.send(req).await.unwrap();
    }
    drop(tx);
    let committed = upload.await.unwrap().unwrap().into_inner().committed_size;
    assert_eq!(committed, late.len() as i64);
    stopping.await.unwrap().unwrap();

    let server = start(config(dir.path())).await;
    let channel = server.channel().await;
    let mut bs = ByteStreamClient::new(channel.clone());
    let mut ac = ActionCacheClient::new(channel);
    assert_eq!(
        read(&mut bs, &blob_name(&sha256(&kept)), 0, 0)
            .await
            .unwrap(),
        kept
    );
    assert_eq!(
        read(&mut bs, &blob_name(&late_d), 0, 0).await.unwrap(),
        late
    );
    let hit = ac
        .get_action_result(re::GetActionResultRequest {
            action_digest: Some(action),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hit, result);
    let (status, body) = server.http_get("/healthz").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "ok\n");
    server.stop().await;
}

fn bearer<T>(mut req: tonic::Request<T>, token: Option<&str>) -> tonic::Request<T> {
    if let Some(token) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_grant_read_or_write_and_anonymous_access_is_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = HashMap::from([
        ("writer".to_string(), Access::Write),
        ("reader".to_string(), Access::Read),
    ]);
    let mut cfg = config(dir.path());
    cfg.auth = Auth::new(tokens.clone(), Access::None);
    cfg.anonymous_writes = false;
    let server = start(cfg).await;
    let channel = server.channel().await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut caps = CapabilitiesClient::new(channel);
    let data = b"guarded".to_vec();
    let update = |token| {
        bearer(
            tonic::Request::new(re::BatchUpdateBlobsRequest {
                requests: vec![re::batch_update_blobs_request::Request {
                    digest: Some(sha256(&data)),
                    data: data.clone(),
                    compressor: 0,
                }],
                ..Default::default()
            }),
            token,
        )
    };
    let find = |token| {
        bearer(
            tonic::Request::new(re::FindMissingBlobsRequest {
                blob_digests: vec![sha256(&data)],
                ..Default::default()
            }),
            token,
        )
    };
    fn code<T>(r: Result<T, tonic::Status>) -> Option<Code> {
        r.err().map(|s| s.code())
    }
    assert_eq!(
        code(cas.find_missing_blobs(find(None)).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code(cas.find_missing_blobs(find(Some("bogus"))).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code(cas.batch_update_blobs(update(None)).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code(cas.batch_update_blobs(update(Some("reader"))).await),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        code(cas.find_missing_blobs(find(Some("reader"))).await),
        None
    );
    assert_eq!(
        code(cas.batch_update_blobs(update(Some("writer"))).await),
        None
    );
    let got = caps
        .get_capabilities(bearer(
            tonic::Request::new(Default::default()),
            Some("reader"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        got.cache_capabilities
            .unwrap()
            .action_cache_update_capabilities
            .unwrap()
            .update_enabled
    );
    server.stop().await;

    // Anonymous reads when configured; writes still need a token.
    let mut cfg = config(dir.path());
    cfg.auth = Auth::new(tokens, Access::Read);
    cfg.anonymous_writes = false;
    let server = start(cfg).await;
    let mut cas = ContentAddressableStorageClient::new(server.channel().await);
    assert!(cas
        .find_missing_blobs(find(None))
        .await
        .unwrap()
        .into_inner()
        .missing_blob_digests
        .is_empty());
    assert_eq!(
        code(cas.batch_update_blobs(update(None)).await),
        Some(Code::Unauthenticated)
    );
    server.stop().await;
}

/// The status code of a finished call, `None` for success.
fn outcome<T>(r: Result<T, tonic::Status>) -> Option<Code> {
    r.err().map(|s| s.code())
}

/// Reads a whole blob as `token`'s holder.
async fn read_as(
    bs: &mut ByteStreamClient<tonic::transport::Channel>,
    name: &str,
    token: Option<&str>,
) -> Result<Vec<u8>, tonic::Status> {
    let request = bs::ReadRequest {
        resource_name: name.to_string(),
        ..Default::default()
    };
    let mut stream = bs
        .read(bearer(tonic::Request::new(request), token))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(piece) = stream.message().await? {
        out.extend_from_slice(&piece.data);
    }
    Ok(out)
}

/// ByteStream (Read is served by its own route, beneath tonic's codec) and the action cache
/// check the same tokens as the CAS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytestream_and_action_cache_check_tokens_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.auth = Auth::new(
        HashMap::from([
            ("writer".to_string(), Access::Write),
            ("reader".to_string(), Access::Read),
        ]),
        Access::None,
    );
    cfg.anonymous_writes = false;
    let server = start(cfg).await;
    let channel = server.channel().await;
    let mut bs = ByteStreamClient::new(channel.clone());
    let mut ac = ActionCacheClient::new(channel);
    // Large enough to stream in pieces from a blocking thread.
    let data = bytes(5, (2 << 20) + 3);
    let digest = sha256(&data);
    let upload = |token| {
        let requests = write_requests(&upload_name(&digest), &data, 0, 1 << 20, true);
        bearer(tonic::Request::new(tokio_stream::iter(requests)), token)
    };
    assert_eq!(
        outcome(bs.write(upload(None)).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        outcome(bs.write(upload(Some("reader"))).await),
        Some(Code::PermissionDenied)
    );
    assert_eq!(outcome(bs.write(upload(Some("writer"))).await), None);
    let status = |token| {
        bearer(
            tonic::Request::new(bs::QueryWriteStatusRequest {
                resource_name: upload_name(&digest),
            }),
            token,
        )
    };
    assert_eq!(
        outcome(bs.query_write_status(status(Some("reader"))).await),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        outcome(bs.query_write_status(status(Some("writer"))).await),
        None
    );

    let name = blob_name(&digest);
    assert_eq!(
        outcome(read_as(&mut bs, &name, None).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        outcome(read_as(&mut bs, &name, Some("bogus")).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(read_as(&mut bs, &name, Some("reader")).await.unwrap(), data);

    let action = sha256(b"action");
    let update = |token| {
        bearer(
            tonic::Request::new(re::UpdateActionResultRequest {
                action_digest: Some(action.clone()),
                action_result: Some(re::ActionResult {
                    output_files: vec![re::OutputFile {
                        path: "out".into(),
                        digest: Some(digest.clone()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            token,
        )
    };
    let get = |token| {
        bearer(
            tonic::Request::new(re::GetActionResultRequest {
                action_digest: Some(action.clone()),
                ..Default::default()
            }),
            token,
        )
    };
    assert_eq!(
        outcome(ac.update_action_result(update(Some("reader"))).await),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        outcome(ac.update_action_result(update(Some("writer"))).await),
        None
    );
    assert_eq!(
        outcome(ac.get_action_result(get(None)).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        outcome(ac.get_action_result(get(Some("reader"))).await),
        None
    );
    server.stop().await;
}

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client: Identity,
}

/// A CA, a server certificate for `localhost` and a client certificate, all signed by the CA.
fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("localhost");
    let (client_cert, client_key) = leaf("client");
    std::fs::write(dir.path().join("server.pem"), server_cert).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca_cert.pem(),
        client: Identity::from_pem(client_cert, client_key),
    }
}

async fn tls_find(addr: std::net::SocketAddr, tls: ClientTlsConfig) -> Result<(), String> {
    let channel = Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut cas = ContentAddressableStorageClient::new(channel);
    find_missing_result(&mut cas).await
}

async fn find_missing_result(
    cas: &mut ContentAddressableStorageClient<tonic::transport::Channel>,
) -> Result<(), String> {
    cas.find_missing_blobs(re::FindMissingBlobsRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_client_certificates() {
    let pki = pki();
    let cache = tempfile::tempdir().unwrap();
    let files = |client_ca: bool| TlsFiles {
        cert: pki.dir.path().join("server.pem"),
        key: pki.dir.path().join("server.key"),
        client_ca: client_ca.then(|| pki.dir.path().join("ca.pem")),
    };
    let trust = || ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem));

    let mut cfg = config(cache.path());
    cfg.tls = Some(files(false));
    let server = start(cfg).await;
    tls_find(server.addr, trust()).await.unwrap();
    // Plain text against the TLS port fails; so does a client that does not trust the CA.
    let plain = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let mut cas = ContentAddressableStorageClient::new(channel);
        assert!(find_missing_result(&mut cas).await.is_err());
    }
    assert!(tls_find(server.addr, ClientTlsConfig::new()).await.is_err());
    server.stop().await;

    let mut cfg = config(cache.path());
    cfg.tls = Some(files(true));
    let server = start(cfg).await;
    assert!(
        tls_find(server.addr, trust()).await.is_err(),
        "no client certificate"
    );
    tls_find(server.addr, trust().identity(pki.client.clone()))
        .await
        .unwrap();
    server.stop().await;
}
