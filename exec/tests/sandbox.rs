//! End-to-end tests of the sandbox through the real helper binary. Each test asserts the
//! guarantees of the mode the host supports (namespaces here when the probe succeeds).

mod support; // a directory, so Cargo does not build it as a test of its own

use std::io::ErrorKind;
use std::sync::Mutex;
use std::time::Duration;

use kiln_exec::{ExecError, ExitKind, ExtraMount, InputFile, RunHooks, SandboxMode, EXEC_ROOT};
use support::{sandbox, text, with_mode, Fixture};

fn namespaces() -> bool {
    sandbox().mode() == SandboxMode::Namespaces
}

#[test]
fn reads_a_declared_input() {
    let fx = Fixture::temp();
    let mut req = fx.bash("cat pkg/in.txt");
    req.inputs.push(fx.input("pkg/in.txt", "hello"));
    let out = sandbox().run(&req).unwrap();
    assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello");
}

#[test]
fn undeclared_host_files_are_invisible() {
    let fx = Fixture::temp();
    let secret = fx.dir.path().join("secret.txt");
    std::fs::write(&secret, "secret").unwrap();
    let workspace = env!("CARGO_MANIFEST_DIR");
    let script = format!(
        "cat {}; ls {workspace}/Cargo.toml; ls -A /root /home /work; ls -A /tmp; echo status",
        secret.display()
    );
    let out = sandbox().run(&fx.bash(&script)).unwrap();
    let stdout = text(&out.stdout);
    if out.mode == SandboxMode::Namespaces {
        assert_eq!(stdout, "status\n", "stderr: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("No such file or directory"));
    } else {
        // Plain mode hides nothing; it only promises a cleared env and the staged cwd.
        assert!(stdout.starts_with("secret"));
    }
}

#[test]
fn writing_to_an_input_fails_and_keeps_the_source() {
    let fx = Fixture::temp();
    // `pkg/in.txt` sits next to an output (file mount); `lib/deep/x.txt` in a subtree without
    // outputs (directory mount).
    let next_to_output = fx.input("pkg/in.txt", "original");
    let in_subtree = fx.input("lib/deep/x.txt", "original");
    let sources = [next_to_output.source.clone(), in_subtree.source.clone()];
    let mut req = fx.bash(
        "for f in pkg/in.txt lib/deep/x.txt; do
           echo changed > $f && echo wrote $f
           rm -f $f && echo removed $f
         done
         touch lib/deep/new && echo created
         echo out > pkg/out.txt; echo ok > scratch-file",
    );
    req.inputs = vec![next_to_output, in_subtree];
    req.outputs = vec!["pkg/out.txt".into()];
    let out = sandbox().run(&req).unwrap();
    for source in &sources {
        assert_eq!(std::fs::read_to_string(source).unwrap(), "original");
    }
    assert!(out.outputs[0].1.is_some(), "{}", text(&out.stderr));
    if out.mode == SandboxMode::Namespaces {
        assert_eq!(text(&out.stdout), "", "stderr: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("Read-only file system"), "{stderr}");
        // The exec root itself stays writable for tools' scratch files.
        assert!(out.scratch.exec_root().join("scratch-file").exists());
    }
}

#[test]
fn outputs_are_collected_and_missing_ones_reported() {
    let fx = Fixture::temp();
    let mut req = fx.bash("mkdir -p out && echo made > out/a.txt && echo f > tree/f");
    req.outputs = vec!["out/a.txt".into(), "out/missing.txt".into()];
    req.output_dirs = vec!["tree".into()];
    let out = sandbox().run(&req).unwrap();
    assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
    let (name, path) = &out.outputs[0];
    assert_eq!(name, "out/a.txt");
    assert_eq!(
        std::fs::read_to_string(path.as_ref().unwrap()).unwrap(),
        "made\n"
    );
    assert_eq!(out.outputs[1], ("out/missing.txt".to_string(), None));
    let tree = out.output_dirs[0].1.as_ref().unwrap();
    assert_eq!(std::fs::read_to_string(tree.join("f")).unwrap(), "f\n");
    let scratch = out.scratch.path().to_path_buf();
    // The sandbox that ran it is gone already: the outcome was its last user, so dropping it
    // waits for the background removal.
    drop(out);
    assert!(!scratch.exists(), "dropping the outcome removes scratch");
}

#[test]
fn working_directory_is_the_exec_root() {
    let fx = Fixture::temp();
    let out = sandbox().run(&fx.bash("pwd; hostname")).unwrap();
    if out.mode == SandboxMode::Namespaces {
        assert_eq!(text(&out.stdout), format!("{EXEC_ROOT}\nlocalhost\n"));
    } else {
        let root = out.scratch.exec_root().canonicalize().unwrap();
        assert!(text(&out.stdout).starts_with(&format!("{}\n", root.display())));
    }
    let mut req = fx.bash("pwd");
    req.working_directory = "a/b".into();
    let out = sandbox().run(&req).unwrap();
    assert!(text(&out.stdout).ends_with("/a/b\n"));
}

#[test]
fn environment_is_exactly_the_requested_one_plus_tmpdir() {
    let fx = Fixture::temp();
    let mut req = fx.bash("");
    req.argv = vec!["/usr/bin/env".into()];
    req.env = vec![("B".into(), "two words".into()), ("A".into(), "1".into())];
    let out = sandbox().run(&req).unwrap();
    let tmp = match out.mode {
        SandboxMode::Namespaces => "/tmp".to_string(),
        SandboxMode::Plain => out.scratch.path().join("tmp").display().to_string(),
    };
    let mut vars: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    vars.sort(); // plain mode passes them sorted, namespaces mode in the given order
    assert_eq!(vars, ["A=1", "B=two words", &format!("TMPDIR={tmp}")]);
}

#[test]
fn private_network_has_loopback_but_not_the_host() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fx = Fixture::temp();
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let mut req = fx.bash(&script);
    let out = sandbox().run(&req).unwrap();
    if out.mode == SandboxMode::Namespaces {
        // Refused (not unreachable): loopback is up, but it is not the host's.
        assert_eq!(text(&out.stdout), "");
        assert!(
            text(&out.stderr).contains("Connection refused"),
            "{}",
            text(&out.stderr)
        );
    }
    req.network = true;
    req.scratch = fx.scratch();
    let out = sandbox().run(&req).unwrap();
    assert_eq!(text(&out.stdout), "connected\n", "{}", text(&out.stderr));
}

#[test]
fn the_action_runs_in_its_own_pid_namespace() {
    let fx = Fixture::temp();
    let out = sandbox()
        .run(&fx.bash("echo $$ $PPID; echo /proc/[0-9]*"))
        .unwrap();
    if out.mode == SandboxMode::Namespaces {
        // pid 1 is the sandbox's init (it reaps orphans); the action is its only child.
        assert_eq!(
            text(&out.stdout),
            "2 1\n/proc/1 /proc/2\n",
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn timeout_kills_the_whole_tree() {
    let fx = Fixture::temp();
    let mut req = fx.bash("sleep 1000 & echo $! > bg.pid; sleep 1000");
    req.timeout = Some(Duration::from_millis(300));
    let sandbox = sandbox();
    let out = sandbox.run(&req).unwrap();
    assert_eq!(out.exit, ExitKind::TimedOut);
    assert!(out.duration < Duration::from_secs(10));
    if out.mode == SandboxMode::Plain {
        let pid = std::fs::read_to_string(out.scratch.exec_root().join("bg.pid")).unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        assert!(
            stat.is_err() || stat.unwrap().contains(") Z "),
            "background sleep survived"
        );
    }
}

#[test]
fn processes_the_action_leaves_behind_are_gone_when_the_run_returns() {
    let fx = Fixture::temp();
    // A duration no other process on the host sleeps for, to find ours in /proc. The action
    // waits until the background sleep has started, and it does not hold the output pipes.
    let marker = format!("{}.{}", 900_000 + std::process::id(), line!());
    let script = format!(
        "sleep {marker} >/dev/null 2>&1 & until grep -qs {marker} /proc/$!/cmdline; do :; done"
    );
    let out = sandbox().run(&fx.bash(&script)).unwrap();
    assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
    let wanted = format!("sleep\0{marker}\0");
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c) == wanted)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(survivors.is_empty(), "still running: pids {survivors:?}");
}

#[test]
fn stdin_is_empty() {
    let fx = Fixture::temp();
    let mut req = fx.bash("cat; echo done");
    req.timeout = Some(Duration::from_secs(60));
    let out = sandbox().run(&req).unwrap();
    assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "done\n");
}

#[test]
fn exit_codes_and_signals_are_reported() {
    let fx = Fixture::temp();
    let out = sandbox().run(&fx.bash("exit 3")).unwrap();
    assert_eq!(out.exit, ExitKind::Code(3));
    let out = sandbox().run(&fx.bash("kill -TERM $$")).unwrap();
    assert_eq!(out.exit, ExitKind::Signal(15));
    let mut req = fx.bash("");
    req.argv = vec!["tools/missing".into()];
    match sandbox().run(&req) {
        Err(ExecError::Exec { argv0, source }) => {
            assert_eq!(argv0, "tools/missing");
            assert_eq!(source.kind(), ErrorKind::NotFound);
        }
        other => panic!("expected an exec error, got {other:?}"),
    }
}

#[test]
fn plain_mode_runs_with_relative_paths() {
    let fx = Fixture::temp();
    let mut tool = fx.input(
        "tools/gen.sh",
        "#!/bin/sh\ntr a-z A-Z < ../data/in.txt > out.txt\n",
    );
    tool.executable = true;
    let data = fx.input("data/in.txt", "abc");
    let source = data.source.clone();
    let mut req = fx.bash("");
    req.argv = vec!["tools/gen.sh".into()];
    req.working_directory = "pkg".into();
    req.inputs = vec![tool, data];
    req.outputs = vec!["pkg/out.txt".into()];
    for mode in [SandboxMode::Plain, SandboxMode::Namespaces] {
        if mode == SandboxMode::Namespaces && !namespaces() {
            continue;
        }
        req.scratch = fx.scratch();
        let out = with_mode(Some(mode)).run(&req).unwrap();
        assert_eq!(
            out.exit,
            ExitKind::Code(0),
            "{mode:?}: {}",
            text(&out.stderr)
        );
        let path = out.outputs[0].1.as_ref().unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), "ABC");
    }
    // Plain mode stages copies: even root writing to one leaves the source alone.
    let mut req = fx.bash("chmod u+w data/in.txt; echo changed > data/in.txt");
    req.inputs = vec![fx.input("data/in.txt", "abc")];
    let source = std::mem::replace(&mut req.inputs[0].source, source);
    std::fs::write(&source, "abc").unwrap();
    req.inputs[0].source = source.clone();
    with_mode(Some(SandboxMode::Plain)).run(&req).unwrap();
    assert_eq!(std::fs::read_to_string(&source).unwrap(), "abc");
}

