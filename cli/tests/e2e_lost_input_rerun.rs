//! Regression test for the lost-input rerun report: when a cache hit's output blob turns out
//! corrupt while a dependent stages it, the producer runs again. `--events` reports both attempts
//! (the hit, then the execution flagged `"rerun": true`), and the summary counts agree with the
//! action events.

mod harness;

use harness::{summary, Workspace};

#[test]
fn lost_input_rerun_is_reported_and_counted_consistently() {
    let ws = Workspace::new();
    ws.write("p/in.txt", "unique-content-lost-input\n");
    ws.write(
        "p/BUILD",
        r#"
genrule(name = "a", srcs = ["in.txt"], outs = ["a.txt"], cmd = "tr a-z A-Z < $< > $@")
genrule(name = "b", srcs = [":a"], outs = ["b.txt"], cmd = "cat $< > $@")
"#,
    );
    ws.build_all();
    let expected = ws.read_out("p/a.txt");
    assert!(ws.tamper_with_blobs(expected.as_bytes(), |b| vec![b'#'; b.len()]) > 0);
    ws.write(
        "p/BUILD",
        &ws.read("p/BUILD").replace("cat $< > $@", "cat $< $< > $@"),
    );
    let out = ws.build_all();
    assert_eq!(ws.read_out("p/b.txt"), expected.repeat(2));
    let a_events: Vec<_> = out
        .events
        .iter()
        .filter(|e| e["type"] == "action" && e["label"] == "//p:a")
        .collect();
    assert_eq!(a_events.len(), 2, "the hit and the rerun: {a_events:?}");
    assert_eq!(a_events[0]["cache"], "local_hit");
    assert_eq!(a_events[0]["rerun"], false);
    assert_eq!(a_events[1]["cache"], "executed");
    assert_eq!(a_events[1]["rerun"], true);
    let executed = out
        .events
        .iter()
        .filter(|e| e["type"] == "action" && e["cache"] == "executed")
        .count();
    assert_eq!(
        executed as u64,
        summary(&out.events)["executed"].as_u64().unwrap()
    );
    let hits = out
        .events
        .iter()
        .filter(|e| e["type"] == "action" && e["cache"] == "local_hit")
        .count();
    assert_eq!(
        hits as u64,
        summary(&out.events)["local_hits"].as_u64().unwrap()
    );
}
