//! Randomized differential test: random edits to a random acyclic genrule graph, then the
//! incremental build must equal (a) a clean build of a copy in a fresh cache and (b) a fresh
//! checkout sharing the cache (which must execute nothing). Edits cover sources, commands,
//! dependencies, files appearing in and vanishing from a `glob()`, a rule's `executable` flag, and
//! scribbles on `kiln-out/`; outputs are compared by content and executable bit.

mod harness;

use std::collections::BTreeSet;
use std::time::SystemTime;

use harness::Workspace;

const PACKAGES: usize = 4;
const RULES: usize = 5;
const SOURCES: usize = 3;
const ROUNDS: usize = 10;

/// xorshift64*: tiny, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Clone)]
struct Rule {
    sources: BTreeSet<usize>,
    /// Global indices (package * RULES + rule) of earlier rules.
    deps: BTreeSet<usize>,
    template: usize,
    salt: u64,
}

const TEMPLATES: &[&str] = &[
    "cat $(SRCS) > $@; echo SALT >> $@",
    "(echo SALT; cat $(SRCS) | sort) > $@",
    // Line counts: often byte-identical after an edit (early cutoff).
    "cat $(SRCS) | wc -l > $@",
    "cat $(SRCS) | tr a-z A-Z > $@; echo SALT >> $@",
    "head -c 7 $(SRCS) | od -c | head -n 2 > $@",
];

struct Model {
    rules: Vec<Rule>,
    sources: Vec<String>,
    /// Per package: the files under `extra/`, which a `glob()` rule reads.
    extras: Vec<BTreeSet<usize>>,
    /// Per package: whether the glob rule's output is `executable`.
    glob_rule_executable: Vec<bool>,
}

fn label(global: usize, from_package: usize) -> String {
    let (p, r) = (global / RULES, global % RULES);
    if p == from_package {
        format!(":g{r}")
    } else {
        format!("//p{p}:g{r}")
    }
}

impl Model {
    fn random(rng: &mut Rng) -> Model {
        let sources = (0..PACKAGES * SOURCES)
            .map(|i| format!("source {i} word{}\nline two\n", rng.below(1000)))
            .collect();
        let mut rules = Vec::new();
        for g in 0..PACKAGES * RULES {
            let mut deps = BTreeSet::new();
            for _ in 0..rng.below(3) {
                if g > 0 {
                    deps.insert(rng.below(g));
                }
            }
            let mut srcs = BTreeSet::new();
            srcs.insert(rng.below(SOURCES));
            rules.push(Rule {
                sources: srcs,
                deps,
                template: rng.below(TEMPLATES.len()),
                salt: rng.next() % 1000,
            });
        }
        let extras = (0..PACKAGES).map(|_| (0..rng.below(3)).collect()).collect();
        Model {
            rules,
            sources,
            extras,
            glob_rule_executable: (0..PACKAGES).map(|p| p % 2 == 1).collect(),
        }
    }

    fn write(&self, ws: &Workspace) {
        for p in 0..PACKAGES {
            let mut build = String::new();
            for r in 0..RULES {
                let rule = &self.rules[p * RULES + r];
                let mut srcs: Vec<String> = rule
                    .sources
                    .iter()
                    .map(|s| format!("\"s{s}.txt\""))
                    .collect();
                srcs.extend(rule.deps.iter().map(|d| format!("\"{}\"", label(*d, p))));
                let cmd = TEMPLATES[rule.template].replace("SALT", &format!("salt{}", rule.salt));
                build.push_str(&format!(
                    "genrule(\n    name = \"g{r}\",\n    srcs = [{}],\n    outs = [\"g{r}.txt\"],\n    cmd = \"{cmd}\",\n    visibility = [\"//visibility:public\"],\n)\n",
                    srcs.join(", ")
                ));
            }
            // A rule over a glob, whose output starts executable in odd packages.
            build.push_str(&format!(
                "genrule(\n    name = \"ge\",\n    srcs = glob([\"extra/*.txt\"]),\n    outs = [\"ge.txt\"],\n    cmd = \"cat $(SRCS) /dev/null > $@; echo p{p} >> $@\",\n    executable = {},\n)\n",
                if self.glob_rule_executable[p] {
                    "True"
                } else {
                    "False"
                }
            ));
            ws.write(&format!("p{p}/BUILD"), &build);
            for e in &self.extras[p] {
                ws.write(&format!("p{p}/extra/e{e}.txt"), &format!("extra {p}.{e}\n"));
            }
            for s in 0..SOURCES {
                ws.write(&format!("p{p}/s{s}.txt"), &self.sources[p * SOURCES + s]);
            }
        }
    }
}

fn make_writable(path: &std::path::Path) {
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
}

