//! Recently read action-cache entries kept in memory, for a long-running server
//! (`kiln serve`): a hit then costs no `open`, `statx`, `read`, `close` or BLAKE3 check.
//!
//! An entry enters only after its file passed the integrity check, and leaves when this process
//! replaces, evicts or discards that file. It holds only verified bytes, so it never serves a
//! damaged result; it does not see another process replace or delete the file, which is why
//! builds (many short processes on one cache) leave it off: `action_result_memo_bytes` in
//! [`CacheConfig`](crate::CacheConfig) is 0 by default.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::db;
use crate::digest::{Digest, DigestFunction};

/// Entries are named by function and hash, as their files are: the size in a digest is not
/// part of a file's name, so it is not part of the key.
type Name = (DigestFunction, [u8; 32]);

fn name(action: &Digest) -> Name {
    (action.function, action.hash)
}

/// A payload larger than this is never kept: the memo is for the many small results.
const MAX_ENTRY_BYTES: usize = 64 << 10;

/// A verified payload and the size of its file (for the index's access record).
#[derive(Clone)]
pub(crate) struct Remembered {
    pub payload: Arc<[u8]>,
    pub file_size: u64,
}

/// A byte-bounded LRU map from action digest to verified payload.
///
/// Only readers fill it, and only when no entry changed while they read: every replacement,
/// eviction or discard first counts a change and drops the entry, then touches the file. A
/// reader that read the old file before such a change therefore finds the count moved and
/// keeps nothing; one that stored before the change sees its entry dropped by it. So after
/// every change has finished, the memo holds no payload the file no longer holds.
pub(crate) struct ActionResultMemo {
    budget: usize,
    changes: AtomicU64,
    inner: Mutex<Inner>,
}

struct Inner {
    entries: LruCache<Name, Remembered>,
    bytes: usize,
}

/// The change count a reader saw before opening a file: see [`ActionResultMemo::remember`].
#[derive(Clone, Copy)]
pub(crate) struct ReadTicket(u64);

impl ActionResultMemo {
    /// A memo holding at most `budget` bytes of payloads; 0 turns it off.
    pub(crate) fn new(budget: u64) -> ActionResultMemo {
        ActionResultMemo {
            budget: usize::try_from(budget).unwrap_or(usize::MAX),
            changes: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    /// The remembered payload for `action`, marked as most recently used.
    pub(crate) fn get(&self, action: &Digest) -> Option<Remembered> {
        if self.budget == 0 {
            return None;
        }
        db::lock(&self.inner).entries.get(&name(action)).cloned()
    }

    /// To take before reading an entry's file, for [`remember`](Self::remember).
    pub(crate) fn read_starting(&self) -> ReadTicket {
        ReadTicket(self.changes.load(Ordering::Acquire))
    }

    /// Remembers a payload read from its file and verified, unless an entry changed since
    /// `ticket` was taken; then drops the least recently used entries until the total fits.
    pub(crate) fn remember(
        &self,
        action: &Digest,
        payload: &[u8],
        file_size: u64,
        ticket: ReadTicket,
    ) {
        if self.budget == 0 || payload.len() > MAX_ENTRY_BYTES.min(self.budget) {
            return;
        }
        let mut inner = db::lock(&self.inner);
        if self.changes.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        let remembered = Remembered {
            payload: Arc::from(payload),
            file_size,
        };
        inner.bytes += payload.len();
        if let Some(old) = inner.entries.put(name(action), remembered) {
            inner.bytes -= old.payload.len();
        }
        while inner.bytes > self.budget {
            match inner.entries.pop_lru() {
                Some((_, old)) => inner.bytes -= old.payload.len(),
                None => break,
            }
        }
    }

    /// Counts a change and forgets `action`: call it before replacing or deleting its file.
    pub(crate) fn forget(&self, action: &Digest) {
        if self.budget == 0 {
            return;
        }
        let mut inner = db::lock(&self.inner);
        self.changes.fetch_add(1, Ordering::AcqRel);
        if let Some(old) = inner.entries.pop(&name(action)) {
            inner.bytes -= old.payload.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(n: u8) -> Digest {
        Digest::of_bytes(DigestFunction::Blake3, &[n])
    }

    fn remember(memo: &ActionResultMemo, action: &Digest, payload: &[u8], file_size: u64) {
        memo.remember(action, payload, file_size, memo.read_starting());
    }

    #[test]
    fn a_read_that_overlapped_a_change_is_not_kept() {
        let memo = ActionResultMemo::new(1 << 20);
        let ticket = memo.read_starting();
        memo.forget(&action(2));
        memo.remember(&action(1), b"read before another entry changed", 80, ticket);
        assert!(memo.get(&action(1)).is_none());
        let ticket = memo.read_starting();
        memo.remember(&action(1), b"a quiet read", 80, ticket);
        memo.forget(&action(1));
        assert!(
            memo.get(&action(1)).is_none(),
            "a change after the read drops it"
        );
    }

    #[test]
    fn the_size_in_a_digest_is_not_part_of_the_key() {
        let memo = ActionResultMemo::new(1 << 20);
        let mut asked = action(1);
        remember(&memo, &asked, b"payload", 47);
        asked.size += 1;
        assert_eq!(&*memo.get(&asked).unwrap().payload, b"payload");
        memo.forget(&asked);
        assert!(memo.get(&action(1)).is_none());
    }

    #[test]
    fn the_least_recently_used_entries_go_first_when_over_budget() {
        let memo = ActionResultMemo::new(300);
        remember(&memo, &action(1), &[1; 100], 140);
        remember(&memo, &action(2), &[2; 100], 140);
        remember(&memo, &action(3), &[3; 100], 140);
        assert!(
            memo.get(&action(1)).is_some(),
            "touch 1: 2 is now the oldest"
        );
        remember(&memo, &action(4), &[4; 100], 140);
        assert!(memo.get(&action(2)).is_none());
        for n in [1, 3, 4] {
            assert_eq!(memo.get(&action(n)).unwrap().payload[0], n);
        }
    }

    #[test]
    fn a_replaced_entry_is_counted_once_and_a_forgotten_one_is_gone() {
        let memo = ActionResultMemo::new(250);
        remember(&memo, &action(1), &[1; 100], 140);
        remember(&memo, &action(1), &[9; 120], 160);
        remember(&memo, &action(2), &[2; 100], 140);
        let one = memo.get(&action(1)).unwrap();
        assert_eq!((one.payload[0], one.file_size), (9, 160));
        assert!(memo.get(&action(2)).is_some(), "220 bytes fit in 250");
        memo.forget(&action(1));
        assert!(memo.get(&action(1)).is_none());
        remember(&memo, &action(3), &[3; 120], 160);
        assert!(
            memo.get(&action(2)).is_some(),
            "the forgotten bytes were released"
        );
    }

    #[test]
    fn off_at_zero_and_too_large_payloads_are_not_kept() {
        let off = ActionResultMemo::new(0);
        remember(&off, &action(1), &[1; 10], 50);
        assert!(off.get(&action(1)).is_none());
        let memo = ActionResultMemo::new(1 << 30);
        remember(&memo, &action(1), &[1; 10], 50);
        remember(&memo, &action(1), &vec![0; MAX_ENTRY_BYTES + 1], 1 << 20);
        assert_eq!(
            &*memo.get(&action(1)).unwrap().payload,
            &[1; 10],
            "the large payload was not kept"
        );
    }
}
