//! `kiln watch` driven as a subprocess on a copy of the examples (and a small server fixture):
//! an edit triggers exactly one round rebuilding what it affects; an editor's save by rename is
//! seen; a rewrite with identical bytes triggers nothing; a new file matched by a glob and a new
//! target in a BUILD file are picked up; `test` mode runs only affected tests; `run` mode serves
//! the new response after an edit, keeps the old server through a broken edit, and Ctrl-C leaves
//! no process behind (also when Ctrl-C comes during a round); examples/go's HTTP server is served
//! and restarted after an edit; an edit during a round stops it; kiln.toml edits apply. Waits
//! poll the events file with generous deadlines; nothing here times anything.

mod harness;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::watch::{examples, executed, save_by_rename, Watch, DEADLINE, QUIET};
use harness::{free_port, Workspace};

#[test]
fn build_mode_follows_edits_by_content() {
    let ws = examples();
    let watch = Watch::start(&ws, &["build", "//core/..."]);
    let first = watch.wait_round(1);
    assert_eq!(first["success"], true, "{}", watch.stderr());

    // A rewrite with the same bytes starts nothing.
    let fog = ws.read("core/text/poems/fog.txt");
    ws.write("core/text/poems/fog.txt", &fog);
    watch.assert_no_round_after(1);

    // An edit rebuilds exactly what reads the file, in one round.
    ws.write("core/text/poems/fog.txt", &format!("{fog}and more fog\n"));
    let second = watch.wait_round(2);
    assert_eq!(
        executed(&second),
        [
            "Genrule //core/text:anthology",
            "Genrule //core/text:counts",
            "Genrule //core/text:shout"
        ],
        "{}",
        watch.stderr()
    );
    watch.assert_no_round_after(2);
    assert!(ws
        .read_out("core/text/anthology.txt")
        .contains("and more fog"));

    // An editor-style save (temp file renamed over) is seen.
    save_by_rename(&ws, "core/text/poems/fog.txt", "renamed fog\n");
    let third = watch.wait_round(3);
    assert!(executed(&third).contains(&"Genrule //core/text:anthology".to_string()));
    assert!(ws
        .read_out("core/text/anthology.txt")
        .contains("renamed fog"));

    // A new file matched by the glob is picked up.
    ws.write("core/text/poems/zebra.txt", "a zebra poem\n");
    watch.wait_round(4);
    assert!(ws
        .read_out("core/text/anthology.txt")
        .contains("a zebra poem"));

    // A BUILD edit adding a target builds it.
    let build = ws.read("core/text/BUILD.bazel");
    ws.write(
        "core/text/BUILD.bazel",
        &format!("{build}\ngenrule(name = \"added\", outs = [\"added.txt\"], cmd = \"echo added > $@\")\n"),
    );
    let fifth = watch.wait_round(5);
    assert_eq!(executed(&fifth), ["Genrule //core/text:added"]);
    assert_eq!(ws.read_out("core/text/added.txt"), "added\n");
    let events = watch.events();
    let round5 = events
        .iter()
        .position(|e| e["type"] == "watch_round" && e["round"] == 5)
        .expect("round 5");
    let planned = events[round5..]
        .iter()
        .find(|e| e["type"] == "planned")
        .expect("planned event");
    assert_eq!(
        planned["packages_evaluated"], 1,
        "only the edited package is evaluated again"
    );

    // Between rounds the watcher holds no lock: a build in another terminal goes through.
    ws.kiln(&["build", "//core/..."]).ok();
    watch.assert_no_round_after(5);
}

#[test]
fn an_edit_during_a_round_stops_it_and_nothing_it_ran_is_cached() {
    let ws = Workspace::new();
    // The action is slow only on the input of the round the test stops.
    ws.write(
        "BUILD.bazel",
        r#"genrule(name = "slow", srcs = ["in.txt"], outs = ["slow.txt"],
                   cmd = "if grep -q two $<; then sleep 15; fi; cat $< > $@")"#,
    );
    ws.write("in.txt", "one\n");
    let watch = Watch::start(&ws, &["build", "//:slow"]);
    assert_eq!(watch.wait_round(1)["success"], true, "{}", watch.stderr());

    ws.write("in.txt", "two\n");
    watch.wait_action_started(2);
    ws.write("in.txt", "three\n");
    let second = watch.wait_round(2);
    assert_eq!(second["stopped"], true, "{}", watch.stderr());
    assert!(
        watch.stderr().contains("STOPPED round 2"),
        "{}",
        watch.stderr()
    );
    let third = watch.wait_round(3);
    assert_eq!(third["success"], true, "{}", watch.stderr());
    assert_eq!(executed(&third), ["Genrule //:slow"]);
    assert_eq!(ws.read_out("slow.txt"), "three\n");
    watch.assert_no_round_after(3);

    // Round 2's action was killed: nothing of it was cached, so its input runs it again.
    ws.write("in.txt", "two\n");
    let fourth = watch.wait_round(4);
    assert_eq!(fourth["success"], true, "{}", watch.stderr());
    assert_eq!(executed(&fourth), ["Genrule //:slow"]);
    assert_eq!(ws.read_out("slow.txt"), "two\n");
}

