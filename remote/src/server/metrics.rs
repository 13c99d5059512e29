//! Prometheus metrics of the server: hits, misses, bytes in and out, evictions, request
//! latencies; rendered in the text exposition format by the HTTP endpoint.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label of per-store counters: `ac` or `cas`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabel {
    /// `ac` or `cas`.
    pub store: &'static str,
}

/// Label of per-method metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// The gRPC method, e.g. `FindMissingBlobs`.
    pub method: &'static str,
}

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    /// Lookups that found what was asked for.
    pub hits: Family<StoreLabel, Counter>,
    /// Lookups that did not.
    pub misses: Family<StoreLabel, Counter>,
    /// Blob bytes received (uncompressed).
    pub bytes_in: Counter,
    /// Blob bytes sent (as sent on the wire).
    pub bytes_out: Counter,
    /// Entries evicted to stay under the size cap.
    pub evictions: Counter,
    /// Bytes those evictions freed.
    pub evicted_bytes: Counter,
    /// Uploads refused because their bytes did not match their digest.
    pub digest_mismatches: Counter,
    /// Streamed reads served without re-hashing, on a recent verification of the same file.
    pub reads_vouched: Counter,
    /// Bytes in the cache, as of the last eviction check.
    pub size_bytes: Gauge,
    /// Large reads whose reading thread is still running (a cancelled read ends its thread).
    pub streaming_reads: Gauge,
    /// Large reads abandoned because the client took nothing for the stall limit.
    pub stalled_reads: Counter,
    /// Request latencies per method, seconds.
    pub latency: Family<MethodLabel, Histogram>,
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("kiln_cache");
        let hits = Family::<StoreLabel, Counter>::default();
        let misses = Family::<StoreLabel, Counter>::default();
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let evictions = Counter::default();
        let evicted_bytes = Counter::default();
        let digest_mismatches = Counter::default();
        let reads_vouched = Counter::default();
        let size_bytes = Gauge::default();
        let streaming_reads = Gauge::default();
        let stalled_reads = Counter::default();
        let latency = Family::<MethodLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 4.0, 10))
        });
        registry.register("hits", "Lookups that hit", hits.clone());
        registry.register("misses", "Lookups that missed", misses.clone());
        registry.register("received_bytes", "Blob bytes received", bytes_in.clone());
        registry.register("sent_bytes", "Blob bytes sent", bytes_out.clone());
        registry.register("evictions", "Entries evicted", evictions.clone());
        registry.register("evicted_bytes", "Bytes evicted", evicted_bytes.clone());
        registry.register(
            "digest_mismatches",
            "Uploads refused for a wrong digest",
            digest_mismatches.clone(),
        );
        registry.register(
            "reads_vouched",
            "Streamed reads served on a recent verification, without re-hashing",
            reads_vouched.clone(),
        );
        registry.register("size_bytes", "Bytes stored", size_bytes.clone());
        registry.register(
            "streaming_reads",
            "Large reads being read from disk and sent",
            streaming_reads.clone(),
        );
        registry.register(
            "stalled_reads",
            "Large reads abandoned on a client that took nothing for the stall limit",
            stalled_reads.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency",
            latency.clone(),
        );
        Arc::new(Metrics {
            registry,
            hits,
            misses,
            bytes_in,
            bytes_out,
            evictions,
            evicted_bytes,
            digest_mismatches,
            reads_vouched,
            size_bytes,
            streaming_reads,
            stalled_reads,
            latency,
        })
    }

    /// Counts a hit or a miss in `store`.
    pub fn lookup(&self, store: &'static str, hit: bool) {
        let family = if hit { &self.hits } else { &self.misses };
        family.get_or_create(&StoreLabel { store }).inc();
    }

    /// Starts timing a request; the latency is recorded when the guard drops.
    pub fn time(self: &Arc<Self>, method: &'static str) -> Timer {
        Timer {
            metrics: self.clone(),
            method,
            start: Instant::now(),
        }
    }

    /// Counts a large read as streaming until the guard drops.
    pub fn streaming_read(&self) -> StreamingRead {
        self.streaming_reads.inc();
        StreamingRead(self.streaming_reads.clone())
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Holds one count of [`Metrics::streaming_reads`] while it lives.
pub struct StreamingRead(Gauge);

impl Drop for StreamingRead {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Records a request's latency on drop.
pub struct Timer {
    metrics: Arc<Metrics>,
    method: &'static str,
    start: Instant,
}

impl Drop for Timer {
    fn drop(&mut self) {
        let seconds = self.start.elapsed().as_secs_f64();
        tracing::debug!(method = self.method, seconds, "request");
        self.metrics
            .latency
            .get_or_create(&MethodLabel {
                method: self.method,
            })
            .observe(seconds);
    }
}
