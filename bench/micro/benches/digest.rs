//! Hashing a file the size of a linked Go binary, as Kiln does for every output it stores.
//!
//! `of_file` is Kiln's (`kiln_cache::Digest::of_file`: 256 KiB reads, hashed on the calling
//! thread). `rayon_1mib` is what it did before: 1 MiB reads, each hashed with BLAKE3's
//! multi-threaded `update_rayon`. Criterion measures wall time on an otherwise idle machine, the
//! case most favourable to rayon; during a build the other cores are running actions.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kiln_cache::{Digest, DigestFunction};
use kiln_micro_bench::SampleFile;
use std::io::Read;

/// The previous streaming hash, for comparison.
fn rayon_1mib(path: &std::path::Path) -> blake3::Hash {
    let mut file = std::fs::File::open(path).expect("sample file");
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update_rayon(&buf[..n]);
    }
    hasher.finalize()
}

fn hash_files(c: &mut Criterion) {
    let mut group = c.benchmark_group("hash_file");
    // A typical Go archive and a stripped x/tools command (files up to 64 KiB are read whole
    // and hashed in one call, before and now).
    for len in [512 << 10, 7 << 20] {
        let sample = SampleFile::new(len).expect("write sample file");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("of_file", len), &sample, |b, s| {
            b.iter(|| Digest::of_file(DigestFunction::Blake3, s.path()).expect("hash"))
        });
        group.bench_with_input(BenchmarkId::new("rayon_1mib", len), &sample, |b, s| {
            b.iter(|| rayon_1mib(s.path()))
        });
    }
    group.finish();
}

criterion_group!(benches, hash_files);
criterion_main!(benches);
