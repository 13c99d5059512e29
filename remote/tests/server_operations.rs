//! `kiln serve` under load and in operation: 64 concurrent clients on overlapping blobs,
//! eviction under the cap while serving, restart keeping data, graceful shutdown finishing an
//! upload in flight and cutting off a stalled one after the grace period, refresh on
//! FindMissingBlobs and action-cache hits, cancelled reads, bearer-token rules, TLS and mutual
//! TLS, metrics and health.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use common::*;
use kiln_remote::server::{Access, Auth, ReadLimits, TlsFiles};
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

async fn put(bs: &mut ByteStreamClient<tonic::transport::Channel>, data: &[u8]) {
    write(bs, &upload_name(&sha256(data)), data, 64 << 10)
        .await
        .unwrap();
}

/// Waits (bounded; not a timing assertion) until the evictor has brought the cache under `cap`.
async fn wait_for_eviction(server: &TestServer, cap: u64) {
    for _ in 0..200 {
        let (_, metrics) = server.http_get("/metrics").await;
        let size = metric(&metrics, "kiln_cache_size_bytes");
        if metric(&metrics, "kiln_cache_evictions_total") > 0 && size <= cap {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the cache did not shrink under {cap} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_missing_and_action_cache_hits_refresh_what_they_name_for_eviction() {
    use prost::Message as _;
    let dir = tempfile::tempdir().unwrap();
    let cap = 2 << 20;
    let mut cfg = config(dir.path());
    cfg.max_size_bytes = cap;
    let server = start(cfg).await;
    let (mut cas, mut bs, mut ac) = server.clients().await;
    let blob = |i: u64| bytes(300 + i, 128 << 10);

    // 10 blobs: 1.25 MiB of the 2 MiB cap. A tree holds blob 2 as a file; an action result
    // names blob 1 and the tree.
    for i in 0..10 {
        put(&mut bs, &blob(i)).await;
    }
    let tree = re::Tree {
        root: Some(re::Directory {
            files: vec![re::FileNode {
                name: "f".into(),
                digest: Some(sha256(&blob(2))),
                ..Default::default()
            }],
            ..Default::default()
        }),
        children: vec![],
    }
    .encode_to_vec();
    put(&mut bs, &tree).await;
    let action = sha256(b"refreshing action");
    ac.update_action_result(re::UpdateActionResultRequest {
        action_digest: Some(action.clone()),
        action_result: Some(re::ActionResult {
            output_files: vec![re::OutputFile {
                path: "o".into(),
                digest: Some(sha256(&blob(1))),
                ..Default::default()
            }],
            output_directories: vec![re::OutputDirectory {
                path: "d".into(),
                tree_digest: Some(sha256(&tree)),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();

    // Four newer blobs; then blob 0 is refreshed by FindMissingBlobs and blob 1, the tree and
    // the file inside it (blob 2) by an action-cache hit.
    for i in 10..14 {
        put(&mut bs, &blob(i)).await;
    }
    assert!(find_missing(&mut cas, vec![sha256(&blob(0))])
        .await
        .is_empty());
    ac.get_action_result(re::GetActionResultRequest {
        action_digest: Some(action.clone()),
        ..Default::default()
    })
    .await
    .unwrap();

    // Another 1 MiB goes over the cap: the least recently used blobs (3 to 9 first) are
    // evicted, the refreshed ones stay although they were written before them.
    for i in 14..22 {
        put(&mut bs, &blob(i)).await;
    }
    wait_for_eviction(&server, cap).await;
    let refreshed = [
        sha256(&blob(0)),
        sha256(&blob(1)),
        sha256(&blob(2)),
        sha256(&tree),
    ];
    let stale: Vec<re::Digest> = (3..10).map(|i| sha256(&blob(i))).collect();
    let missing = find_missing(&mut cas, refreshed.iter().chain(&stale).cloned().collect()).await;
    assert_eq!(missing, stale);
    // And the action result is still a hit.
    ac.get_action_result(re::GetActionResultRequest {
        action_digest: Some(action),
        ..Default::default()
    })
    .await
    .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_cancelled_mid_stream_stops_reading_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let channel = server.channel().await;
    let mut bs = ByteStreamClient::new(channel.clone());
    let size = 64 << 20;
    let data = bytes(41, size);
    put(&mut bs, &data).await;
    let (_, before) = server.http_get("/metrics").await;
    let sent_before = metric(&before, "kiln_cache_sent_bytes_total");

    // Eight reads, each dropped after its first message.
    let cancelled = 8;
    for _ in 0..cancelled {
        let mut stream = bs
            .read(bs::ReadRequest {
                resource_name: blob_name(&sha256(&data)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!stream.message().await.unwrap().unwrap().data.is_empty());
    }
    // Every reading thread ends (bounded wait, not a timing assertion), having sent a few
    // pieces ahead of the client, not the blob.
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = server.http_get("/metrics").await.1;
        if metric(&metrics, "kiln_cache_streaming_reads") == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&metrics, "kiln_cache_streaming_reads"),
        0,
        "{metrics}"
    );
    let sent = metric(&metrics, "kiln_cache_sent_bytes_total") - sent_before;
    assert!(
        sent < (cancelled * size / 4) as u64,
        "{sent} bytes read for {cancelled} cancelled reads of {size} bytes"
    );
    // The server goes on serving the blob whole.
    assert!(
        read(&mut bs, &blob_name(&sha256(&data)), 0, 0)
            .await
            .unwrap()
            == data
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_stalled_past_the_shutdown_grace_is_cut_off_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.shutdown_grace = std::time::Duration::from_secs(1);
    let server = start(cfg.clone()).await;
    let channel = server.channel().await;
    let stalled = bytes(51, 400_000);
    let digest = sha256(&stalled);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for req in write_requests(&upload_name(&digest), &stalled, 0, 100_000, true)
        .into_iter()
        .take(2)
    {
        tx.send(req).await.unwrap();
    }
    let mut bs = ByteStreamClient::new(channel);
    let upload = tokio::spawn(async move {
        bs.write(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    // The client never sends the rest, nor closes its stream.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stopping = server.begin_stop();
    // Bounded wait: without a grace period the server would wait for this upload forever.
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(60), stopping).await;
    stopped
        .expect("the server stops after its grace period")
        .unwrap()
        .unwrap();
    let status = upload.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    drop(tx);

    // Each open cache writes in subdirectories of its own directory under tmp/.
    assert!(dir.path().join("tmp").is_dir());
    let tmp = kiln_cache::temp_file_count(dir.path());
    assert_eq!(tmp, 0, "temporary upload files left behind");
    let server = start(cfg).await;
    let mut cas = ContentAddressableStorageClient::new(server.channel().await);
    assert_eq!(
        find_missing(&mut cas, vec![digest.clone()]).await,
        vec![digest]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_hold_no_more_than_their_slots_and_are_cut_off_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.read_limits = ReadLimits {
        max_streamed: 2,
        stall_limit: std::time::Duration::from_secs(1),
    };
    let server = start(config).await;
    let (_, mut bs, _) = server.clients().await;
    let size = 8 << 20;
    let data = bytes(51, size);
    put(&mut bs, &data).await;

    // Five reads, each on its own connection with a small window, of which nothing is taken.
    // (Own connections: on a shared one, the data of the others would hold the connection's
    // window when one is drained at the end.)
    let stalled = 5;
    let mut opening = Vec::new();
    for _ in 0..stalled {
        let channel = Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .unwrap();
        let mut client = ByteStreamClient::new(channel);
        let resource_name = blob_name(&sha256(&data));
        opening.push(tokio::spawn(async move {
            client
                .read(bs::ReadRequest {
                    resource_name,
                    ..Default::default()
                })
                .await
        }));
    }

    // At most two of them hold a reading thread at any time; the others wait without one.
    // Meanwhile another client's upload and reads go through. Bounded waits, no timing asserts.
    let mut metrics = String::new();
    for round in 0..400 {
        metrics = server.http_get("/metrics").await.1;
        let streaming = metric(&metrics, "kiln_cache_streaming_reads");
        assert!(streaming <= 2, "{streaming} streaming reads:\n{metrics}");
        if round == 2 {
            let other = bytes(52, 3 << 20);
            put(&mut bs, &other).await;
            let name = blob_name(&sha256(&other));
            assert!(read(&mut bs, &name, 0, 0).await.unwrap() == other);
        }
        if metric(&metrics, "kiln_cache_stalled_reads_total") == stalled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&metrics, "kiln_cache_stalled_reads_total"),
        stalled,
        "every stalled read is abandoned while its client stays connected:\n{metrics}"
    );
    assert_eq!(metric(&metrics, "kiln_cache_streaming_reads"), 0);

    // What the stalled client finally takes ends in DEADLINE_EXCEEDED, never in a short blob
    // that looks complete.
    for opened in opening {
        let mut stream = opened.await.unwrap().unwrap().into_inner();
        let mut received = 0;
        let end = loop {
            match stream.message().await {
                Ok(Some(piece)) => received += piece.data.len(),
                Ok(None) => break None,
                Err(status) => break Some(status.code()),
            }
        };
        assert_eq!(end, Some(Code::DeadlineExceeded), "after {received} bytes");
        assert!(received < size);
    }
    server.stop().await;
}

/// The value of a labelled sample such as `name{method="Write"} 3`.
fn labelled_metric(text: &str, name: &str, labels: &str) -> Option<u64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str())?.parse::<f64>().ok())
        .map(|v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_bytes_count_exactly_the_blob_bytes_stored_and_not_rejected_uploads() {
    const RECEIVED: &str = "kiln_cache_received_bytes_total";
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let (mut cas, mut bs, _) = server.clients().await;
    let received = || async { metric(&server.http_get("/metrics").await.1, RECEIVED) };
    let (_, text) = server.http_get("/metrics").await;
    assert!(
        text.lines().any(|l| l.starts_with(&format!("{RECEIVED} "))),
        "{RECEIVED} missing from:\n{text}"
    );
    assert_eq!(metric(&text, RECEIVED), 0);

    // A ByteStream Write in several chunks counts the blob's size once.
    let streamed = bytes(901, 70_001);
    write(
        &mut bs,
        &upload_name(&sha256(&streamed)),
        &streamed,
        16 << 10,
    )
    .await
    .unwrap();
    assert_eq!(received().await, 70_001);

    // A BatchUpdateBlobs counts each stored entry's bytes; a wrong-digest entry in the same
    // batch is refused and counts nothing.
    let (one, two) = (bytes(902, 1_000), bytes(903, 2_345));
    let wrong = bytes(904, 777);
    let mut wrong_digest = sha256(&bytes(905, 777));
    wrong_digest.size_bytes = wrong.len() as i64;
    let entry = |digest: re::Digest, data: &[u8]| re::batch_update_blobs_request::Request {
        digest: Some(digest),
        data: data.to_vec(),
        compressor: 0,
    };
    let resp = cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![
                entry(sha256(&one), &one),
                entry(wrong_digest.clone(), &wrong),
                entry(sha256(&two), &two),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<i32> = resp
        .responses
        .iter()
        .map(|r| r.status.as_ref().unwrap().code)
        .collect();
    assert_eq!(codes, vec![0, Code::InvalidArgument as i32, 0]);
    assert_eq!(received().await, 70_001 + 1_000 + 2_345);

    // A ByteStream upload whose bytes do not match its digest stores and counts nothing.
    let status = write(&mut bs, &upload_name(&wrong_digest), &wrong, 256)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let (_, text) = server.http_get("/metrics").await;
    assert_eq!(metric(&text, RECEIVED), 70_001 + 1_000 + 2_345);
    assert_eq!(metric(&text, "kiln_cache_digest_mismatches_total"), 2);
    assert_eq!(
        find_missing(&mut cas, vec![wrong_digest.clone()]).await,
        vec![wrong_digest]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_duration_histogram_counts_each_call_under_its_method() {
    const HISTOGRAM: &str = "kiln_cache_request_duration_seconds";
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let (mut cas, _, mut ac) = server.clients().await;
    for i in 0..3 {
        find_missing(&mut cas, vec![sha256(&bytes(910 + i, 10))]).await;
    }
    for i in 0..5 {
        // Misses are requests too.
        let status = ac
            .get_action_result(re::GetActionResultRequest {
                action_digest: Some(sha256(&bytes(920 + i, 10))),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    let (_, text) = server.http_get("/metrics").await;
    let count = |method: &str| {
        labelled_metric(
            &text,
            &format!("{HISTOGRAM}_count"),
            &format!("method=\"{method}\""),
        )
    };
    assert_eq!(count("FindMissingBlobs"), Some(3), "{text}");
    assert_eq!(count("GetActionResult"), Some(5), "{text}");
    // A method never called has no series; the buckets are cumulative up to `+Inf` = count.
    assert_eq!(count("BatchUpdateBlobs"), None, "{text}");
    assert_eq!(
        labelled_metric(
            &text,
            &format!("{HISTOGRAM}_bucket"),
            "le=\"+Inf\",method=\"FindMissingBlobs\""
        )
        .or_else(|| labelled_metric(
            &text,
            &format!("{HISTOGRAM}_bucket"),
            "method=\"FindMissingBlobs\",le=\"+Inf\""
        )),
        Some(3),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_unclean_stop_blobs_missing_from_the_index_are_adopted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let (_, mut bs, _) = server.clients().await;
    put(&mut bs, &bytes(71, 3000)).await;
    server.stop().await;
    let mark = dir.path().join("serving");
    assert!(!mark.exists(), "a clean stop removes the mark");

    // What a SIGKILL leaves behind: the mark, and a blob whose file was renamed into place but
    // whose access record never reached the index.
    let lost = bytes(72, 5000);
    let digest = sha256(&lost);
    let path = dir
        .path()
        .join("cas/sha256")
        .join(&digest.hash[..2])
        .join(&digest.hash);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &lost).unwrap();
    std::fs::write(&mark, "4242").unwrap();

    let server = start(config(dir.path())).await;
    // The background reconcile counts it (bounded wait, not a timing assertion).
    let mut size = 0;
    for _ in 0..200 {
        size = metric(
            &server.http_get("/metrics").await.1,
            "kiln_cache_size_bytes",
        );
        if size == 8000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(size, 8000, "both blobs count against the cap");
    assert!(mark.exists(), "marked while serving");
    server.stop().await;
    assert!(!mark.exists());
}
