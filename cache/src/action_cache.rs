//! The action cache: action digest → serialized `ActionResult`, stored as opaque bytes in the
//! action store (`action_store.rs`, a SQLite table).
//!
//! This crate knows no protobuf: callers pass the encoded bytes. Each entry is
//! `MAGIC ‖ blake3(payload) ‖ payload`, so a truncated or damaged entry is detected, deleted,
//! reported through [`LocalCache::take_warnings`], and is a miss.

use crate::digest::Digest;
use crate::error::Result;
use crate::index::Kind;
use crate::local_cache::LocalCache;

/// Identifies the entry format (and its version).
const MAGIC: &[u8; 8] = b"KILNAC1\n";
const HEADER: usize = MAGIC.len() + 32;

/// Encodes an entry: magic, BLAKE3 of the payload, payload.
fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Returns the payload of a well-formed entry.
fn decode(entry: &[u8]) -> Option<&[u8]> {
    if entry.len() < HEADER || &entry[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (check, payload) = entry[MAGIC.len()..].split_at(32);
    (blake3::hash(payload).as_bytes() == check).then_some(payload)
}

impl LocalCache {
    /// The stored result of the action with this digest, or `None` (missing or corrupt).
    pub fn get_action_result(&self, action: &Digest) -> Result<Option<Vec<u8>>> {
        if let Some(remembered) = self.action_results.get(action) {
            self.note_used(Kind::Action, action, remembered.file_size);
            return Ok(Some(remembered.payload.to_vec()));
        }
        let ticket = self.action_results.read_starting();
        let Some(entry) = self.actions.get(action)? else {
            self.note_gone(Kind::Action, action);
            return Ok(None);
        };
        match decode(&entry) {
            Some(payload) => {
                self.action_results
                    .remember(action, payload, entry.len() as u64, ticket);
                self.note_used(Kind::Action, action, entry.len() as u64);
                Ok(Some(payload.to_vec()))
            }
            None => {
                self.discard_corrupt_action(action);
                Ok(None)
            }
        }
    }

    /// Stores (or replaces) the result of the action with this digest, atomically.
    pub fn put_action_result(&self, action: &Digest, result: &[u8]) -> Result<()> {
        let entry = encode(result);
        // Forgotten before and after the entry changes (see `ActionResultMemo`): a read that
        // overlaps the write either sees a change counted or has its entry dropped.
        self.action_results.forget(action);
        self.actions.put(action, &entry)?;
        self.action_results.forget(action);
        self.note_used(Kind::Action, action, entry.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_format_detects_damage() {
        let entry = encode(b"result");
        assert_eq!(decode(&entry), Some(&b"result"[..]));
        assert_eq!(decode(&encode(b"")), Some(&b""[..]));
        assert_eq!(decode(&entry[..entry.len() - 1]), None);
        assert_eq!(decode(&entry[..HEADER - 1]), None);
        let mut flipped = entry.clone();
        flipped[HEADER] ^= 1;
        assert_eq!(decode(&flipped), None);
        let mut bad_magic = entry;
        bad_magic[0] = b'X';
        assert_eq!(decode(&bad_magic), None);
    }
}
