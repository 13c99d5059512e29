//! How blobs are grouped into `BatchUpdateBlobs` and `BatchReadBlobs` calls. A batch costs its
//! blob bytes plus [`ENTRY_OVERHEAD`] per blob, and stays within the negotiated limit: servers
//! size their gRPC message limit from `max_batch_total_size_bytes` (`kiln serve` allows twice
//! that), and thousands of tiny blobs whose bytes fit that limit would make a message several
//! times larger if only the bytes were counted.

use std::ops::Range;

/// Bytes one blob adds to a batched message besides its data, at most: the entry's tag and
/// length (6), its digest (tag and length 2, a 64-digit hex hash 66, the size 11), the data's tag
/// and length (6), the compressor (2) and, in a read response, an OK status (4): 97 bytes. The
/// rest of 128 leaves room for a short per-blob status message.
pub(crate) const ENTRY_OVERHEAD: u64 = 128;

/// Bytes of a batched message outside its entries: the instance name and the digest function,
/// with their tags and lengths.
pub(crate) fn message_overhead(instance: &str) -> u64 {
    instance.len() as u64 + 16
}

/// What one blob of `size` bytes costs in a batch.
fn cost(size: u64) -> u64 {
    size.saturating_add(ENTRY_OVERHEAD)
}

/// Whether a blob of `size` bytes goes in a batch costing at most `budget` (else by ByteStream).
pub(crate) fn fits(size: u64, budget: u64) -> bool {
    cost(size) <= budget
}

/// Splits blobs of `sizes` into consecutive batches, each costing at most `budget` (blob bytes plus
/// [`ENTRY_OVERHEAD`] apiece). A blob that does not [`fit`](fits) on its own gets a batch of its
/// own rather than none; callers send such blobs by ByteStream instead.
pub(crate) fn batches(sizes: &[u64], budget: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && used.saturating_add(cost(size)) > budget {
            out.push(start..i);
            start = i;
            used = 0;
        }
        used = used.saturating_add(cost(size));
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use bazel_remote_apis::build::bazel::remote::execution::v2::{
        batch_read_blobs_response, BatchReadBlobsResponse,
    };
    use bazel_remote_apis::google::rpc::Status as RpcStatus;
    use kiln_cache::{Digest, DigestFunction};
    use kiln_graph::action_key::to_proto;
    use prost::Message;

    use super::super::cas::update_request;
    use super::*;

    /// `n` blobs of `size` bytes each.
    fn blobs(n: usize, size: usize) -> Vec<(Digest, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let mut data = format!("{i:0size$}").into_bytes();
                data.truncate(size);
                (Digest::of_bytes(DigestFunction::Blake3, &data), data)
            })
            .collect()
    }

    /// The batches of `blobs` under `limit`, as the encoded sizes of the upload request and of
    /// the read response each would make.
    fn encoded(instance: &str, blobs: &[(Digest, Vec<u8>)], limit: u64) -> Vec<(u64, u64)> {
        let sizes: Vec<u64> = blobs.iter().map(|(d, _)| d.size).collect();
        let ranges = batches(&sizes, limit - message_overhead(instance));
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "batches are consecutive");
        }
        assert_eq!(ranges.last().map(|r| r.end), Some(blobs.len()));
        ranges
            .into_iter()
            .map(|range| {
                let batch = blobs[range].to_vec();
                let response = BatchReadBlobsResponse {
                    responses: batch
                        .iter()
                        .map(|(d, data)| batch_read_blobs_response::Response {
                            digest: Some(to_proto(d)),
                            data: data.clone(),
                            compressor: 0,
                            status: Some(RpcStatus::default()),
                        })
                        .collect(),
                };
                let request = update_request(instance, DigestFunction::Blake3, batch);
                (request.encoded_len() as u64, response.encoded_len() as u64)
            })
            .collect()
    }

    #[test]
    fn thousands_of_tiny_blobs_stay_within_the_limit_with_their_overhead() {
        let limit = 1 << 20;
        let tiny = blobs(30_000, 1);
        // Their bytes (30 kB) fit one batch; their entries do not.
        assert!(tiny.len() < limit as usize);
        let sent = encoded("ci/main", &tiny, limit);
        assert!(sent.len() > 1, "{} batches", sent.len());
        for (request, response) in sent {
            assert!(request <= limit, "request of {request} bytes");
            assert!(response <= limit, "response of {response} bytes");
        }
    }

    #[test]
    fn mixed_sizes_stay_within_the_limit() {
        let limit = 64 << 10;
        let mut mixed = blobs(500, 3);
        mixed.extend(blobs(40, 4000));
        mixed.extend(blobs(2000, 40));
        mixed.extend(blobs(3, (64 << 10) - 200));
        for (request, response) in encoded("", &mixed, limit) {
            assert!(
                request <= limit && response <= limit,
                "{request}, {response}"
            );
        }
    }

    #[test]
    fn a_blob_fits_only_with_its_overhead() {
        assert!(fits(1000 - ENTRY_OVERHEAD, 1000));
        assert!(!fits(1000 - ENTRY_OVERHEAD + 1, 1000));
        assert!(!fits(u64::MAX, 1000));
    }

    #[test]
    fn an_oversized_blob_is_alone_and_nothing_is_lost() {
        assert_eq!(batches(&[], 1000), Vec::<Range<usize>>::new());
        assert_eq!(batches(&[5000], 1000), vec![0..1]);
        assert_eq!(
            batches(&[10, 5000, 10, 10, u64::MAX, 10], 1000),
            [0..1, 1..2, 2..4, 4..5, 5..6]
        );
        // Exactly full, then one more entry.
        let full = 1000 / cost(0);
        let sizes = vec![0; full as usize + 1];
        assert_eq!(
            batches(&sizes, 1000),
            [0..full as usize, full as usize..sizes.len()]
        );
    }
}