#[test]
fn a_replayed_first_round_and_an_events_file_inside_the_workspace_do_not_loop() {
    let ws = Workspace::new();
    ws.write(
        "BUILD.bazel",
        r#"genrule(name = "g", srcs = ["in.txt"], outs = ["g.txt"], cmd = "cat $< > $@")"#,
    );
    ws.write("in.txt", "one\n");
    assert_eq!(ws.kiln(&["build", "//:g"]).code, 0);
    // Old enough for the no-op record (2 s racy window), so the first round is a replay.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(ws.kiln(&["build", "//:g"]).code, 0);
    let events = ws.root().join("watch-events.jsonl");
    let mut child = ws
        .command(&["watch", "build", "//:g", "--events=watch-events.jsonl"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kiln watch");
    let rounds = || {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"watch_round_done\""))
            .count()
    };
    let start = Instant::now();
    while rounds() < 1 && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(QUIET);
    let after_quiet = rounds();
    ws.write("in.txt", "two\n");
    let start = Instant::now();
    while ws.read_out("g.txt") != "two\n" && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(QUIET);
    let total = rounds();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(after_quiet, 1, "writing its own events file started rounds");
    assert_eq!(ws.read_out("g.txt"), "two\n");
    assert_eq!(total, 2, "one round for the edit, and no more");
}

#[test]
fn kiln_toml_changes_apply_without_a_restart() {
    let ws = Workspace::new();
    ws.write(
        "BUILD.bazel",
        r#"genrule(name = "g", srcs = ["in.txt"], outs = ["g.txt"], cmd = "cat $< > $@")"#,
    );
    ws.write("in.txt", "one\n");
    let watch = Watch::start(&ws, &["build", "//:g"]);
    assert_eq!(watch.wait_round(1)["success"], true, "{}", watch.stderr());
    // Rewritten unchanged, it starts nothing.
    ws.write("kiln.toml", "");
    watch.assert_no_round_after(1);
    // A kiln.toml that does not parse keeps the old settings, with the error shown.
    ws.write("kiln.toml", "[build\n");
    let second = watch.wait_round(2);
    assert!(
        watch.stderr().contains("keeping the previous settings"),
        "{}",
        watch.stderr()
    );
    assert_eq!(second["success"], true, "{}", watch.stderr());
    // One that parses but holds a bad value is refused the same way.
    ws.write("kiln.toml", "[build]\ndigest_function = \"md5\"\n");
    let third = watch.wait_round(3);
    assert_eq!(third["success"], true, "{}", watch.stderr());
    assert_eq!(
        watch
            .stderr()
            .matches("keeping the previous settings")
            .count(),
        2,
        "{}",
        watch.stderr()
    );
    // A new digest function applies to the next round: every action key changes.
    ws.write("kiln.toml", "[build]\ndigest_function = \"sha256\"\n");
    let fourth = watch.wait_round(4);
    assert_eq!(fourth["success"], true, "{}", watch.stderr());
    assert_eq!(executed(&fourth), ["Genrule //:g"], "{}", watch.stderr());
    ws.write("in.txt", "two\n");
    let fifth = watch.wait_round(5);
    assert_eq!(executed(&fifth), ["Genrule //:g"], "{}", watch.stderr());
    assert_eq!(ws.read_out("g.txt"), "two\n");
}

#[test]
fn the_scanning_fallback_sees_edits_too() {
    let ws = examples();
    let watch = Watch::start(&ws, &["build", "--poll", "//core/text:anthology"]);
    watch.wait_round(1);
    assert!(watch.stderr().contains("scanning"), "{}", watch.stderr());
    ws.write("core/text/poems/fog.txt", "polled fog\n");
    let second = watch.wait_round(2);
    assert_eq!(executed(&second), ["Genrule //core/text:anthology"]);
}

