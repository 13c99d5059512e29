//! Prints the per-action overhead of the sandbox: `/bin/true` run N times (default 20,
//! `KILN_EXEC_OVERHEAD_RUNS`) in each available mode, next to a bare spawn. Only prints;
//! timings are not asserted. Measure with
//! `KILN_EXEC_OVERHEAD_RUNS=300 cargo test --release -p kiln-exec --test overhead -- --nocapture`.

mod support; // a directory, so Cargo does not build it as a test of its own

use std::time::{Duration, Instant};

use kiln_exec::{ExitKind, SandboxMode};
use support::{sandbox, with_mode, Fixture};

#[test]
fn per_action_overhead_of_bin_true() {
    let runs: usize = std::env::var("KILN_EXEC_OVERHEAD_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let fx = Fixture::temp();
    #[allow(clippy::disallowed_methods)] // The baseline: a spawn without the sandbox.
    let bare = time(runs, || {
        #[allow(clippy::disallowed_methods)] // Tests drive the real binary.
        let status = std::process::Command::new("/bin/true").status().unwrap();
        assert!(status.success());
    });
    report("bare Command::new(/bin/true)", &bare);
    let mut modes = vec![(SandboxMode::Plain, false)];
    if sandbox().mode() == SandboxMode::Namespaces {
        modes.push((SandboxMode::Namespaces, false));
        modes.push((SandboxMode::Namespaces, true));
    }
    for (mode, network) in modes {
        let sandbox = with_mode(Some(mode));
        let mut req = fx.bash("");
        req.argv = vec!["/bin/true".into()];
        req.inputs = (0..10)
            .map(|i| fx.input(&format!("pkg/in{i}.txt"), "x"))
            .collect();
        req.outputs = vec!["pkg/out.txt".into()];
        req.network = network;
        let samples = time(runs, || {
            req.scratch = fx.scratch();
            let out = sandbox.run(&req).unwrap();
            assert_eq!(out.exit, ExitKind::Code(0));
        });
        let what = format!("{mode:?} (network: {network}): /bin/true, 10 inputs, 1 output");
        report(&what, &samples);
    }
}

fn time(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    f(); // warm up (probe, page cache)
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples
}

fn report(what: &str, samples: &[Duration]) {
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let pct = |p: usize| samples[(samples.len() - 1) * p / 100];
    println!(
        "{what}: mean {mean:.2?}, p50 {:.2?}, p90 {:.2?}, max {:.2?} over {} runs",
        pct(50),
        pct(90),
        pct(100),
        samples.len()
    );
}