#[test]
fn stderr_lines_stream_to_the_hook() {
    let fx = Fixture::temp();
    let lines = Mutex::new(Vec::new());
    let hook = |line: &str| lines.lock().unwrap().push(line.to_string());
    let hooks = RunHooks {
        on_stderr_line: Some(&hook),
        ..Default::default()
    };
    let req = fx.bash("echo one >&2; echo out; printf 'two\\nthree' >&2");
    let out = sandbox().run_with_hooks(&req, hooks).unwrap();
    assert_eq!(*lines.lock().unwrap(), ["one", "two", "three"]);
    assert_eq!(text(&out.stderr), "one\ntwo\nthree");
    assert_eq!(text(&out.stdout), "out\n");
}

#[test]
fn extra_mounts_are_read_only() {
    if !namespaces() {
        eprintln!("extra mounts need namespaces mode; skipped");
        return;
    }
    let fx = Fixture::temp();
    let toolchain = fx.dir.path().join("go");
    std::fs::create_dir_all(toolchain.join("bin")).unwrap();
    std::fs::write(toolchain.join("VERSION"), "go1.99").unwrap();
    let mut req =
        fx.bash("cat /kiln/toolchains/go/VERSION; touch /kiln/toolchains/go/x || echo ro");
    req.mounts = vec![ExtraMount {
        host: toolchain.clone(),
        sandbox_path: "/kiln/toolchains/go".into(),
    }];
    let out = sandbox().run(&req).unwrap();
    assert_eq!(text(&out.stdout), "go1.99ro\n", "{}", text(&out.stderr));
    assert!(!toolchain.join("x").exists());
}

