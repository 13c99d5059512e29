//! `kiln test` flags and attributes on the real binary: `--test_filter`, `--test_output=all`,
//! `timeout` giving TIMEOUT, `exclusive` tests running alone, the runfiles environment
//! (`TEST_SRCDIR`), and the JUnit XML's content.

mod harness;

use harness::Workspace;

fn script(ws: &Workspace, path: &str, body: &str) {
    ws.write(path, &format!("#!/bin/bash\nset -euo pipefail\n{body}\n"));
    std::fs::set_permissions(
        ws.root().join(path),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
}

#[test]
fn test_filter_reaches_the_test_and_test_output_all_prints_passing_logs() {
    let ws = Workspace::new();
    script(
        &ws,
        "t/filter.sh",
        r#"echo "filter=${TESTBRIDGE_TEST_ONLY:-none}""#,
    );
    ws.write(
        "t/BUILD",
        r#"sh_test(name = "filter", srcs = ["filter.sh"])"#,
    );
    let out = ws.kiln(&[
        "test",
        "//t:filter",
        "--test_filter=Only.This",
        "--test_output=all",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("filter=Only.This"),
        "the passing test's log is shown with --test_output=all:\n{}",
        out.stderr
    );
    let quiet = ws.kiln(&["test", "//t:filter", "--test_filter=Other"]);
    assert!(
        !quiet.stderr.contains("filter=Other"),
        "passing logs are hidden by default"
    );
    let log =
        std::fs::read_to_string(ws.root().join("kiln-out/testlogs/t/filter/test.log")).unwrap();
    assert!(
        log.contains("filter=Other"),
        "a new filter is a new run: {log}"
    );
}

#[test]
fn a_test_past_its_timeout_is_reported_as_timeout() {
    let ws = Workspace::new();
    script(&ws, "t/slow.sh", "sleep 120");
    ws.write(
        "t/BUILD",
        r#"sh_test(name = "slow", srcs = ["slow.sh"], timeout = "short")"#,
    );
    // `short` is 60 s; Bazel's --test_timeout overrides it.
    let out = ws.kiln(&["test", "//t:slow", "--test_timeout=1"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("TIMEOUT"), "{}", out.stderr);
    let tests = harness::tests(&out.events);
    assert_eq!(tests[0]["status"], "TIMEOUT");
}

#[test]
fn the_test_environment_and_junit_xml() {
    let ws = Workspace::new();
    ws.write("t/data.txt", "payload\n");
    script(
        &ws,
        "t/env.sh",
        r#"test -d "$TEST_SRCDIR"
test "$TEST_SRCDIR" = "$RUNFILES_DIR"
grep -q payload "$TEST_SRCDIR/_main/t/data.txt"
test -n "$XML_OUTPUT_FILE"
echo "target=$TEST_TARGET""#,
    );
    script(&ws, "t/fail.sh", "echo about to fail; exit 3");
    ws.write(
        "t/BUILD",
        r#"
sh_test(name = "env", srcs = ["env.sh"], data = ["data.txt"])
sh_test(name = "fail", srcs = ["fail.sh"])
"#,
    );
    let out = ws.kiln(&["test", "//t:env"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let xml = std::fs::read_to_string(ws.root().join("kiln-out/testlogs/t/env/test.xml")).unwrap();
    assert!(
        xml.contains("<testsuite name=\"//t:env\" tests=\"1\" failures=\"0\""),
        "{xml}"
    );
    assert!(
        xml.contains("target=//t:env"),
        "the log is in the XML: {xml}"
    );
    let out = ws.kiln(&["test", "//t:fail"]);
    assert_eq!(out.code, 3);
    let xml = std::fs::read_to_string(ws.root().join("kiln-out/testlogs/t/fail/test.xml")).unwrap();
    assert!(
        xml.contains("failures=\"1\"") && xml.contains("<failure message=\"exited with code 3\""),
        "{xml}"
    );
}

#[test]
fn exclusive_tests_run_alone() {
    let ws = Workspace::new();
    // Each test records when it ran; the exclusive one must not overlap any other.
    for name in ["a", "b", "c"] {
        script(
            &ws,
            &format!("t/{name}.sh"),
            "date +%s%N; sleep 0.3; date +%s%N",
        );
    }
    ws.write(
        "t/BUILD",
        r#"
sh_test(name = "a", srcs = ["a.sh"])
sh_test(name = "b", srcs = ["b.sh"], tags = ["exclusive"])
sh_test(name = "c", srcs = ["c.sh"])
"#,
    );
    let out = ws.kiln(&["test", "//...", "--jobs=3"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let span = |name: &str| -> (u128, u128) {
        let log = std::fs::read_to_string(
            ws.root()
                .join(format!("kiln-out/testlogs/t/{name}/test.log")),
        )
        .unwrap();
        let times: Vec<u128> = log.lines().map(|l| l.trim().parse().unwrap()).collect();
        (times[0], times[1])
    };
    let (b_start, b_end) = span("b");
    for other in ["a", "c"] {
        let (start, end) = span(other);
        assert!(
            end <= b_start || start >= b_end,
            "`{other}` overlapped the exclusive test"
        );
    }
}

#[test]
fn size_and_timeout_attributes_set_the_time_limit_as_bazel_does() {
    let ws = Workspace::new();
    script(
        &ws,
        "t/limit.sh",
        r#"echo "limit=$TEST_TIMEOUT size=$TEST_SIZE""#,
    );
    ws.write(
        "t/BUILD",
        r#"
sh_test(name = "default", srcs = ["limit.sh"])
sh_test(name = "small", srcs = ["limit.sh"], size = "small")
sh_test(name = "large", srcs = ["limit.sh"], size = "large")
sh_test(name = "long", srcs = ["limit.sh"], size = "small", timeout = "long")
"#,
    );
    let out = ws.kiln(&["test", "//t:all", "--test_output=all"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = |name: &str| {
        std::fs::read_to_string(
            ws.root()
                .join(format!("kiln-out/testlogs/t/{name}/test.log")),
        )
        .unwrap()
    };
    // No size is `medium` (300 s); `timeout` wins over `size`.
    assert!(
        log("default").contains("limit=300 size=medium"),
        "{}",
        log("default")
    );
    assert!(
        log("small").contains("limit=60 size=small"),
        "{}",
        log("small")
    );
    assert!(
        log("large").contains("limit=900 size=large"),
        "{}",
        log("large")
    );
    assert!(
        log("long").contains("limit=900 size=small"),
        "{}",
        log("long")
    );

    ws.write(
        "t/BUILD",
        "sh_test(name = \"default\", srcs = [\"limit.sh\"])\nsh_test(\n    name = \"bad\",\n    srcs = [\"limit.sh\"],\n    size = \"huge\",\n)\n",
    );
    let out = ws.kiln(&["test", "//t:all"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("t/BUILD:2:1")
            && out
                .stderr
                .contains("expected one of `small`, `medium`, `large`, `enormous`, got `huge`"),
        "{}",
        out.stderr
    );
}
