//! Hermeticity of actions: undeclared inputs, read-only inputs, declared outputs, no host paths,
//! no network, and the test environment.

mod harness;

use harness::Workspace;

#[test]
fn undeclared_workspace_file_is_invisible() {
    let ws = Workspace::new();
    ws.write("other/file.txt", "secret\n");
    ws.write("other/BUILD", "");
    ws.write(
        "p/BUILD",
        r#"genrule(name = "peek", outs = ["peek.txt"], cmd = "cat other/file.txt > $@")"#,
    );
    let out = ws.kiln(&["build", "//p:peek"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("other/file.txt"),
        "should fail because the file is missing:\n{}",
        out.stderr
    );
    assert!(!ws.out_path("p/peek.txt").exists());
}

#[test]
fn declared_input_is_read_only() {
    let ws = Workspace::new();
    ws.write("p/in.txt", "original\n");
    ws.write("p/BUILD", r#"genrule(name = "w", srcs = ["in.txt"], outs = ["w.txt"], cmd = "echo x >> $<; cp $< $@")"#);
    let out = ws.kiln(&["build", "//p:w"]);
    out.expect_code(1);
    assert_eq!(ws.read("p/in.txt"), "original\n");
}

#[test]
fn missing_declared_output_is_named() {
    let ws = Workspace::new();
    ws.write("p/BUILD", r#"genrule(name = "g", outs = ["made.txt", "forgotten.txt"], cmd = "echo hi > $(location made.txt)")"#);
    let out = ws.kiln(&["build", "//p:g"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("forgotten.txt"),
        "stderr:\n{}",
        out.stderr
    );
}

#[test]
fn no_host_path_reaches_an_action() {
    let ws = Workspace::new();
    ws.write(
        "p/BUILD",
        r#"genrule(name = "env", outs = ["env.txt"], cmd = "pwd > $@; env | sort >> $@")"#,
    );
    ws.kiln(&["build", "//p:env"]).ok();
    let text = ws.read_out("p/env.txt");
    assert!(text.contains("/kiln/execroot"), "{text}");
    let root = ws.root().to_string_lossy().into_owned();
    let cache = ws.cache_dir().to_string_lossy().into_owned();
    assert!(!text.contains(&root), "workspace path leaked:\n{text}");
    assert!(!text.contains(&cache), "cache path leaked:\n{text}");
    if let Ok(home) = std::env::var("HOME") {
        if home.len() > 1 {
            assert!(!text.contains(&home), "HOME leaked:\n{text}");
        }
    }
    // The temp dirs' common parent (e.g. /tmp/.tmpXXXX) must not show up either.
    assert!(!text.contains(".tmp"), "a temp path leaked:\n{text}");
}

fn listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

#[test]
fn network_unreachable_unless_requires_network() {
    let (_listener, port) = listener();
    let ws = Workspace::new();
    ws.write(
        "p/net.sh",
        &format!("#!/bin/bash\nexec 3<>/dev/tcp/127.0.0.1/{port} && echo connected\n"),
    );
    ws.write(
        "p/BUILD",
        r#"
sh_test(name = "offline", srcs = ["net.sh"])
sh_test(name = "online", srcs = ["net.sh"], tags = ["requires-network"])
"#,
    );
    let out = ws.kiln(&["test", "//p:offline"]);
    out.expect_code(3);
    let out = ws.kiln(&["test", "//p:online"]);
    out.ok();
    assert!(ws
        .read("kiln-out/testlogs/p/online/test.log")
        .contains("connected"));
}

#[test]
fn genrule_cannot_reach_host_listener() {
    let (_listener, port) = listener();
    let ws = Workspace::new();
    ws.write("p/BUILD", &format!(r#"genrule(name = "n", outs = ["n.txt"], cmd = "exec 3<>/dev/tcp/127.0.0.1/{port}; echo connected > $@")"#));
    ws.kiln(&["build", "//p:n"]).expect_code(1);
}

#[test]
fn test_environment() {
    let ws = Workspace::new();
    ws.write("p/data.txt", "payload\n");
    ws.write(
        "p/env_test.sh",
        r#"#!/bin/bash
set -eu
echo "TEST_TMPDIR=$TEST_TMPDIR"
echo "RUNFILES_DIR=$RUNFILES_DIR"
echo "XML_OUTPUT_FILE=$XML_OUTPUT_FILE"
echo "TEST_TARGET=$TEST_TARGET"
echo "PWD=$(pwd)"
test -d "$TEST_TMPDIR"
touch "$TEST_TMPDIR/scratch"
echo "DATA=$(cat p/data.txt)"
"#,
    );
    ws.write(
        "p/BUILD",
        r#"sh_test(name = "env_test", srcs = ["env_test.sh"], data = ["data.txt"])"#,
    );
    ws.kiln(&["test", "//p:env_test"]).ok();
    let log = ws.read("kiln-out/testlogs/p/env_test/test.log");
    let get = |key: &str| -> String {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing in log:\n{log}"))
            .to_string()
    };
    assert!(!get("TEST_TMPDIR").is_empty());
    assert!(get("RUNFILES_DIR").ends_with("env_test.runfiles"), "{log}");
    assert!(get("XML_OUTPUT_FILE").ends_with("test.xml"), "{log}");
    assert_eq!(get("TEST_TARGET"), "//p:env_test");
    assert!(get("PWD").ends_with("env_test.runfiles/_main"), "{log}");
    assert_eq!(get("DATA"), "payload");
    assert!(
        !log.contains(&*ws.root().to_string_lossy()),
        "workspace path leaked into the test:\n{log}"
    );
}