#[test]
fn a_mount_inside_the_exec_root_sits_below_read_only_inputs_and_is_read_only() {
    if !namespaces() {
        eprintln!("extra mounts need namespaces mode; skipped");
        return;
    }
    let fx = Fixture::temp();
    let toolchain = fx.dir.path().join("rust");
    std::fs::create_dir_all(toolchain.join("bin")).unwrap();
    std::fs::write(toolchain.join("VERSION"), "1.99").unwrap();
    // An input under `external/` makes that directory a read-only mount of its own.
    let dep = fx.dir.path().join("dep.rs");
    std::fs::write(&dep, "dep").unwrap();
    let mut req = fx.bash(
        "cat external/kiln_tool/VERSION external/crates/dep.rs; \
         touch external/kiln_tool/x 2>/dev/null || echo ' ro'",
    );
    req.inputs.push(InputFile {
        path: "external/crates/dep.rs".into(),
        source: dep,
        executable: false,
        immutable: false,
    });
    req.mounts = vec![ExtraMount {
        host: toolchain.clone(),
        sandbox_path: "/kiln/execroot/external/kiln_tool".into(),
    }];
    let out = sandbox().run(&req).unwrap();
    assert_eq!(text(&out.stdout), "1.99dep ro\n", "{}", text(&out.stderr));
    assert!(!toolchain.join("x").exists());
}

