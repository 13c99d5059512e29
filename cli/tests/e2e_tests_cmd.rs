//! `kiln test`: caching of results, failures, flags, `manual`, JUnit XML.

mod harness;

use harness::{tests, Workspace};

fn ws_with_tests() -> Workspace {
    let ws = Workspace::new();
    ws.write("t/pass.sh", "#!/bin/bash\necho \"args:$*\"\nexit 0\n");
    ws.write(
        "t/fail.sh",
        "#!/bin/bash\necho 'something went wrong: marker-4711'\nexit 1\n",
    );
    ws.write(
        "t/BUILD",
        r#"
sh_test(name = "pass", srcs = ["pass.sh"])
sh_test(name = "fail", srcs = ["fail.sh"])
sh_test(name = "hidden", srcs = ["pass.sh"], tags = ["manual"])
genrule(name = "gen", outs = ["gen.txt"], cmd = "echo gen > $@")
"#,
    );
    ws
}

#[test]
fn pass_then_cached() {
    let ws = ws_with_tests();
    let out = ws.kiln(&["test", "//t:pass"]);
    out.ok();
    let t = tests(&out.events);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0]["status"], "PASSED");
    assert_eq!(t[0]["cached"], false);
    let out = ws.kiln(&["test", "//t:pass"]);
    out.ok();
    let t = tests(&out.events);
    assert_eq!(t[0]["cached"], true);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("(cached)"), "{all}");
    // --nocache_test_results runs it again.
    let out = ws.kiln(&["test", "//t:pass", "--nocache_test_results"]);
    out.ok();
    assert_eq!(tests(&out.events)[0]["cached"], false);
}

#[test]
fn failing_test_exit_3_and_log_printed() {
    let ws = ws_with_tests();
    let out = ws.kiln(&["test", "//t:fail", "--test_output=errors"]);
    out.expect_code(3);
    assert_eq!(tests(&out.events)[0]["status"], "FAILED");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("marker-4711"), "log not printed:\n{all}");
    assert!(ws
        .read("kiln-out/testlogs/t/fail/test.log")
        .contains("marker-4711"));
    // A failed result is not served from the cache as a pass.
    let out = ws.kiln(&["test", "//t:fail"]);
    out.expect_code(3);
}

#[test]
fn test_arg_reaches_script() {
    let ws = ws_with_tests();
    ws.kiln(&["test", "//t:pass", "--test_arg=foo", "--test_arg=--bar"])
        .ok();
    let log = ws.read("kiln-out/testlogs/t/pass/test.log");
    assert!(log.contains("args:foo --bar"), "{log}");
    // Different args are a different test action: not a cached result of the first.
    let out = ws.kiln(&["test", "//t:pass", "--test_arg=baz"]);
    out.ok();
    assert_eq!(tests(&out.events)[0]["cached"], false);
    assert!(ws
        .read("kiln-out/testlogs/t/pass/test.log")
        .contains("args:baz"));
}

#[test]
fn runs_per_test_runs_twice() {
    let ws = ws_with_tests();
    let out = ws.kiln(&["test", "//t:pass", "--runs_per_test=2"]);
    out.ok();
    let t = tests(&out.events);
    assert_eq!(t.len(), 2, "{t:?}");
    let mut runs: Vec<i64> = t.iter().map(|e| e["run"].as_i64().unwrap()).collect();
    runs.sort();
    assert_eq!(runs, vec![1, 2]);
    assert!(t
        .iter()
        .all(|e| e["cached"] == false && e["status"] == "PASSED"));
}

#[test]
fn no_tests_exit_4() {
    let ws = ws_with_tests();
    ws.kiln(&["test", "//t:gen"]).expect_code(4);
}

#[test]
fn manual_excluded_from_wildcard_but_included_when_named() {
    let ws = ws_with_tests();
    let out = ws.kiln(&["test", "--", "//...", "-//t:fail"]);
    out.ok();
    let labels: Vec<String> = tests(&out.events)
        .iter()
        .map(|e| e["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(labels, vec!["//t:pass".to_string()]);
    let out = ws.kiln(&["test", "//t:hidden"]);
    out.ok();
    assert_eq!(tests(&out.events)[0]["label"], "//t:hidden");
}

#[test]
fn junit_xml_exists() {
    let ws = ws_with_tests();
    ws.kiln(&["test", "//t:pass"]).ok();
    let xml = ws.read("kiln-out/testlogs/t/pass/test.xml");
    assert!(xml.contains("<testsuite"), "{xml}");
    ws.kiln(&["test", "//t:fail"]).expect_code(3);
    let xml = ws.read("kiln-out/testlogs/t/fail/test.xml");
    assert!(xml.contains("<failure"), "{xml}");
}
