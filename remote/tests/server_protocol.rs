//! `kiln serve` over real gRPC: capabilities, CAS, ByteStream (offsets, resource names, zstd,
//! resumable writes), the action cache's completeness check, and malformed requests answered
//! with the right status codes while the server keeps serving.

mod common;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use common::*;
use prost::Message;
use tonic::Code;

fn batch_update(digest: re::Digest, data: Vec<u8>) -> re::batch_update_blobs_request::Request {
    re::batch_update_blobs_request::Request {
        digest: Some(digest),
        data,
        compressor: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_offer_sha256_and_blake3() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let mut caps = CapabilitiesClient::new(server.channel().await);
    let got = caps
        .get_capabilities(re::GetCapabilitiesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let cache = got.cache_capabilities.unwrap();
    assert_eq!(cache.digest_functions, vec![1, 9]);
    assert!(
        cache
            .action_cache_update_capabilities
            .unwrap()
            .update_enabled
    );
    assert_eq!(cache.max_batch_total_size_bytes, 4 << 20);
    assert_eq!(cache.supported_compressors, vec![1]);
    let low = got.low_api_version.unwrap();
    let high = got.high_api_version.unwrap();
    assert_eq!((low.major, low.minor, high.major, high.minor), (2, 0, 2, 3));
    assert!(got.execution_capabilities.is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_round_trip_through_batches_and_bytestream() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let channel = server.channel().await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut bs = ByteStreamClient::new(channel);

    // Batches, SHA-256 implied by the unset digest function.
    let small = bytes(1, 4096);
    let d_small = sha256(&small);
    assert_eq!(
        find_missing(&mut cas, vec![d_small.clone()]).await,
        vec![d_small.clone()]
    );
    let resp = cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![batch_update(d_small.clone(), small.clone())],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.responses[0].status.as_ref().unwrap().code, 0);
    assert!(find_missing(&mut cas, vec![d_small.clone()])
        .await
        .is_empty());
    let batch = cas
        .batch_read_blobs(re::BatchReadBlobsRequest {
            digests: vec![d_small.clone(), sha256(b"absent")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.responses[0].data, small);
    assert_eq!(
        batch.responses[1].status.as_ref().unwrap().code,
        Code::NotFound as i32
    );

    // ByteStream, SHA-256 without the function segment, in odd chunks; reads with offsets.
    let big = bytes(2, 3 << 20 | 17);
    let d_big = sha256(&big);
    let committed = write(&mut bs, &upload_name(&d_big), &big, 100_003)
        .await
        .unwrap();
    assert_eq!(committed, big.len() as i64);
    assert_eq!(read(&mut bs, &blob_name(&d_big), 0, 0).await.unwrap(), big);
    assert_eq!(
        read(
            &mut bs,
            &format!("inst/blobs/sha256/{}/{}", d_big.hash, d_big.size_bytes),
            1000,
            10
        )
        .await
        .unwrap(),
        big[1000..1010]
    );
    // Windows across the server's 1 MiB pieces, and up to the last byte.
    for (offset, limit) in [
        ((1 << 20) - 5, 10),
        ((1 << 20) - 5, (2 << 20) + 9),
        (3 << 20, 0),
    ] {
        let end = if limit == 0 {
            big.len()
        } else {
            offset + limit
        };
        assert_eq!(
            read(&mut bs, &blob_name(&d_big), offset as i64, limit as i64)
                .await
                .unwrap(),
            big[offset..end]
        );
    }
    let at_end = read(&mut bs, &blob_name(&d_big), big.len() as i64, 0)
        .await
        .unwrap();
    assert!(at_end.is_empty());
    let past = read(&mut bs, &blob_name(&d_big), big.len() as i64 + 1, 0).await;
    assert_eq!(past.unwrap_err().code(), Code::OutOfRange);
    // Writing what exists ends at once with the full size.
    let again = write(&mut bs, &upload_name(&d_big), &big[..10], 10)
        .await
        .unwrap();
    assert_eq!(again, big.len() as i64);

    // BLAKE3 needs its segment in names and its enum value in messages.
    let b = bytes(3, 70_000);
    let d_b = blake3(&b);
    let name = format!(
        "main/uploads/x/blobs/blake3/{}/{}",
        d_b.hash, d_b.size_bytes
    );
    write(&mut bs, &name, &b, 65_536).await.unwrap();
    let name = format!("blobs/blake3/{}/{}", d_b.hash, d_b.size_bytes);
    assert_eq!(read(&mut bs, &name, 0, 0).await.unwrap(), b);
    let missing = cas
        .find_missing_blobs(re::FindMissingBlobsRequest {
            blob_digests: vec![d_b.clone()],
            digest_function: 9,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(missing.missing_blob_digests.is_empty());
    // The same hash as SHA-256 is another blob.
    assert_eq!(find_missing(&mut cas, vec![d_b.clone()]).await, vec![d_b]);

    // zstd both ways.
    let text = b"compressible ".repeat(10_000);
    let d_t = sha256(&text);
    let packed = zstd::bulk::compress(&text, 3).unwrap();
    let name = format!(
        "uploads/z/compressed-blobs/zstd/{}/{}",
        d_t.hash, d_t.size_bytes
    );
    assert_eq!(write(&mut bs, &name, &packed, 1000).await.unwrap(), -1);
    let name = format!("compressed-blobs/zstd/{}/{}", d_t.hash, d_t.size_bytes);
    let got = read(&mut bs, &name, 0, 0).await.unwrap();
    assert_eq!(zstd::bulk::decompress(&got, text.len()).unwrap(), text);
    assert_eq!(read(&mut bs, &blob_name(&d_t), 0, 0).await.unwrap(), text);
    assert_eq!(
        read(&mut bs, &name, 0, 5).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // The empty blob always exists.
    let empty = sha256(b"");
    assert!(find_missing(&mut cas, vec![empty.clone()]).await.is_empty());
    assert!(read(&mut bs, &blob_name(&empty), 0, 0)
        .await
        .unwrap()
        .is_empty());
    server.stop().await;
}

/// Flips one byte of a stored SHA-256 blob's file in place (same size, new content).
fn corrupt_on_disk(root: &std::path::Path, digest: &re::Digest, at: usize) {
    use std::os::unix::fs::PermissionsExt;
    let path = root
        .join("cas/sha256")
        .join(&digest.hash[..2])
        .join(&digest.hash);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut data = std::fs::read(&path).unwrap();
    data[at] ^= 0xff;
    std::fs::write(&path, data).unwrap();
}

/// Reads a blob, returning what arrived before the stream ended and how it ended.
async fn read_partial(
    client: &mut ByteStreamClient<tonic::transport::Channel>,
    name: &str,
    offset: i64,
    limit: i64,
) -> (Vec<u8>, Result<(), tonic::Status>) {
    let mut out = Vec::new();
    let mut stream = match client
        .read(bs::ReadRequest {
            resource_name: name.to_string(),
            read_offset: offset,
            read_limit: limit,
        })
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return (out, Err(status)),
    };
    loop {
        match stream.message().await {
            Ok(Some(msg)) => out.extend_from_slice(&msg.data),
            Ok(None) => return (out, Ok(())),
            Err(status) => return (out, Err(status)),
        }
    }
}

/// A `compressed-blobs/zstd` read of a large blob is compressed piece by piece as it streams
/// (memory stays bounded), honours offsets into the compressed stream, and still withholds the
/// end of a corrupt blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blobs_stream_zstd_compressed_with_offsets_and_the_digest_check() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let mut bs = ByteStreamClient::new(server.channel().await);
    // Half random, half repetitive: several compressed pieces, and a real size reduction.
    let mut data = bytes(60, 3 << 20);
    data.extend(b"kiln ".repeat(600_000));
    let d = sha256(&data);
    write(&mut bs, &upload_name(&d), &data, 1 << 20)
        .await
        .unwrap();
    let name = format!("compressed-blobs/zstd/{}/{}", d.hash, d.size_bytes);
    let packed = read(&mut bs, &name, 0, 0).await.unwrap();
    assert!(packed.len() < data.len() && packed.len() > 2 << 20);
    assert_eq!(zstd::stream::decode_all(&packed[..]).unwrap(), data);
    for offset in [1usize, (1 << 20) + 5, packed.len() - 1] {
        let tail = read(&mut bs, &name, offset as i64, 0).await.unwrap();
        assert_eq!(tail, packed[offset..], "from {offset}");
    }
    assert!(read(&mut bs, &name, packed.len() as i64, 0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        read(&mut bs, &name, packed.len() as i64 + 1, 0)
            .await
            .unwrap_err()
            .code(),
        Code::OutOfRange
    );

    corrupt_on_disk(&server.dir, &d, data.len() - 1);
    let (got, end) = read_partial(&mut bs, &name, 0, 0).await;
    assert_eq!(end.unwrap_err().code(), Code::DataLoss);
    assert!(got.len() < packed.len(), "a corrupt blob arrived whole");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_is_never_served_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let channel = server.channel().await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut bs = ByteStreamClient::new(channel);

    // Large blobs stream while they are hashed: corrupt at the start, in the middle and in the
    // last byte (the piece a streaming server must withhold until the hash is checked).
    let big = bytes(40, 3 << 20 | 17);
    for (seed, at, offset, limit) in [
        (41, 0, 0, 0),
        (42, 3 << 20, 0, 0),
        (43, (3 << 20 | 17) - 1, 0, 0),
        // A window before the damage still fails: the whole blob is checked.
        (44, (3 << 20 | 17) - 1, 10, 100),
        (45, 5, (2 << 20) + 3, 0),
    ] {
        let mut data = big.clone();
        data[0] = seed as u8;
        let d = sha256(&data);
        write(&mut bs, &upload_name(&d), &data, 1 << 20)
            .await
            .unwrap();
        assert_eq!(
            read(&mut bs, &blob_name(&d), 0, 0).await.unwrap(),
            data,
            "intact before the damage"
        );
        corrupt_on_disk(&server.dir, &d, at);
        let (got, end) = read_partial(&mut bs, &blob_name(&d), offset, limit).await;
        let status = end.expect_err("a corrupt blob must not be served complete");
        assert_eq!(status.code(), Code::DataLoss, "{status:?}");
        let wanted = match limit {
            0 => data.len() - offset as usize,
            n => n as usize,
        };
        assert!(got.len() < wanted, "all {wanted} bytes arrived");
        // It was removed: now a plain miss that a client can re-upload.
        assert_eq!(
            find_missing(&mut cas, vec![d.clone()]).await,
            vec![d.clone()]
        );
        let (_, again) = read_partial(&mut bs, &blob_name(&d), 0, 0).await;
        assert_eq!(again.unwrap_err().code(), Code::NotFound);
        write(&mut bs, &upload_name(&d), &data, 1 << 20)
            .await
            .unwrap();
        assert_eq!(read(&mut bs, &blob_name(&d), 0, 0).await.unwrap(), data);
    }

    // Small blobs are checked before anything is sent: a miss, through both APIs.
    let small = bytes(46, 4096);
    let d = sha256(&small);
    write(&mut bs, &upload_name(&d), &small, 4096)
        .await
        .unwrap();
    corrupt_on_disk(&server.dir, &d, 100);
    let (got, end) = read_partial(&mut bs, &blob_name(&d), 0, 0).await;
    assert_eq!(end.unwrap_err().code(), Code::NotFound);
    assert!(got.is_empty());
    let small2 = bytes(47, 4096);
    let d2 = sha256(&small2);
    write(&mut bs, &upload_name(&d2), &small2, 4096)
        .await
        .unwrap();
    corrupt_on_disk(&server.dir, &d2, 4095);
    let (code, data) = batch_read_one(&mut cas, &d2).await;
    assert_eq!(code, Code::NotFound as i32);
    assert!(data.is_empty());
    assert_eq!(
        find_missing(&mut cas, vec![d.clone(), d2.clone()]).await,
        vec![d, d2]
    );
    server.stop().await;
}

/// The `kiln_cache_reads_vouched` counter of the server's metrics.
async fn reads_vouched(server: &TestServer) -> u64 {
    let (_, text) = server.http_get("/metrics").await;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("kiln_cache_reads_vouched_total ")?
                .parse::<u64>()
                .ok()
        })
        .expect("the reads_vouched counter is exported")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_large_blob_is_served_unhashed_until_its_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let mut bs = ByteStreamClient::new(server.channel().await);
    let data = bytes(48, 3 << 20);
    let d = sha256(&data);
    write(&mut bs, &upload_name(&d), &data, 1 << 20)
        .await
        .unwrap();
    // A hash soon after the file's last change vouches for nothing (the racy-clean rule).
    assert_eq!(read(&mut bs, &blob_name(&d), 0, 0).await.unwrap(), data);
    assert_eq!(reads_vouched(&server).await, 0);
    tokio::time::sleep(kiln_cache::RACY_WINDOW + std::time::Duration::from_millis(200)).await;
    // The first of these hashes well after the last change (if the read above did not), so
    // the second is served on that verification.
    assert_eq!(read(&mut bs, &blob_name(&d), 0, 0).await.unwrap(), data);
    assert_eq!(
        read(&mut bs, &blob_name(&d), 7, 100).await.unwrap(),
        data[7..107]
    );
    let vouched = reads_vouched(&server).await;
    assert!(vouched >= 1);

    // Changed on disk: its metadata changed with it, so it is hashed again and never served.
    corrupt_on_disk(&server.dir, &d, 1 << 20);
    let (got, end) = read_partial(&mut bs, &blob_name(&d), 0, 0).await;
    assert_eq!(end.unwrap_err().code(), Code::DataLoss);
    assert!(got.len() < data.len());
    assert_eq!(reads_vouched(&server).await, vouched);
    let (_, again) = read_partial(&mut bs, &blob_name(&d), 0, 0).await;
    assert_eq!(again.unwrap_err().code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_uploads_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let channel = server.channel().await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut bs = ByteStreamClient::new(channel);
    let claimed = sha256(b"the real content");

    let err = write(&mut bs, &upload_name(&claimed), b"something else!!", 4).await;
    assert_eq!(err.unwrap_err().code(), Code::InvalidArgument);
    let err = write(
        &mut bs,
        &upload_name(&claimed),
        b"too long for the digest size",
        4,
    )
    .await;
    assert_eq!(err.unwrap_err().code(), Code::InvalidArgument);
    let resp = cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![batch_update(claimed.clone(), b"something else!!".to_vec())],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.responses[0].status.as_ref().unwrap().code,
        Code::InvalidArgument as i32
    );
    assert_eq!(
        find_missing(&mut cas, vec![claimed.clone()]).await,
        vec![claimed.clone()]
    );
    let read_back = read(&mut bs, &blob_name(&claimed), 0, 0).await;
    assert_eq!(read_back.unwrap_err().code(), Code::NotFound);
    let (_, metrics) = server.http_get("/metrics").await;
    assert!(
        metrics.contains("kiln_cache_digest_mismatches_total 3"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_status_codes_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let (mut cas, mut bs, mut ac) = server.clients().await;
    let good = sha256(b"x");
    let code = |r: Result<Vec<u8>, tonic::Status>| r.unwrap_err().code();

    for name in [
        "".to_string(),
        "blobs".to_string(),
        format!("blobs/{}", good.hash),
        format!("blobs/{}/abc", good.hash),
        format!("blobs/{}/-5", good.hash),
        format!("blobs/{}/1", good.hash.to_uppercase()),
        "blobs/0123/1".to_string(),
        format!("compressed-blobs/brotli/{}/1", good.hash),
        format!("uploads/u/blobs/{}/1", good.hash),
    ] {
        assert_eq!(
            code(read(&mut bs, &name, 0, 0).await),
            Code::InvalidArgument,
            "{name}"
        );
    }
    assert_eq!(
        code(read(&mut bs, &blob_name(&good), -1, 0).await),
        Code::OutOfRange
    );
    assert_eq!(
        code(read(&mut bs, &blob_name(&good), 0, -1).await),
        Code::InvalidArgument
    );
    // Read requests are decoded by hand (server/read_route.rs): one far beyond any resource
    // name is refused before it is read whole.
    let long_name = format!("{}/{}", "x".repeat(100 << 10), blob_name(&good));
    assert_eq!(
        code(read(&mut bs, &long_name, 0, 0).await),
        Code::ResourceExhausted
    );
    // Upload names must carry `uploads/{uuid}/`.
    let err = write(&mut bs, &blob_name(&good), b"x", 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // A write that does not start at 0 and resumes nothing.
    let reqs = write_requests(&upload_name(&good), b"x", 0, 1, true)
        .into_iter()
        .map(|mut r| {
            r.write_offset = 7;
            r
        });
    let err = bs.write(tokio_stream::iter(reqs)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let bad_digest = re::Digest {
        hash: "not hex".into(),
        size_bytes: 1,
    };
    let err = cas
        .find_missing_blobs(re::FindMissingBlobsRequest {
            blob_digests: vec![bad_digest.clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = cas
        .find_missing_blobs(re::FindMissingBlobsRequest {
            blob_digests: vec![good.clone()],
            digest_function: 2, // SHA1: not offered
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = ac
        .get_action_result(re::GetActionResultRequest {
            action_digest: Some(bad_digest),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = ac
        .update_action_result(re::UpdateActionResultRequest {
            action_digest: Some(good.clone()),
            action_result: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A batch over the advertised total is refused whole; reads too.
    let half = bytes(9, 2 << 20 | 1);
    let reqs = vec![
        batch_update(sha256(&half), half.clone()),
        batch_update(sha256(&half[1..]), half[1..].to_vec()),
    ];
    let err = cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: reqs,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = cas
        .batch_read_blobs(re::BatchReadBlobsRequest {
            digests: vec![re::Digest {
                hash: good.hash.clone(),
                size_bytes: 5 << 20,
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Sizes that would wrap a 64-bit sum do not slip under the limit.
    let err = cas
        .batch_read_blobs(re::BatchReadBlobsRequest {
            digests: [i64::MAX, i64::MAX, 3]
                .into_iter()
                .enumerate()
                .map(|(i, size_bytes)| re::Digest {
                    hash: sha256(&[i as u8]).hash,
                    size_bytes,
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // Tiny blobs within the byte total, but too many for one response message.
    let many: Vec<re::Digest> = (0..70_000u32).map(|i| sha256(&i.to_le_bytes())).collect();
    let err = cas
        .batch_read_blobs(re::BatchReadBlobsRequest {
            digests: many,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("ask for fewer"), "{err:?}");
    // A GetTree root larger than any Directory message is refused before it is read.
    let large = bytes(11, 9 << 20);
    let large_digest = sha256(&large);
    write(&mut bs, &upload_name(&large_digest), &large, 1 << 20)
        .await
        .unwrap();
    let err = cas
        .get_tree(re::GetTreeRequest {
            root_digest: Some(large_digest),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("larger than the server decodes"),
        "{err:?}"
    );
    // A zstd entry counts as the size its digest announces: a few bytes claiming a terabyte
    // are refused before anything is decompressed (or allocated for it).
    let tiny = zstd::bulk::compress(b"x", 3).unwrap();
    let err = cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![re::batch_update_blobs_request::Request {
                digest: Some(re::Digest {
                    hash: good.hash.clone(),
                    size_bytes: 1 << 40,
                }),
                data: tiny,
                compressor: re::compressor::Value::Zstd as i32,
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // A message beyond the transport limit is refused by gRPC itself.
    let huge = bytes(10, 9 << 20);
    let err = cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![batch_update(sha256(&huge), huge)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{err:?}"
    );
    // Unimplemented parts say so.
    let err = cas
        .split_blob(re::SplitBlobRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    // Still serving.
    write(&mut bs, &upload_name(&good), b"x", 1).await.unwrap();
    assert_eq!(read(&mut bs, &blob_name(&good), 0, 0).await.unwrap(), b"x");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_leaves_no_blob_and_can_be_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let data = bytes(4, 1 << 20);
    let digest = sha256(&data);
    let name = upload_name(&digest);
    {
        // A client that dies mid-upload: its connection goes away with half the bytes sent.
        let channel = server.channel().await;
        let mut bs = ByteStreamClient::new(channel);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let call = tokio::spawn(async move {
            bs.write(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        for req in write_requests(&name, &data[..512 << 10], 0, 64 << 10, false) {
            tx.send(req).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        call.abort();
        drop(tx);
    }
    let channel = server.channel().await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut bs = ByteStreamClient::new(channel);
    assert_eq!(
        find_missing(&mut cas, vec![digest.clone()]).await,
        vec![digest.clone()]
    );
    let err = read(&mut bs, &blob_name(&digest), 0, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Nothing under the store's directories but the index: the partial bytes are a temp file.
    let cas_files = walk(&dir.path().join("cas"));
    assert!(cas_files.is_empty(), "{cas_files:?}");

    // Resume from what the server committed.
    let mut status = bs::QueryWriteStatusResponse::default();
    for _ in 0..100 {
        status = bs
            .query_write_status(bs::QueryWriteStatusRequest {
                resource_name: name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if status.committed_size > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!status.complete);
    let at = status.committed_size as usize;
    assert!(at > 0 && at <= 512 << 10, "{at}");
    let rest = write_requests(&name, &data, at, 100_000, true);
    let committed = bs
        .write(tokio_stream::iter(rest))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(committed.committed_size, data.len() as i64);
    assert_eq!(
        read(&mut bs, &blob_name(&digest), 0, 0).await.unwrap(),
        data
    );
    server.stop().await;
    // At shutdown no temp file is left either.
    assert!(walk(&dir.path().join("tmp")).is_empty());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// A result with an output file, stdout, and an output directory whose Tree holds a file.
async fn store_result(
    cas: &mut ContentAddressableStorageClient<tonic::transport::Channel>,
    ac: &mut ActionCacheClient<tonic::transport::Channel>,
) -> (re::Digest, re::Digest) {
    let out = b"output file".to_vec();
    let stdout = b"hello from stdout".to_vec();
    let inner = b"file inside a tree".to_vec();
    let tree = re::Tree {
        root: Some(re::Directory {
            files: vec![re::FileNode {
                name: "f".into(),
                digest: Some(sha256(&inner)),
                ..Default::default()
            }],
            ..Default::default()
        }),
        children: vec![],
    }
    .encode_to_vec();
    let blobs = [out.clone(), stdout.clone(), inner.clone(), tree.clone()];
    cas.batch_update_blobs(re::BatchUpdateBlobsRequest {
        requests: blobs
            .iter()
            .map(|b| batch_update(sha256(b), b.clone()))
            .collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let result = re::ActionResult {
        output_files: vec![re::OutputFile {
            path: "out.txt".into(),
            digest: Some(sha256(&out)),
            ..Default::default()
        }],
        output_directories: vec![re::OutputDirectory {
            path: "dir".into(),
            tree_digest: Some(sha256(&tree)),
            ..Default::default()
        }],
        stdout_digest: Some(sha256(&stdout)),
        exit_code: 0,
        ..Default::default()
    };
    let action = sha256(b"an action");
    let stored = ac
        .update_action_result(re::UpdateActionResultRequest {
            action_digest: Some(action.clone()),
            action_result: Some(result.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored, result);
    (action, sha256(&inner))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_cache_hits_only_when_every_blob_is_present() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let channel = server.channel().await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut ac = ActionCacheClient::new(channel);
    let get = |action: &re::Digest, inline| re::GetActionResultRequest {
        action_digest: Some(action.clone()),
        inline_stdout: inline,
        ..Default::default()
    };
    let miss = ac
        .get_action_result(get(&sha256(b"never ran"), false))
        .await;
    assert_eq!(miss.unwrap_err().code(), Code::NotFound);

    let (action, inner) = store_result(&mut cas, &mut ac).await;
    let hit = ac
        .get_action_result(get(&action, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hit.stdout_raw, b"hello from stdout");
    let hit = ac
        .get_action_result(get(&action, false))
        .await
        .unwrap()
        .into_inner();
    assert!(hit.stdout_raw.is_empty());

    // The file inside the output directory's Tree vanishes from disk: the entry is a miss, and
    // the stale index row is repaired on the way.
    let path = dir
        .path()
        .join("cas/sha256")
        .join(&inner.hash[..2])
        .join(&inner.hash);
    std::fs::remove_file(&path).unwrap();
    let miss = ac.get_action_result(get(&action, false)).await;
    assert_eq!(miss.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        find_missing(&mut cas, vec![inner.clone()]).await,
        vec![inner]
    );
    let (_, metrics) = server.http_get("/metrics").await;
    assert!(
        metrics.contains("kiln_cache_hits_total{store=\"ac\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kiln_cache_misses_total{store=\"ac\"} 2"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_tree_pages_through_a_directory_tree() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let mut cas = ContentAddressableStorageClient::new(server.channel().await);
    let leaf = re::Directory {
        files: vec![re::FileNode {
            name: "a".into(),
            digest: Some(sha256(b"a")),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mid = re::Directory {
        directories: vec![re::DirectoryNode {
            name: "leaf".into(),
            digest: Some(sha256(&leaf.encode_to_vec())),
        }],
        ..Default::default()
    };
    let root = re::Directory {
        directories: vec![
            re::DirectoryNode {
                name: "m".into(),
                digest: Some(sha256(&mid.encode_to_vec())),
            },
            re::DirectoryNode {
                name: "gone".into(),
                digest: Some(sha256(b"never uploaded")),
            },
        ],
        ..Default::default()
    };
    let blobs = [&leaf, &mid, &root].map(|d| d.encode_to_vec());
    cas.batch_update_blobs(re::BatchUpdateBlobsRequest {
        requests: blobs
            .iter()
            .map(|b| batch_update(sha256(b), b.clone()))
            .collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut pages = cas
        .get_tree(re::GetTreeRequest {
            root_digest: Some(sha256(&blobs[2])),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    let mut tokens = Vec::new();
    while let Some(page) = pages.message().await.unwrap() {
        tokens.push(page.next_page_token);
        got.extend(page.directories);
    }
    assert_eq!(got, vec![root, mid, leaf]);
    assert_eq!(tokens, vec!["2".to_string(), String::new()]);
    let err = cas
        .get_tree(re::GetTreeRequest {
            root_digest: Some(sha256(b"no such root")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

/// BatchReadBlobs of one digest: its status code and data.
async fn batch_read_one(
    cas: &mut ContentAddressableStorageClient<tonic::transport::Channel>,
    digest: &re::Digest,
) -> (i32, Vec<u8>) {
    let mut batch = cas
        .batch_read_blobs(re::BatchReadBlobsRequest {
            digests: vec![digest.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let response = batch.responses.remove(0);
    (response.status.unwrap_or_default().code, response.data)
}

/// `digest` with another size: files are named by hash only, so this names a stored file.
fn resized(digest: &re::Digest, size_bytes: i64) -> re::Digest {
    re::Digest {
        hash: digest.hash.clone(),
        size_bytes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_hash_with_a_wrong_or_huge_size_is_a_miss_and_the_blob_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let (mut cas, mut bs, mut ac) = server.clients().await;
    let data = bytes(61, 1000);
    let d = sha256(&data);
    write(&mut bs, &upload_name(&d), &data, 1000).await.unwrap();
    let large = bytes(62, (2 << 20) + 5);
    let dl = sha256(&large);
    write(&mut bs, &upload_name(&dl), &large, 1 << 20)
        .await
        .unwrap();
    let huge = 1i64 << 50;

    for wrong in [resized(&d, 999), resized(&d, 1001), resized(&d, huge)] {
        assert_eq!(
            find_missing(&mut cas, vec![wrong.clone()]).await,
            vec![wrong.clone()]
        );
        let err = read(&mut bs, &blob_name(&wrong), 0, 0).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{wrong:?}: {err:?}");
        // A tree root or an action result's tree with that size: the server must neither
        // allocate the size asked for nor crash.
        let tree = cas
            .get_tree(re::GetTreeRequest {
                root_digest: Some(wrong.clone()),
                ..Default::default()
            })
            .await;
        match tree {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                while let Ok(Some(_)) = stream.message().await {}
            }
            Err(status) => {
                // A size no Directory message can have is refused unread.
                let expected = if wrong.size_bytes == huge {
                    Code::InvalidArgument
                } else {
                    Code::NotFound
                };
                assert_eq!(status.code(), expected, "{status:?}")
            }
        }
    }
    for wrong in [resized(&d, 5), resized(&d, 1001), resized(&dl, 1000)] {
        let (code, _) = batch_read_one(&mut cas, &wrong).await;
        assert_eq!(code, Code::NotFound as i32, "{wrong:?}");
    }
    let action = sha256(b"action with an inflated tree size");
    ac.update_action_result(re::UpdateActionResultRequest {
        action_digest: Some(action.clone()),
        action_result: Some(re::ActionResult {
            output_directories: vec![re::OutputDirectory {
                path: "out".into(),
                tree_digest: Some(resized(&d, huge)),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let got = ac
        .get_action_result(re::GetActionResultRequest {
            action_digest: Some(action),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(got.code(), Code::NotFound);
    // A wrong-size upload of other bytes under the same hash is refused and changes nothing.
    let err = write(&mut bs, &upload_name(&resized(&d, 999)), &data[..999], 999)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Only the real empty blob is present at size 0.
    let bogus_empty = resized(&d, 0);
    assert_eq!(
        find_missing(&mut cas, vec![bogus_empty.clone()]).await,
        vec![bogus_empty]
    );

    // Both blobs are still present, intact and served.
    assert!(find_missing(&mut cas, vec![d.clone(), dl.clone()])
        .await
        .is_empty());
    assert!(read(&mut bs, &blob_name(&d), 0, 0).await.unwrap() == data);
    assert!(read(&mut bs, &blob_name(&dl), 0, 0).await.unwrap() == large);
    server.stop().await;
}