#[test]
fn a_bad_request_is_a_user_error() {
    let fx = Fixture::temp();
    let mut req = fx.bash("true");
    req.outputs = vec!["../escape".into()];
    let err = sandbox().run(&req).unwrap_err();
    assert_eq!(err.kind(), kiln_exec::ErrorKind::User);
    assert!(
        !req.scratch.exists(),
        "nothing staged for a rejected request"
    );
}

#[test]
fn setup_and_helper_failures_are_environment_errors() {
    let fx = Fixture::temp();
    if namespaces() {
        let mut req = fx.bash("true");
        req.mounts = vec![ExtraMount {
            host: fx.dir.path().join("no-such-toolchain"),
            sandbox_path: "/kiln/toolchains/none".into(),
        }];
        let err = sandbox().run(&req).unwrap_err();
        assert!(matches!(err, ExecError::Setup(_)), "{err}");
        assert_eq!(err.kind(), kiln_exec::ErrorKind::Environment);
    }
    // A helper binary that does not handle `HELPER_ARG` is reported as such.
    let broken = kiln_exec::Sandbox::new(kiln_exec::SandboxConfig {
        helper: "/bin/true".into(),
        mode_override: Some(SandboxMode::Namespaces),
    });
    let err = broken.run(&fx.bash("true")).unwrap_err();
    assert!(matches!(err, ExecError::Helper { .. }), "{err}");
}

#[test]
fn a_raised_cancel_flag_kills_the_action() {
    let fx = Fixture::temp();
    let req = fx.bash("sleep 30");
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let hooks = RunHooks {
            cancel: Some(&cancel),
            ..Default::default()
        };
        sandbox().run_with_hooks(&req, hooks).unwrap()
    });
    assert_eq!(out.exit, ExitKind::Cancelled);
}

#[test]
fn plain_mode_points_exec_root_paths_at_the_staged_root() {
    let fx = Fixture::temp();
    let mut req = fx.bash("cat \"$WHERE/pkg/in.txt\"");
    req.inputs.push(fx.input("pkg/in.txt", "found"));
    req.env.push(("WHERE".to_string(), EXEC_ROOT.to_string()));
    let out = with_mode(Some(SandboxMode::Plain)).run(&req).unwrap();
    assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "found");
}

