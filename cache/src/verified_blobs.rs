//! [`VerifiedBlobs`]: the blobs a long-running server hashed recently and found right, so that a
//! popular large blob is not re-hashed on every read.
//!
//! An entry vouches for a blob only while all of these hold:
//! - the blob's file has the same [`FileStat`] (device, inode, size, mtime, ctime) as when it was
//!   hashed: any write, truncation, replacement or re-creation through the file system changes
//!   at least one of them (ctime cannot be set by a user);
//! - its mtime and ctime were older than the hash by more than the file system's timestamp
//!   granule can hide (the racy-clean rule of the file memo: a change in the same granule as the
//!   hash is not trusted). File systems with sub-second timestamps (ext4, xfs, btrfs, tmpfs)
//!   stamp files from a clock that ticks at least every 10 ms, so [`FINE_RACY_WINDOW`] covers
//!   them tenfold; a file whose timestamps have no sub-second part may live on one that counts
//!   whole seconds (FAT counts two), and gets the file memo's [`RACY_WINDOW`];
//! - the hash is younger than the configured interval, so even corruption beneath the file
//!   system (which changes no metadata) is found at the next read after that interval.
//!
//! A zero interval disables the memo: every read re-hashes its blob.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::digest::Digest;
use crate::file_memo::{nanos_since_epoch, FileStat, RACY_WINDOW};

/// How much older than its hash a file with sub-second timestamps must be.
pub const FINE_RACY_WINDOW: Duration = Duration::from_millis(100);

/// Entries kept at most; past it the memo starts over (each entry then costs one more hash).
const MAX_ENTRIES: usize = 1 << 16;

/// Blobs verified recently, with the file metadata they had. Shared by a server's readers.
#[derive(Debug)]
pub struct VerifiedBlobs {
    interval: Duration,
    entries: Mutex<HashMap<Digest, Verification>>,
}

/// One successful hash of a blob's file.
#[derive(Debug, Clone, Copy)]
struct Verification {
    stat: FileStat,
    /// Wall-clock start of the hash, compared with the file's timestamps.
    hashed_at: SystemTime,
    /// Monotonic start of the hash, for the re-verification interval.
    hashed_at_instant: Instant,
}

impl VerifiedBlobs {
    /// A memo whose entries vouch for `interval` after their hash; zero disables it.
    pub fn new(interval: Duration) -> VerifiedBlobs {
        VerifiedBlobs {
            interval,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `digest`'s file, now with `stat`, was verified recently enough to be served
    /// without hashing it again.
    pub fn vouches_for(&self, digest: &Digest, stat: &FileStat) -> bool {
        if self.interval.is_zero() {
            return false;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(seen) = entries.get(digest) else {
            return false;
        };
        let settled_before =
            nanos_since_epoch(seen.hashed_at) - racy_window(stat).as_nanos() as i64;
        seen.stat == *stat
            && stat.mtime_ns < settled_before
            && stat.ctime_ns < settled_before
            && seen.hashed_at_instant.elapsed() < self.interval
    }

    /// Records that `digest`'s file, with `stat` taken before hashing began at `hashed_at` /
    /// `hashed_at_instant`, hashed to `digest`.
    pub fn record(
        &self,
        digest: Digest,
        stat: FileStat,
        hashed_at: SystemTime,
        hashed_at_instant: Instant,
    ) {
        if self.interval.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&digest) {
            entries.clear();
        }
        entries.insert(
            digest,
            Verification {
                stat,
                hashed_at,
                hashed_at_instant,
            },
        );
    }

    /// Drops what is known of `digest` (its blob failed a check or was removed).
    pub fn forget(&self, digest: &Digest) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(digest);
    }
}

/// How long before a hash a change to a file with `stat` could go unseen in its timestamps.
pub(crate) fn racy_window(stat: &FileStat) -> Duration {
    const SECOND: i64 = 1_000_000_000;
    if stat.mtime_ns % SECOND == 0 && stat.ctime_ns % SECOND == 0 {
        RACY_WINDOW
    } else {
        FINE_RACY_WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DigestFunction;

    const SECOND: i64 = 1_000_000_000;

    fn stat(mtime_ns: i64) -> FileStat {
        crate::file_memo::test_stat(mtime_ns)
    }

    fn at(ns: i64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }

    #[test]
    fn vouches_only_for_the_same_settled_file_within_the_interval() {
        let memo = VerifiedBlobs::new(Duration::from_secs(60));
        let digest = Digest::of_bytes(DigestFunction::Sha256, b"abc");
        let written = 1_000 * SECOND;
        assert!(!memo.vouches_for(&digest, &stat(written)), "never hashed");

        memo.record(
            digest,
            stat(written),
            at(written + 10 * SECOND),
            Instant::now(),
        );
        assert!(memo.vouches_for(&digest, &stat(written)));
        let mut rewritten = stat(written);
        rewritten.ctime_ns += 1;
        assert!(!memo.vouches_for(&digest, &rewritten), "ctime changed");
        let mut replaced = stat(written);
        replaced.ino += 1;
        assert!(!memo.vouches_for(&digest, &replaced), "another file");
        let other = Digest::of_bytes(DigestFunction::Sha256, b"abd");
        assert!(!memo.vouches_for(&other, &stat(written)));

        memo.forget(&digest);
        assert!(!memo.vouches_for(&digest, &stat(written)), "forgotten");
    }

    #[test]
    fn a_file_changed_just_before_its_hash_is_not_trusted() {
        let memo = VerifiedBlobs::new(Duration::from_secs(60));
        let digest = Digest::of_bytes(DigestFunction::Sha256, b"abc");
        let written = 1_000 * SECOND;
        memo.record(digest, stat(written), at(written + SECOND), Instant::now());
        assert!(!memo.vouches_for(&digest, &stat(written)));
    }

    #[test]
    fn sub_second_timestamps_settle_sooner_than_whole_seconds() {
        let memo = VerifiedBlobs::new(Duration::from_secs(60));
        let digest = Digest::of_bytes(DigestFunction::Sha256, b"abc");
        let fine = 1_000 * SECOND + 123_456_789;
        memo.record(digest, stat(fine), at(fine + SECOND), Instant::now());
        assert!(memo.vouches_for(&digest, &stat(fine)), "a second after");
        memo.record(digest, stat(fine), at(fine + 50_000_000), Instant::now());
        assert!(!memo.vouches_for(&digest, &stat(fine)), "50 ms after");
        // Whole seconds: maybe a file system that counts seconds; a second is not enough.
        let coarse = 1_000 * SECOND;
        memo.record(digest, stat(coarse), at(coarse + SECOND), Instant::now());
        assert!(!memo.vouches_for(&digest, &stat(coarse)));
    }

    #[test]
    fn entries_expire_and_a_zero_interval_disables_the_memo() {
        let digest = Digest::of_bytes(DigestFunction::Sha256, b"abc");
        let written = 1_000 * SECOND;
        let hashed = at(written + 10 * SECOND);

        let memo = VerifiedBlobs::new(Duration::from_millis(50));
        memo.record(digest, stat(written), hashed, Instant::now());
        assert!(memo.vouches_for(&digest, &stat(written)));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!memo.vouches_for(&digest, &stat(written)), "expired");

        let off = VerifiedBlobs::new(Duration::ZERO);
        off.record(digest, stat(written), hashed, Instant::now());
        assert!(!off.vouches_for(&digest, &stat(written)));
    }
}
