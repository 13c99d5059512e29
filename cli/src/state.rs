//! The workspace's own state as the engine sees it (file-digest memo, package memo, action
//! history), the build lock, and `kiln explain`, which reads the history back.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::SystemTime;

use anyhow::Result;
use kiln_cache::ActionRecord;
use kiln_cache::{
    BuildLock, CacheError, Digest, DigestFunction, FileMemo, FileStat, MemoRecord, WorkspaceState,
};
use kiln_graph::engine::packages::PackageMemoStore;
use kiln_graph::engine::sources::DigestMemo;
use kiln_graph::engine::EngineState;

use crate::args::ExplainArgs;
use crate::exit::{self, Exit};
use crate::ui::Terminal;
use crate::workspace::Workspace;

/// Key of the list of each target's actions in the last build.
const LAST_BUILD_KEY: &str = "last_build_actions";
/// Key of the last successful build's no-op record (see `kiln_graph::engine::noop`).
const NOOP_KEY: &str = "noop_record";
/// Key of the mark the last build (or `kiln clean`) left, so `kiln watch` notices other builds.
const BUILD_MARK_KEY: &str = "build_mark";
/// Prefix of the rules' memo keys in the key/value table (toolchain digests and the like).
const RULE_MEMO_PREFIX: &str = "rules:";

/// The engine's view of the workspace state, buffering writes until drop.
pub struct State {
    dir: std::path::PathBuf,
    db: WorkspaceState,
    /// The file-digest memo, loaded once per function and kept up to date in memory.
    memos: RwLock<HashMap<DigestFunction, FileMemo>>,
    pending: Mutex<Vec<MemoRecord>>,
    /// Package memos read or written by this process (`kiln watch` keeps them across rounds).
    packages: Mutex<HashMap<String, Vec<u8>>>,
    durations: OnceLock<HashMap<String, u64>>,
}

impl State {
    /// Opens the state under `dir`.
    pub fn open(dir: &Path, _terminal: &Terminal) -> Result<State> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Exit::new(
                exit::LOCAL_ENVIRONMENT,
                format!("Cannot create `{}`: {e}", dir.display()),
            )
        })?;
        let db = WorkspaceState::open(dir).map_err(|e| {
            Exit::new(
                exit::LOCAL_ENVIRONMENT,
                format!(
                    "Cannot open the workspace state in `{}`: {e}",
                    dir.display()
                ),
            )
        })?;
        Ok(State {
            dir: dir.to_path_buf(),
            db,
            memos: RwLock::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            packages: Mutex::new(HashMap::new()),
            durations: OnceLock::new(),
        })
    }

    /// Takes the build lock, saying whom we wait for if another kiln holds it.
    pub fn lock(&self, terminal: &Terminal) -> Result<BuildLock> {
        let dir = self.dir.clone();
        match BuildLock::try_acquire(&dir) {
            Ok(lock) => Ok(lock),
            Err(CacheError::LockHeld { pid, .. }) => {
                let who = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                terminal.line(&format!(
                    "INFO: Waiting for another kiln process{who} to finish with this workspace"
                ));
                BuildLock::acquire(&dir).map_err(|e| {
                    Exit::new(
                        exit::LOCAL_ENVIRONMENT,
                        format!("Cannot take the build lock: {e}"),
                    )
                    .into()
                })
            }
            Err(e) => Err(Exit::new(
                exit::LOCAL_ENVIRONMENT,
                format!("Cannot take the build lock: {e}"),
            )
            .into()),
        }
    }

    /// Leaves a mark no other build leaves (process id and time), saying `kiln-out/` may have
    /// changed: a `kiln watch` of this workspace compares it with the mark of its own last round.
    pub fn mark_build(&self) {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mark = format!("{}:{nanos}", std::process::id());
        let _ = self.db.put_kv(BUILD_MARK_KEY, mark.as_bytes());
    }

    /// The mark the last build left (see [`State::mark_build`]).
    pub fn build_mark(&self) -> Option<Vec<u8>> {
        self.db.get_kv(BUILD_MARK_KEY).ok().flatten()
    }

    /// The memoized digest of `path`, loading the memo of `function` on first use.
    fn memo_lookup(&self, path: &str, stat: &FileStat, function: DigestFunction) -> Option<Digest> {
        self.with_memo(function, |memo| memo.lookup(path, stat))
    }

    /// Answers `ask` from the file memo for `function`, loading that from the database on
    /// first use.
    fn with_memo(
        &self,
        function: DigestFunction,
        ask: impl Fn(&FileMemo) -> Option<Digest>,
    ) -> Option<Digest> {
        if let Some(found) = self.memos.read().ok()?.get(&function).map(&ask) {
            return found;
        }
        let mut memos = self.memos.write().ok()?;
        let memo = memos
            .entry(function)
            .or_insert_with(|| self.db.load_file_memo(function).unwrap_or_default());
        ask(memo)
    }

    /// Writes buffered memo records.
    pub fn flush(&self) {
        let records = match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        if !records.is_empty() {
            let _ = self.db.record_batch(&records);
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        self.flush();
    }
}