#[test]
fn actions_of_one_sandbox_share_one_private_network_namespace() {
    if !namespaces() {
        eprintln!("namespaces unavailable: nothing to share");
        return;
    }
    let sandbox = sandbox();
    let netns = |fx: &Fixture| {
        let out = sandbox.run(&fx.bash("readlink /proc/self/ns/net")).unwrap();
        assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let (first, second) = (netns(&Fixture::temp()), netns(&Fixture::temp()));
    let host = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert_eq!(
        first, second,
        "one network namespace per sandbox, joined by every action"
    );
    assert_ne!(first.trim(), host, "never the host's network namespace");
}

/// A scratch directory on `/dev/shm` when it is another file system than the fixture's and the
/// sandbox has namespaces (as on a usual Linux host); `None`, with a note, otherwise.
fn memory_scratch_on_another_fs(fx: &Fixture) -> Option<tempfile::TempDir> {
    use std::os::unix::fs::MetadataExt;
    let shm = std::path::Path::new("/dev/shm");
    let other_fs = shm.is_dir()
        && std::fs::metadata(shm).unwrap().dev() != std::fs::metadata(fx.dir.path()).unwrap().dev();
    if !namespaces() || !other_fs {
        eprintln!("skipped: needs namespaces and a /dev/shm on another file system");
        return None;
    }
    Some(tempfile::tempdir_in(shm).unwrap())
}

#[test]
fn a_large_immutable_input_from_another_file_system_is_bound_read_only_not_copied() {
    let fx = Fixture::temp();
    let Some(memory_scratch) = memory_scratch_on_another_fs(&fx) else {
        return;
    };
    let big = "x".repeat(300 << 10);
    let immutable = |mut input: kiln_exec::InputFile| {
        input.immutable = true;
        input
    };
    let mut req = fx.bash(
        "wc -c < lib/big.a; wc -c < pkg/big.rlib; wc -c < lib/src.rs; cat lib/small.a
         echo changed > lib/big.a || echo read-only 1
         echo changed > pkg/big.rlib || echo read-only 2
         mount -o remount,bind,rw lib/big.a 2>/dev/null && echo remounted
         echo changed > lib/big.a 2>/dev/null || echo read-only 3
         echo out > pkg/out.txt",
    );
    // In a subtree without outputs (directory mount) and next to an output (file mount).
    req.inputs = vec![
        immutable(fx.input("lib/big.a", &big)),
        immutable(fx.input("pkg/big.rlib", &big)),
        immutable(fx.input("lib/small.a", "small\n")),
        fx.input("lib/src.rs", &big),
    ];
    let sources: Vec<_> = req.inputs.iter().map(|i| i.source.clone()).collect();
    req.outputs = vec!["pkg/out.txt".into()];
    req.scratch = memory_scratch.path().join("action");
    let out = sandbox().run(&req).unwrap();
    assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "307200\n307200\n307200\nsmall\nread-only 1\nread-only 2\nread-only 3\n",
        "stderr: {}",
        text(&out.stderr)
    );
    // Not even by remounting: the action runs without CAP_SYS_ADMIN.
    for source in &sources[..2] {
        assert_eq!(std::fs::read_to_string(source).unwrap(), big);
    }
    let staged = |path: &str| {
        std::fs::metadata(out.scratch.exec_root().join(path))
            .unwrap()
            .len()
    };
    assert_eq!(staged("lib/big.a"), 0, "bound on an empty placeholder");
    assert_eq!(staged("pkg/big.rlib"), 0, "bound on an empty placeholder");
    assert_eq!(staged("lib/small.a"), 6, "a small input is copied");
    assert_eq!(
        staged("lib/src.rs"),
        300 << 10,
        "a file that may change is copied"
    );
}

#[test]
fn scratch_trees_of_finished_actions_are_gone_once_the_sandbox_is_dropped() {
    let fx = Fixture::temp();
    let sandbox = sandbox();
    let mut scratches = Vec::new();
    for i in 0..5 {
        let mut req = fx.bash("mkdir -p d/e && echo x > d/e/f && echo y > out.txt");
        req.scratch = fx.dir.path().join(format!("scratch-{i}"));
        req.inputs
            .push(fx.input(&format!("pkg/in{i}.txt"), "input"));
        req.outputs = vec!["out.txt".into()];
        let out = sandbox.run(&req).unwrap();
        assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
        scratches.push(out.scratch.path().to_path_buf());
        // Dropped while the sandbox lives: removed in the background.
        drop(out);
    }
    drop(sandbox);
    for scratch in &scratches {
        assert!(!scratch.exists(), "{} left behind", scratch.display());
    }
}

#[test]
fn small_immutable_inputs_are_linked_from_one_pooled_copy_that_no_action_can_write() {
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::temp();
    let Some(memory_scratch) = memory_scratch_on_another_fs(&fx) else {
        return;
    };
    let pool_dir = memory_scratch.path().join("pool");
    let sandbox = sandbox().with_input_pool(pool_dir.clone(), 1 << 20);
    let mut archive = fx.input("lib/p.a", "archive\n");
    archive.immutable = true;
    let source = archive.source.clone();
    let mut outcomes = Vec::new();
    for i in 0..2 {
        // In a read-only subtree, and next to an output (a file mount).
        let mut req = fx.bash(
            "cat lib/p.a out/p.a
             echo changed > lib/p.a || echo read-only 1
             echo changed > out/p.a || echo read-only 2
             chmod 666 lib/p.a 2>/dev/null || echo no chmod
             echo done > out/done.txt",
        );
        let mut beside_output = archive.clone();
        beside_output.path = "out/p.a".into();
        req.inputs = vec![archive.clone(), beside_output];
        req.outputs = vec!["out/done.txt".into()];
        req.scratch = memory_scratch.path().join(format!("action-{i}"));
        let out = sandbox.run(&req).unwrap();
        assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "archive\narchive\nread-only 1\nread-only 2\nno chmod\n",
            "stderr: {}",
            text(&out.stderr)
        );
        outcomes.push(out);
    }
    let staged = |i: usize, path: &str| {
        std::fs::metadata(outcomes[i].scratch.exec_root().join(path)).unwrap()
    };
    let pooled = staged(0, "lib/p.a").ino();
    assert_eq!(
        staged(1, "lib/p.a").ino(),
        pooled,
        "linked, not copied again"
    );
    assert_eq!(staged(1, "out/p.a").ino(), pooled);
    assert_eq!(staged(0, "lib/p.a").mode() & 0o777, 0o444);
    assert_eq!(std::fs::read_to_string(&source).unwrap(), "archive\n");
    // A file that may change (a source) is never pooled.
    let mut req = fx.bash("cat lib/src.go");
    req.inputs = vec![fx.input("lib/src.go", "package p\n")];
    req.scratch = memory_scratch.path().join("action-src");
    let out = sandbox.run(&req).unwrap();
    assert_eq!(text(&out.stdout), "package p\n");
    assert_eq!(
        std::fs::metadata(out.scratch.exec_root().join("lib/src.go"))
            .unwrap()
            .nlink(),
        1,
        "copied"
    );
    drop((outcomes, out, sandbox));
    assert!(!pool_dir.exists(), "the pool goes with its sandbox");
}