#[test]
fn test_mode_runs_only_affected_tests() {
    let ws = examples();
    ws.write(
        "other/BUILD",
        "sh_test(name = \"other_test\", srcs = [\"other_test.sh\"], data = [\"input.txt\"])\n",
    );
    ws.write(
        "other/other_test.sh",
        "#!/bin/sh\ngrep -q PASS other/input.txt\n",
    );
    std::fs::set_permissions(
        ws.root().join("other/other_test.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    ws.write("other/input.txt", "PASS\n");
    let watch = Watch::start(&ws, &["test", "//..."]);
    assert_eq!(watch.wait_round(1)["success"], true, "{}", watch.stderr());
    let tests_in_round = |round: u64| -> Vec<(String, bool)> {
        let events = watch.events();
        let start = events
            .iter()
            .position(|e| e["type"] == "watch_round" && e["round"] == round)
            .expect("round start");
        events[start..]
            .iter()
            .take_while(|e| !(e["type"] == "watch_round_done" && e["round"] == round))
            .filter(|e| e["type"] == "test")
            .map(|e| {
                (
                    e["label"].as_str().unwrap_or("").to_string(),
                    e["cached"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    };
    ws.write("other/input.txt", "still PASS\n");
    let done = watch.wait_round(2);
    assert_eq!(done["success"], true, "{}", watch.stderr());
    let mut tests = tests_in_round(2);
    tests.sort();
    assert_eq!(
        tests,
        [
            ("//core/text:anthology_test".to_string(), true),
            ("//other:other_test".to_string(), false)
        ]
    );
    // A failing edit fails the round; the fix passes again.
    ws.write("other/input.txt", "broken\n");
    assert_eq!(watch.wait_round(3)["success"], false);
    ws.write("other/input.txt", "PASS again\n");
    assert_eq!(watch.wait_round(4)["success"], true, "{}", watch.stderr());
}

/// The body `GET /` answers with, or `None` when nothing listens.
fn fetch(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split("\r\n\r\n").nth(1).map(str::to_string)
}

#[track_caller]
fn wait_for_body(port: u16, expected: &str, watch: &Watch) {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if fetch(port).as_deref() == Some(expected) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "the server never answered {expected:?} (last: {:?})\nstderr:\n{}",
        fetch(port),
        watch.stderr()
    );
}

/// A server written as an sh_binary around python3's http.server: answers with its runfile
/// `message.txt` and writes its pid next to the workspace.
fn server_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "web/BUILD",
        r#"
genrule(name = "message", srcs = ["message.in"], outs = ["message.txt"], cmd = "cp $< $@")
sh_binary(name = "server", srcs = ["server.sh"], data = [":message"])
"#,
    );
    ws.write(
        "web/server.sh",
        r#"#!/bin/sh
echo $$ >> "$BUILD_WORKSPACE_DIRECTORY/server.pids"
# A child of its own: only stopping the whole process group ends it (PDEATHSIG does not).
sleep 600 &
echo $! >> "$BUILD_WORKSPACE_DIRECTORY/server.pids"
exec python3 -c '
import http.server, sys
body = open("web/message.txt", "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
' "$1"
"#,
    );
    std::fs::set_permissions(
        ws.root().join("web/server.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    ws.write("web/message.in", "hello one");
    ws
}

/// The pids the server fixture recorded (each server and its child).
fn server_pids(ws: &Workspace) -> Vec<i32> {
    ws.read("server.pids")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn run_mode_restarts_on_change_survives_a_broken_edit_and_stops_cleanly() {
    let ws = server_workspace();
    let port = free_port();
    let port_text = port.to_string();
    let mut watch = Watch::start(&ws, &["run", "//web:server", "--", &port_text]);
    watch.wait_round(1);
    wait_for_body(port, "hello one", &watch);

    ws.write("web/message.in", "hello two");
    watch.wait_round(2);
    wait_for_body(port, "hello two", &watch);

    // A broken BUILD file fails the round and leaves the old server answering.
    let build = ws.read("web/BUILD");
    ws.write("web/BUILD", &format!("{build}\ngenrule(name = \n"));
    let broken = watch.wait_round(3);
    assert_eq!(broken["success"], false);
    assert!(watch.stderr().contains("web/BUILD:"), "{}", watch.stderr());
    assert_eq!(fetch(port).as_deref(), Some("hello two"));

    // The fix (with a new message) recovers.
    ws.write("web/message.in", "hello three");
    ws.write("web/BUILD", &build);
    let start = Instant::now();
    while watch.rounds_done().last().map(|r| r["success"] == true) != Some(true)
        && start.elapsed() < DEADLINE
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for_body(port, "hello three", &watch);

    // Ctrl-C stops kiln and every server it started.
    let code = watch.interrupt();
    assert_eq!(code, 0, "{}", watch.stderr());
    let pids = server_pids(&ws);
    assert!(
        pids.len() >= 6,
        "three servers and their children: {pids:?}"
    );
    let start = Instant::now();
    while pids.iter().any(|p| alive(*p)) && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<&i32> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
    assert_eq!(fetch(port), None);
}

/// Processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
                && alive(*pid)
        })
        .collect()
}

#[test]
fn ctrl_c_during_a_round_stops_the_round_the_server_and_every_action() {
    let ws = server_workspace();
    let memory_scratch = ws
        .kiln(&["info"])
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("memory_scratch: "))
        .map(std::path::PathBuf::from);
    let port = free_port();
    let port_arg = port.to_string();
    let mut watch = Watch::start(&ws, &["run", "//web:server", "--", &port_arg]);
    wait_for_body(port, "hello one", &watch);
    // An action that runs until it is killed, with a marker to find it by.
    let marker = "4242.17";
    ws.write(
        "web/BUILD",
        &format!(
            r#"
genrule(name = "message", srcs = ["message.in"], outs = ["message.txt"], cmd = "sleep {marker}; cp $< $@")
sh_binary(name = "server", srcs = ["server.sh"], data = [":message"])
"#
        ),
    );
    watch.wait_action_started(2);
    let start = Instant::now();
    while processes_with(marker).is_empty() && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !processes_with(marker).is_empty(),
        "the action never started"
    );
    let code = watch.interrupt();
    assert_eq!(code, 0, "{}", watch.stderr());
    let pids = server_pids(&ws);
    let start = Instant::now();
    while (pids.iter().any(|p| alive(*p)) || !processes_with(marker).is_empty())
        && start.elapsed() < DEADLINE
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<&i32> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(left.is_empty(), "servers still running: {left:?}");
    assert_eq!(
        processes_with(marker),
        Vec::<i32>::new(),
        "actions still running"
    );
    assert_eq!(fetch(port), None);
    if let Some(dir) = memory_scratch {
        assert!(!dir.exists(), "the stopped round left {dir:?} behind");
    }
}

#[test]
fn run_mode_serves_the_examples_go_server_and_restarts_it_after_an_edit() {
    let ws = Workspace::new();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    harness::copy_tree(&examples, ws.root());
    for language in ["rust", "mixed"] {
        std::fs::remove_dir_all(ws.root().join(language)).expect("remove a language example");
    }
    let port = free_port();
    let port_arg = port.to_string();
    let mut watch = Watch::start(&ws, &["run", "//go/cmd/server", "--", &port_arg]);
    wait_for_body(port, "Hello, watcher.\n", &watch);
    ws.write("go/greet/greeting.txt", "Hi there, NAME!\n");
    wait_for_body(port, "Hi there, watcher!\n", &watch);
    assert_eq!(
        starts(&watch),
        2,
        "one start, one restart: {}",
        watch.stderr()
    );
    assert_eq!(watch.interrupt(), 0, "{}", watch.stderr());
    assert_eq!(fetch(port), None, "the server stopped with kiln");
}

/// How many times `kiln watch run` has started its program so far.
fn starts(watch: &Watch) -> usize {
    watch
        .stderr()
        .lines()
        .filter(|l| l.starts_with("INFO: Started"))
        .count()
}

#[test]
fn run_mode_puts_back_and_restarts_the_program_after_a_kiln_clean_elsewhere() {
    let ws = server_workspace();
    let port = free_port();
    let port_arg = port.to_string();
    let watch = Watch::start(&ws, &["run", "//web:server", "--", &port_arg]);
    wait_for_body(port, "hello one", &watch);
    assert_eq!(starts(&watch), 1, "{}", watch.stderr());
    // Another terminal removes kiln-out/, the program's runfiles tree with it.
    let clean = ws.kiln(&["clean"]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    let start = Instant::now();
    while starts(&watch) < 2 && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(starts(&watch), 2, "restarted once: {}", watch.stderr());
    wait_for_body(port, "hello one", &watch);
    assert!(ws.out_path("web/message.txt").exists(), "outputs put back");
    watch.assert_no_round_after(watch.rounds_done().len() as u64);
}
