//! Action history, for `kiln explain` (what changed since the last build) and for
//! critical-path scheduling (how long each action took).
//!
//! Per `output_key` the table keeps at most two records: the latest and the previous one with
//! a different `action_key`. A build that reruns or hits the same action updates the latest
//! record in place, so the previous different one survives for `explain` to diff against.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use crate::error::{CacheError, Result};
use crate::workspace_state::WorkspaceState;

/// One action as executed (or served from a cache) in one build.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActionRecord {
    /// The target that owns the action, e.g. `//svc/api:api`.
    pub label: String,
    /// The action kind, e.g. `GoCompile`.
    pub mnemonic: String,
    /// Identifies the action across builds, e.g. its first output path.
    pub output_key: String,
    /// The action key (digest of the REAPI `Action`) in this build.
    pub action_key: String,
    /// Input path → digest.
    pub inputs: Vec<(String, String)>,
    /// Command line.
    pub argv: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Platform properties.
    pub platform: Vec<(String, String)>,
    /// Execution time in milliseconds (for a cache hit, the original execution's if known).
    pub duration_ms: u64,
    /// `executed`, `local_hit` or `remote_hit`.
    pub status: String,
    /// The build this record comes from ([`WorkspaceState::new_build_id`]).
    pub build_id: i64,
}

/// The latest record for an output key and the previous different one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionHistory {
    /// The record from the most recent build that ran or hit this action.
    pub latest: ActionRecord,
    /// The most recent record with a different `action_key`, if any.
    pub previous: Option<ActionRecord>,
}

const COLUMNS: &str = "label, mnemonic, output_key, action_key, inputs, argv, env, platform, \
                       duration_ms, status, build_id";

impl WorkspaceState {
    /// Records one action; see [`record_actions`](Self::record_actions).
    pub fn record_action(&self, record: &ActionRecord) -> Result<()> {
        self.record_actions(std::slice::from_ref(record))
    }

    /// Records a build's actions in one transaction and prunes older history.
    pub fn record_actions(&self, records: &[ActionRecord]) -> Result<()> {
        let err = self.err();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        {
            // Prepared once per call: a build with hundreds of changed actions would otherwise
            // parse the same four statements for each.
            let mut latest_of = tx
                .prepare_cached(
                    "SELECT id, action_key FROM actions WHERE output_key = ?1
                     ORDER BY id DESC LIMIT 1",
                )
                .map_err(&err)?;
            let mut touch = tx
                .prepare_cached(
                    "UPDATE actions SET build_id = ?2, status = ?3, label = ?4,
                       duration_ms = CASE WHEN ?3 = 'executed' THEN ?5 ELSE duration_ms END
                     WHERE id = ?1",
                )
                .map_err(&err)?;
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO actions ({COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ))
                .map_err(&err)?;
            let mut prune = tx
                .prepare_cached(
                    "DELETE FROM actions WHERE output_key = ?1 AND id NOT IN
                       (SELECT id FROM actions WHERE output_key = ?1
                        ORDER BY id DESC LIMIT 2)",
                )
                .map_err(&err)?;
            for r in records {
                let latest: Option<(i64, String)> = latest_of
                    .query_row([&r.output_key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
                    .map_err(&err)?;
                match latest {
                    Some((id, key)) if key == r.action_key => {
                        // Same action again: keep the measured duration unless it ran again.
                        touch
                            .execute(params![
                                id,
                                r.build_id,
                                r.status,
                                r.label,
                                r.duration_ms as i64
                            ])
                            .map_err(&err)?;
                    }
                    _ => {
                        insert
                            .execute(params![
                                r.label,
                                r.mnemonic,
                                r.output_key,
                                r.action_key,
                                encode_pairs(&r.inputs),
                                encode_strings(r.argv.iter().map(String::as_str)),
                                encode_pairs(&r.env),
                                encode_pairs(&r.platform),
                                r.duration_ms as i64,
                                r.status,
                                r.build_id,
                            ])
                            .map_err(&err)?;
                        prune.execute([&r.output_key]).map_err(&err)?;
                    }
                }
            }
        }
        tx.commit().map_err(&err)
    }

    /// The latest record for `output_key` and the previous different one, for `explain`.
    pub fn last_two_actions(&self, output_key: &str) -> Result<Option<ActionHistory>> {
        let err = self.err();
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM actions WHERE output_key = ?1 ORDER BY id DESC LIMIT 2"
            ))
            .map_err(&err)?;
        let mut rows = stmt.query([output_key]).map_err(&err)?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().map_err(&err)? {
            found.push(self.decode(row)?);
        }
        let mut found = found.into_iter();
        Ok(found.next().map(|latest| ActionHistory {
            latest,
            previous: found.next(),
        }))
    }

    /// The latest recorded duration of every action, by output key.
    pub fn durations(&self) -> Result<HashMap<String, u64>> {
        let err = self.err();
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT output_key, duration_ms FROM actions WHERE id IN
                   (SELECT max(id) FROM actions GROUP BY output_key)",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?.max(0) as u64,
                ))
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<HashMap<_, _>>>()
            .map_err(&err)
    }

    fn decode(&self, row: &rusqlite::Row<'_>) -> Result<ActionRecord> {
        let err = self.err();
        let blob = |i: usize| -> Result<Vec<String>> {
            let bytes: Vec<u8> = row.get(i).map_err(&err)?;
            decode_strings(&bytes).ok_or_else(|| CacheError::CorruptRecord {
                path: self.path.clone(),
                detail: format!("undecodable list in column {i} of `actions`"),
            })
        };
        let pairs = |i: usize| -> Result<Vec<(String, String)>> {
            let mut flat = blob(i)?.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                out.push((k, v));
            }
            Ok(out)
        };
        Ok(ActionRecord {
            label: row.get(0).map_err(&err)?,
            mnemonic: row.get(1).map_err(&err)?,
            output_key: row.get(2).map_err(&err)?,
            action_key: row.get(3).map_err(&err)?,
            inputs: pairs(4)?,
            argv: blob(5)?,
            env: pairs(6)?,
            platform: pairs(7)?,
            duration_ms: row.get::<_, i64>(8).map_err(&err)?.max(0) as u64,
            status: row.get(9).map_err(&err)?,
            build_id: row.get(10).map_err(&err)?,
        })
    }
}

/// Encodes strings as `u32 LE length ‖ bytes`, repeated.
fn encode_strings<'a>(items: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut out = Vec::new();
    for s in items {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

fn encode_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    encode_strings(pairs.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
}

fn decode_strings(mut bytes: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (s, rest) = rest.split_at_checked(len)?;
        out.push(String::from_utf8(s.to_vec()).ok()?);
        bytes = rest;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_lists_roundtrip_and_reject_truncation() {
        let items = ["", "a", "é\0x"];
        let enc = encode_strings(items.iter().copied());
        assert_eq!(decode_strings(&enc).unwrap(), items);
        assert_eq!(decode_strings(&enc[..enc.len() - 1]), None);
        assert_eq!(decode_strings(&[]), Some(vec![]));
    }
}