/// Applies 0-3 random edits; returns whether any edit touched the sources (BUILD or inputs).
fn edit(rng: &mut Rng, model: &mut Model, ws: &Workspace, log: &mut Vec<String>) -> bool {
    let mut source_edit = false;
    let n = rng.below(4);
    for _ in 0..n {
        let global = rng.below(model.rules.len());
        let (p, r) = (global / RULES, global % RULES);
        match rng.below(9) {
            8 => {
                // Only the mode of the output changes: its content and command stay the same.
                model.glob_rule_executable[p] = !model.glob_rule_executable[p];
                log.push(format!("toggle executable of //p{p}:ge"));
                source_edit = true;
            }
            6 => {
                let e = rng.below(5);
                if model.extras[p].insert(e) {
                    log.push(format!("add p{p}/extra/e{e}.txt"));
                    source_edit = true;
                }
            }
            7 => {
                if let Some(e) = model.extras[p].iter().next().copied() {
                    model.extras[p].remove(&e);
                    ws.remove(&format!("p{p}/extra/e{e}.txt"));
                    log.push(format!("remove p{p}/extra/e{e}.txt"));
                    source_edit = true;
                }
            }
            0 => {
                let s = rng.below(model.sources.len());
                // Half the time keep the line count (early cutoff for `wc -l`).
                model.sources[s] = if rng.chance(50) {
                    format!("edited {} word{}\nline two\n", s, rng.below(1000))
                } else {
                    format!("edited {s}\nmore\nlines {}\n", rng.below(1000))
                };
                log.push(format!("source {s}"));
                source_edit = true;
            }
            1 => {
                let rule = &mut model.rules[global];
                rule.template = rng.below(TEMPLATES.len());
                rule.salt = rng.next() % 1000;
                log.push(format!("cmd of //p{p}:g{r}"));
                source_edit = true;
            }
            2 if global > 0 => {
                let dep = rng.below(global);
                model.rules[global].deps.insert(dep);
                log.push(format!("add dep {dep} to //p{p}:g{r}"));
                source_edit = true;
            }
            3 => {
                if let Some(dep) = model.rules[global].deps.iter().next().copied() {
                    model.rules[global].deps.remove(&dep);
                    log.push(format!("remove dep {dep} from //p{p}:g{r}"));
                    source_edit = true;
                }
            }
            4 => {
                let path = ws.out_path(&format!("p{p}/g{r}.txt"));
                if path.exists() {
                    std::fs::remove_file(&path).unwrap();
                    log.push(format!("delete out p{p}/g{r}"));
                }
            }
            _ => {
                // Scribble with the same size and the same mtime: only content (and ctime) differ.
                let path = ws.out_path(&format!("p{p}/g{r}.txt"));
                if let Ok(meta) = std::fs::metadata(&path) {
                    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    make_writable(&path);
                    std::fs::write(&path, vec![b'x'; meta.len() as usize]).unwrap();
                    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    file.set_modified(mtime).unwrap();
                    log.push(format!("scribble out p{p}/g{r}"));
                }
            }
        }
    }
    model.write(ws);
    source_edit
}

fn run_seed(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut model = Model::random(&mut rng);
    let ws = Workspace::new();
    model.write(&ws);
    ws.build_all();
    for round in 0..ROUNDS {
        let mut log = Vec::new();
        let source_edit = edit(&mut rng, &mut model, &ws, &mut log);
        let context = format!("seed {seed} round {round} edits {log:?}");
        let out = ws.kiln(&["build", "//..."]);
        assert_eq!(out.code, 0, "{context}\n{}", out.stderr);
        if !source_edit {
            assert_eq!(
                out.executed(),
                vec![],
                "{context}: nothing changed in the sources"
            );
        }
        let got = outputs(&ws);
        assert_eq!(got.len(), PACKAGES * (RULES + 1), "{context}");

        let clean = ws.copy_to(false);
        clean.build_all();
        let want = outputs(&clean);
        for (path, bytes) in &want {
            assert_eq!(
                got.get(path)
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
                Some(String::from_utf8_lossy(bytes).into_owned()),
                "{context}: incremental output `{path}` differs from a clean build"
            );
        }
        assert_eq!(got, want, "{context}");

        let checkout = ws.copy_to(true);
        let shared = checkout.build_all();
        assert_eq!(
            shared.summary()["executed"],
            0,
            "{context}: a fresh checkout sharing the cache reran {:?}",
            shared.executed()
        );
        assert_eq!(
            outputs(&checkout),
            want,
            "{context}: fresh checkout sharing the cache differs"
        );
    }
}

#[test]
fn differential_seed_1() {
    run_seed(1);
}

#[test]
fn differential_seed_2() {
    run_seed(2);
}

/// Every output under `kiln-out/bin` with its executable bit appended, so a wrong mode is a
/// difference too.
fn outputs(ws: &Workspace) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    ws.outputs()
        .into_iter()
        .map(|(path, mut bytes)| {
            let mode = std::fs::metadata(ws.out_path(&path))
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            bytes.extend_from_slice(if mode & 0o111 != 0 {
                b"\n[exec]"
            } else {
                b"\n[plain]"
            });
            (path, bytes)
        })
        .collect()
}