#[test]
fn a_program_named_by_its_path_in_a_mount_runs_in_both_modes() {
    // The Go linker runs as `<SDK mount>/pkg/tool/.../link`, with no shell in front of it.
    let fx = Fixture::temp();
    let tools = fx.dir.path().join("toolchain");
    std::fs::create_dir_all(tools.join("bin")).unwrap();
    let tool = tools.join("bin/greet");
    std::fs::write(&tool, "#!/bin/sh\necho \"hello from $0\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mount_point = format!("{EXEC_ROOT}/external/toolchain");
    let modes = if namespaces() {
        vec![SandboxMode::Plain, SandboxMode::Namespaces]
    } else {
        vec![SandboxMode::Plain]
    };
    for mode in modes {
        let mut req = fx.bash("unused");
        req.argv = vec![format!("{mount_point}/bin/greet")];
        req.mounts = vec![ExtraMount {
            host: tools.clone(),
            sandbox_path: mount_point.clone(),
        }];
        let out = with_mode(Some(mode)).run(&req).unwrap();
        assert_eq!(
            out.exit,
            ExitKind::Code(0),
            "{mode:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).starts_with("hello from "), "{mode:?}");
    }
}

/// The pid namespace: the same in two actions only if they ran in one slot.
const INIT_START: &str = "readlink /proc/self/ns/pid";

#[test]
fn an_action_in_a_reused_slot_sees_nothing_the_one_before_left() {
    if !namespaces() {
        eprintln!("slots need namespaces mode; skipped");
        return;
    }
    let fx = Fixture::temp();
    let sandbox = sandbox();
    let toolchain = fx.dir.path().join("go");
    std::fs::create_dir_all(&toolchain).unwrap();
    let mut first = fx.bash(&format!(
        "{INIT_START}; echo x > /tmp/left; echo x > /dev/shm/left; ipcmk -M 4096 >/dev/null; \
         sleep 300 & echo $$; ls /kiln/toolchains"
    ));
    first.mounts = vec![ExtraMount {
        host: toolchain,
        sandbox_path: "/kiln/toolchains/go/sdk".into(),
    }];
    let out = sandbox.run(&first).unwrap();
    assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
    let first_init = text(&out.stdout);
    assert!(
        first_init.ends_with("\n2\ngo\n"),
        "pid 2, as in a fresh namespace: {first_init}"
    );
    let second = fx.bash(&format!(
        "{INIT_START}; ls -A /tmp /dev/shm; ipcs -m | grep -c '^0x' || true; \
         ls /kiln; pgrep sleep || echo no sleep; echo $$"
    ));
    let out = sandbox.run(&second).unwrap();
    assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let (init, rest) = stdout.split_once('\n').unwrap();
    assert_eq!(
        Some(init),
        first_init.lines().next(),
        "the second action ran in the same slot"
    );
    assert_eq!(
        rest,
        "/dev/shm:\n\n/tmp:\n0\nexecroot\nno sleep\n2\n",
        "stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn an_action_cannot_leave_its_root() {
    if !namespaces() {
        eprintln!("needs namespaces mode; skipped");
        return;
    }
    let fx = Fixture::temp();
    let marker = fx.dir.path().join("host-marker.txt");
    std::fs::write(&marker, "host").unwrap();
    let marker = marker.display();
    // The classic escape: a user namespace of its own regains CAP_SYS_CHROOT, and a chroot
    // that keeps the working directory outside the new root walks out of the first. Raising
    // the limit on user namespaces first must fail too.
    let script = fx.dir.path().join("escape.py");
    std::fs::write(
        &script,
        format!(
            "import os\nos.makedirs('/tmp/x', exist_ok=True)\nos.chroot('/tmp/x')\n\
             os.chdir('../../../../../../../..')\nos.chroot('.')\nprint(open('{marker}').read())\n"
        ),
    )
    .unwrap();
    let mut escape_input = fx.input("escape.py", "");
    escape_input.source = script;
    let mut req = fx.bash(&format!(
        "echo 100 > /proc/sys/user/max_user_namespaces 2>/dev/null && echo sysctl; \
             echo 0 > /proc/sys/user/max_ipc_namespaces 2>/dev/null && echo ipc-sysctl; \
             unshare -U true 2>/dev/null && echo userns; \
             unshare -Ur python3 escape.py 2>/dev/null && echo escaped; \
             python3 escape.py 2>/dev/null && echo escaped-without-userns; \
             unshare -m true 2>/dev/null && echo mountns; \
             chroot / true 2>/dev/null && echo chroot; \
             ls /proc/1/root/ 2>/dev/null && echo init-root; \
             cat {marker} 2>/dev/null && echo read-host; \
             mount -t tmpfs none /tmp 2>/dev/null && echo mount; \
             echo done"
    ));
    req.inputs.push(escape_input);
    let out = sandbox().run(&req).unwrap();
    assert_eq!(text(&out.stdout), "done\n", "{}", text(&out.stderr));
}

#[test]
fn an_action_that_changes_init_retires_its_slot() {
    if !namespaces() {
        eprintln!("slots need namespaces mode; skipped");
        return;
    }
    let fx = Fixture::temp();
    let sandbox = sandbox();
    // Same uid: prlimit, renice and taskset on pid 1 are allowed, and the next action would
    // inherit what they did.
    for change in [
        "prlimit --pid 1 --nofile=64:64",
        "renice -n 5 -p 1 >/dev/null",
        "chrt -b -p 0 1",
    ] {
        let first = fx.bash(&format!("{INIT_START}; {change} && echo changed"));
        let out = sandbox.run(&first).unwrap();
        assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
        let first_init = text(&out.stdout);
        assert!(first_init.ends_with("changed\n"), "{change}: {first_init}");
        let out = sandbox
            .run(&fx.bash(&format!("{INIT_START}; ulimit -n; nice; chrt -p $$")))
            .unwrap();
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_ne!(
            lines[0],
            first_init.lines().next().unwrap(),
            "{change}: a fresh slot"
        );
        assert_ne!(lines[1], "64", "{change}: {stdout}");
        assert_eq!(lines[2], "0", "{change}: {stdout}");
        assert!(lines[3].contains("SCHED_OTHER"), "{change}: {stdout}");
    }
}

#[test]
fn a_slot_serves_on_after_an_action_that_could_not_start() {
    if !namespaces() {
        eprintln!("slots need namespaces mode; skipped");
        return;
    }
    let fx = Fixture::temp();
    let sandbox = sandbox();
    let first = sandbox.run(&fx.bash(INIT_START)).unwrap();
    let mut missing = fx.bash("");
    missing.argv = vec!["/bin/no-such-program".into()];
    assert!(matches!(sandbox.run(&missing), Err(ExecError::Exec { .. })));
    // Dispositions ignored by kiln's process (`nohup`, the Rust runtime's SIGPIPE) are not
    // the action's: its shell reports them as default.
    let out = sandbox
        .run(&fx.bash(&format!("{INIT_START}; trap -p; echo end")))
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        format!("{}end\n", text(&first.stdout)),
        "the same slot, and no trap inherited"
    );
}

#[test]
fn system_directories_are_read_only() {
    if !namespaces() {
        eprintln!("plain mode leaves the host writable; skipped");
        return;
    }
    let fx = Fixture::temp();
    let out = sandbox()
        .run(&fx.bash(
            "for d in /usr /etc /bin /lib /dev /; do \
               touch $d/kiln-probe 2>/dev/null && echo wrote $d; done; \
             mkdir /new 2>/dev/null && echo made /new; echo done",
        ))
        .unwrap();
    assert_eq!(text(&out.stdout), "done\n", "{}", text(&out.stderr));
    assert!(!std::path::Path::new("/usr/kiln-probe").exists());
}

#[test]
fn outputs_written_in_place_land_in_the_output_files_directory() {
    let fx = Fixture::temp();
    let sandbox = sandbox();
    let files = fx.dir.path().join("output-files");
    // `>` opens with O_TRUNC and writes in place; `out/untouched.txt` is never written;
    // `out/b.txt` is written, then read back through its path in the exec root.
    let mut req = fx.bash("echo linked > out/a.txt && echo b > out/b.txt && cat out/b.txt");
    req.outputs = vec![
        "out/a.txt".into(),
        "out/untouched.txt".into(),
        "out/b.txt".into(),
    ];
    req.output_files_dir = Some(files.clone());
    let out = sandbox.run(&req).unwrap();
    assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "b\n");
    let host = |i: usize| out.outputs[i].1.clone();
    if sandbox.mode() == SandboxMode::Namespaces {
        let a = host(0).expect("a written output is produced");
        assert!(
            a.starts_with(&files),
            "{} is not in {}",
            a.display(),
            files.display()
        );
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "linked\n");
        assert!(host(2).unwrap().starts_with(&files));
        // Created for it, but not written: not produced.
        assert_eq!(out.outputs[1], ("out/untouched.txt".to_string(), None));
    } else {
        // Plain mode has no bind mounts: outputs stay in the staged tree.
        let a = host(0).unwrap();
        assert!(a.starts_with(out.scratch.path()), "{}", a.display());
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "linked\n");
        assert_eq!(out.outputs[1].1, None);
    }
    assert_eq!(std::fs::read_to_string(host(2).unwrap()).unwrap(), "b\n");
    // Removed with the scratch tree.
    drop(out);
    drop(sandbox);
    assert!(!files.exists(), "{} left behind", files.display());
}