impl DigestMemo for State {
    fn lookup(
        &self,
        path: &str,
        metadata: &std::fs::Metadata,
        function: DigestFunction,
    ) -> Option<Digest> {
        self.memo_lookup(path, &FileStat::from_metadata(metadata), function)
    }

    fn recorded(
        &self,
        path: &str,
        metadata: &std::fs::Metadata,
        function: DigestFunction,
    ) -> Option<Digest> {
        let stat = FileStat::from_metadata(metadata);
        self.with_memo(function, |memo| memo.recorded(path, &stat))
    }

    fn record(&self, path: &str, metadata: &std::fs::Metadata, digest: Digest) {
        let record = MemoRecord {
            path: path.to_string(),
            stat: FileStat::from_metadata(metadata),
            digest,
            hashed_at: SystemTime::now(),
        };
        if let Ok(mut memos) = self.memos.write() {
            if let Some(memo) = memos.get_mut(&digest.function) {
                memo.insert(&record);
            }
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.push(record);
        }
    }
}

impl PackageMemoStore for State {
    fn get(&self, package: &str) -> Option<Vec<u8>> {
        if let Some(bytes) = self.packages.lock().ok()?.get(package) {
            return Some(bytes.clone());
        }
        let bytes = self.db.get_package(package).ok().flatten()?;
        if let Ok(mut packages) = self.packages.lock() {
            packages.insert(package.to_string(), bytes.clone());
        }
        Some(bytes)
    }

    fn put(&self, package: &str, bytes: Vec<u8>) {
        let _ = self.db.put_package(package, &bytes);
        if let Ok(mut packages) = self.packages.lock() {
            packages.insert(package.to_string(), bytes);
        }
    }
}

impl EngineState for State {
    fn expected_duration(&self, history_key: &str) -> Option<u64> {
        self.durations
            .get_or_init(|| self.db.durations().unwrap_or_default())
            .get(history_key)
            .copied()
    }

    fn noop_record(&self) -> Option<Vec<u8>> {
        self.db
            .get_kv(NOOP_KEY)
            .ok()
            .flatten()
            .filter(|b| !b.is_empty())
    }

    fn set_noop_record(&self, record: Option<Vec<u8>>) {
        let _ = self.db.put_kv(NOOP_KEY, &record.unwrap_or_default());
    }

    fn memo_get(&self, key: &str) -> Option<Vec<u8>> {
        self.db
            .get_kv(&format!("{RULE_MEMO_PREFIX}{key}"))
            .ok()
            .flatten()
    }

    fn memo_put(&self, key: &str, value: &[u8]) {
        let _ = self.db.put_kv(&format!("{RULE_MEMO_PREFIX}{key}"), value);
    }

    fn record_actions(&self, records: Vec<ActionRecord>) {
        let previous = self.last_build();
        let mut last = LastBuild::default();
        let mut changed = Vec::new();
        for record in records {
            let unchanged =
                previous
                    .actions
                    .get(&record.output_key)
                    .is_some_and(|(_, key, old_status, _)| {
                        *key == record.action_key
                            && *old_status == record.status
                            && record.status != "executed"
                    });
            last.actions.insert(
                record.output_key.clone(),
                (
                    record.label.clone(),
                    record.action_key.clone(),
                    record.status.clone(),
                    record.mnemonic.clone(),
                ),
            );
            if !unchanged {
                changed.push(record);
            }
        }
        // Only what differs from the last build is written in full; a no-op writes one row.
        if !changed.is_empty() {
            if let Ok(build_id) = self.db.new_build_id() {
                for record in &mut changed {
                    record.build_id = build_id;
                }
                let _ = self.db.record_actions(&changed);
            }
        }
        if let Ok(bytes) = serde_json::to_vec(&last) {
            let _ = self.db.put_kv(LAST_BUILD_KEY, &bytes);
        }
    }
}