#[test]
fn an_output_written_in_place_cannot_be_replaced_by_a_rename() {
    if !namespaces() {
        eprintln!("output files are bound only in namespaces mode; skipped");
        return;
    }
    let fx = Fixture::temp();
    let mut req = fx.bash("echo new > out/tmp && mv -f out/tmp out/a.txt");
    req.outputs = vec!["out/a.txt".into()];
    req.output_files_dir = Some(fx.dir.path().join("output-files"));
    let out = sandbox().run(&req).unwrap();
    // The bound file is a mount point: the rename fails (a tool that works so must not ask
    // for its outputs in place), and the output counts as not produced.
    assert_ne!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
    assert_eq!(out.outputs[0].1, None);
}

#[test]
fn outputs_written_in_place_as_tools_write_them() {
    if !namespaces() {
        eprintln!("output files are bound only in namespaces mode; skipped");
        return;
    }
    let fx = Fixture::temp();
    let files = fx.dir.path().join("output-files");
    // The Go linker's way: remove the output (which fails on a mount point, and is ignored),
    // then open it with O_TRUNC and write. Then: bytes dated at the epoch afterwards (as an
    // archiver with SOURCE_DATE_EPOCH=0 dates them), an empty output made with O_TRUNC, and one
    // only appended nothing to, which counts as not produced.
    let mut req = fx.bash(
        "rm -f out/link 2>/dev/null; printf linked > out/link; \
         printf dated > out/dated && touch -d @0 out/dated; \
         : > out/empty; : >> out/appended",
    );
    req.outputs = ["out/link", "out/dated", "out/empty", "out/appended"]
        .map(String::from)
        .to_vec();
    req.output_files_dir = Some(files.clone());
    let out = sandbox().run(&req).unwrap();
    assert_eq!(out.exit, ExitKind::Code(0), "{}", text(&out.stderr));
    let read = |i: usize| {
        let host = out.outputs[i].1.clone().unwrap_or_else(|| {
            panic!("{} not produced", out.outputs[i].0);
        });
        assert!(host.starts_with(&files), "{}", host.display());
        std::fs::read_to_string(host).unwrap()
    };
    assert_eq!(read(0), "linked");
    assert_eq!(read(1), "dated");
    assert_eq!(read(2), "");
    assert_eq!(out.outputs[3], ("out/appended".to_string(), None));

    // A directory that is not empty (left by a killed build) is refused, as a scratch tree is.
    let mut again = fx.bash("printf x > out/link");
    again.outputs = vec!["out/link".into()];
    let stale = fx.dir.path().join("stale-output-files");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("0"), b"old").unwrap();
    again.output_files_dir = Some(stale.clone());
    assert!(matches!(
        sandbox().run(&again),
        Err(ExecError::ScratchNotEmpty { .. })
    ));
    // Refused, not taken over: what was there stays.
    assert_eq!(std::fs::read(stale.join("0")).unwrap(), b"old");
}