/// Every action of the last build: history key → (label, action key, cache status, mnemonic).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct LastBuild {
    actions: BTreeMap<String, (String, String, String, String)>,
}

impl State {
    fn last_build(&self) -> LastBuild {
        self.db
            .get_kv(LAST_BUILD_KEY)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
}

/// `kiln explain //t`: for each action of `//t` in the last build, why it ran.
pub fn explain(args: &ExplainArgs) -> Result<i32> {
    let workspace = Workspace::open(&args.common)?;
    let patterns = crate::commands::parse_patterns(
        std::slice::from_ref(&args.target),
        &workspace.cwd_package,
    )?;
    let label = patterns.explicit_targets().next().cloned().ok_or_else(|| {
        Exit::new(
            exit::BAD_COMMAND_LINE,
            format!(
                "`kiln explain` needs one target, not the pattern `{}`",
                args.target
            ),
        )
    })?;
    let terminal = Terminal::new();
    let state = State::open(&workspace.state_dir, &terminal)?;
    let last = state.last_build();
    let wanted = label.to_string();
    let mut found = false;
    for (key, (owner, _, status, mnemonic)) in &last.actions {
        if *owner != wanted {
            continue;
        }
        found = true;
        match (status.as_str(), state.db.last_two_actions(key)) {
            ("executed", Ok(Some(history))) => print!("{}", explain_one(&history)),
            ("local_hit", _) => println!("{mnemonic} {key} ({owner}): local cache hit, not run"),
            ("remote_hit", _) => println!("{mnemonic} {key} ({owner}): remote cache hit, not run"),
            (other, _) => println!("{key} ({owner}): {other}, no history recorded"),
        }
    }
    if !found {
        println!("{label}: no actions in the last build (was it built?)");
    }
    Ok(exit::SUCCESS)
}

/// The explanation of one action's latest record against its previous one.
pub fn explain_one(history: &kiln_cache::ActionHistory) -> String {
    let latest = &history.latest;
    let mut out = format!(
        "{} {} ({}): ",
        latest.mnemonic, latest.output_key, latest.label
    );
    match latest.status.as_str() {
        "local_hit" => out.push_str("local cache hit, not run\n"),
        "remote_hit" => out.push_str("remote cache hit, not run\n"),
        _ => match &history.previous {
            None => out.push_str(
                "ran: no earlier record of this action (first build, or history was cleared)\n",
            ),
            Some(previous) if previous.action_key == latest.action_key => out.push_str(
                "ran with an unchanged key: the cached result was missing, lost or not cacheable\n",
            ),
            Some(previous) => {
                out.push_str("ran because its key changed:\n");
                for line in diff(previous, latest) {
                    out.push_str("  ");
                    out.push_str(&line);
                    out.push('\n');
                }
            }
        },
    }
    out
}

fn diff(old: &kiln_cache::ActionRecord, new: &kiln_cache::ActionRecord) -> Vec<String> {
    let mut lines = Vec::new();
    diff_maps("input", &old.inputs, &new.inputs, &mut lines);
    if old.argv != new.argv {
        let n = old.argv.len().max(new.argv.len());
        for i in 0..n {
            let (a, b) = (old.argv.get(i), new.argv.get(i));
            if a != b {
                lines.push(format!(
                    "argument {i} changed: {} -> {}",
                    a.map(|s| format!("`{s}`"))
                        .unwrap_or_else(|| "(none)".into()),
                    b.map(|s| format!("`{s}`"))
                        .unwrap_or_else(|| "(none)".into())
                ));
            }
        }
    }
    diff_maps("environment variable", &old.env, &new.env, &mut lines);
    diff_maps(
        "platform property",
        &old.platform,
        &new.platform,
        &mut lines,
    );
    if lines.is_empty() {
        lines.push("the key changed through a field not recorded in history (outputs, timeout or cacheability)".into());
    }
    lines
}

fn diff_maps(
    what: &str,
    old: &[(String, String)],
    new: &[(String, String)],
    lines: &mut Vec<String>,
) {
    let old: BTreeMap<&String, &String> = old.iter().map(|(k, v)| (k, v)).collect();
    let new: BTreeMap<&String, &String> = new.iter().map(|(k, v)| (k, v)).collect();
    for (key, value) in &new {
        match old.get(key) {
            None => lines.push(format!("{what} `{key}` added")),
            Some(before) if before != value => {
                lines.push(format!("{what} `{key}` changed: {before} -> {value}"))
            }
            _ => {}
        }
    }
    for key in old.keys() {
        if !new.contains_key(key) {
            lines.push(format!("{what} `{key}` removed"));
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};
    use kiln_cache::{ActionHistory, ActionRecord, Digest, DigestFunction};
    use kiln_graph::engine::sources::DigestMemo;

    use super::{explain_one, State};

    /// A file the previous build recorded a moment ago is racy: the memo vouches for nothing
    /// yet, but still says what it recorded for that exact stat, and nothing once the stat
    /// changes.
    #[test]
    fn a_racy_entry_is_recorded_but_not_vouched_for() {
        let dir = tempfile::tempdir().unwrap();
        let open = || State::open(&dir.path().join("state"), &crate::ui::Terminal::new()).unwrap();
        let file = dir.path().join("tool");
        std::fs::write(&file, b"binary").unwrap();
        let metadata = std::fs::metadata(&file).unwrap();
        let f = DigestFunction::Blake3;
        let digest = Digest::of_bytes(f, b"binary");
        // The build that wrote it (its records are written when the state is dropped).
        open().record("kiln-out/tool", &metadata, digest);
        let state = open();
        assert_eq!(state.lookup("kiln-out/tool", &metadata, f), None);
        assert_eq!(state.recorded("kiln-out/tool", &metadata, f), Some(digest));
        assert_eq!(state.recorded("kiln-out/other", &metadata, f), None);
        std::fs::write(&file, b"a longer binary").unwrap();
        let changed = std::fs::metadata(&file).unwrap();
        assert_eq!(state.recorded("kiln-out/tool", &changed, f), None);
    }

    fn record(key: &str, input: &str, arg: &str, path: &str, status: &str) -> ActionRecord {
        ActionRecord {
            label: "//a:gen".into(),
            mnemonic: "Genrule".into(),
            output_key: "kiln-out/bin/a/out.txt".into(),
            action_key: key.into(),
            inputs: vec![
                ("a/in.txt".into(), input.into()),
                ("a/same.txt".into(), "s/1".into()),
            ],
            argv: vec!["/bin/bash".into(), "-c".into(), arg.into()],
            env: vec![("PATH".into(), path.into())],
            platform: vec![("OSFamily".into(), "linux".into())],
            duration_ms: 5,
            status: status.into(),
            build_id: 1,
        }
    }

    fn check(latest: ActionRecord, previous: Option<ActionRecord>, expected: Expect) {
        expected.assert_eq(&explain_one(&ActionHistory { latest, previous }));
    }

    #[test]
    fn explains_what_changed() {
        check(
            record(
                "k2",
                "d2/3",
                "cat a/in.txt > $OUT; echo",
                "/bin",
                "executed",
            ),
            Some(record(
                "k1",
                "d1/3",
                "cat a/in.txt > $OUT",
                "/usr/bin",
                "executed",
            )),
            expect![[r#"
                Genrule kiln-out/bin/a/out.txt (//a:gen): ran because its key changed:
                  input `a/in.txt` changed: d1/3 -> d2/3
                  argument 2 changed: `cat a/in.txt > $OUT` -> `cat a/in.txt > $OUT; echo`
                  environment variable `PATH` changed: /usr/bin -> /bin
            "#]],
        );
    }

    #[test]
    fn explains_first_runs_hits_and_unchanged_keys() {
        check(
            record("k1", "d1/3", "x", "/bin", "executed"),
            None,
            expect![[r#"
                Genrule kiln-out/bin/a/out.txt (//a:gen): ran: no earlier record of this action (first build, or history was cleared)
            "#]],
        );
        check(
            record("k1", "d1/3", "x", "/bin", "local_hit"),
            None,
            expect![[r#"
                Genrule kiln-out/bin/a/out.txt (//a:gen): local cache hit, not run
            "#]],
        );
        check(
            record("k1", "d1/3", "x", "/bin", "executed"),
            Some(record("k1", "d1/3", "x", "/bin", "executed")),
            expect![[r#"
                Genrule kiln-out/bin/a/out.txt (//a:gen): ran with an unchanged key: the cached result was missing, lost or not cacheable
            "#]],
        );
    }
}
