#!/usr/bin/env python3
"""Watch-mode latency: for a one-file change, the time from the write to the first action starting
and to the rebuilt output, under `kiln watch build`, against a fresh `kiln build` of the same change.

Usage: bench/watch/latency.py [--kiln PATH] [--runs N] WORKSPACE_SRC TARGET FILE OUTPUT

WORKSPACE_SRC is copied to a temp dir (e.g. examples/); FILE is the workspace-relative file to edit
(a line is appended, then removed, alternately); OUTPUT is the workspace-relative output that must
change (e.g. kiln-out/bin/core/text/anthology.txt). Prints medians and a JSON line.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time


def now_ms():
    return time.time() * 1000.0


def read_events(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def wait_for(predicate, timeout=120.0, step=0.002):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise SystemExit("timed out waiting")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kiln", default=os.environ.get("KILN_BIN", "target/release/kiln"))
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("src")
    p.add_argument("target")
    p.add_argument("file")
    p.add_argument("output")
    a = p.parse_args()
    kiln = os.path.abspath(a.kiln)
    work = tempfile.mkdtemp(prefix="kiln-watch-bench-")
    ws = os.path.join(work, "ws")
    shutil.copytree(a.src, ws, ignore=shutil.ignore_patterns("kiln-out"))
    env = dict(os.environ, KILN_CACHE_DIR=os.path.join(work, "cache"))
    events = os.path.join(work, "events.jsonl")
    subprocess.run([kiln, "build", a.target], cwd=ws, env=env, check=True, capture_output=True)
    path = os.path.join(ws, a.file)
    original = open(path).read()
    output = os.path.join(ws, a.output)

    def edit(i):
        with open(path, "w") as f:
            f.write(original + "kiln-watch-bench edit %d\n" % i)

    watch = subprocess.Popen([kiln, "watch", "build", a.target, "--events=" + events], cwd=ws, env=env,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(e.get("type") == "watch_round_done" for e in read_events(events)))
        first, rebuilt = [], []
        for i in range(a.runs):
            before = open(output, "rb").read() if os.path.exists(output) else b""
            rounds = len([e for e in read_events(events) if e.get("type") == "watch_round_done"])
            time.sleep(0.3)
            t0 = now_ms()
            edit(i)
            done = wait_for(lambda: [e for e in read_events(events) if e.get("type") == "watch_round_done"][rounds:])
            wait_for(lambda: os.path.exists(output) and open(output, "rb").read() != before)
            t_out = now_ms()
            if done[0].get("first_action_ms"):
                first.append(done[0]["first_action_ms"] - t0)
            rebuilt.append(t_out - t0)
    finally:
        watch.terminate()
        watch.wait()
    fresh = []
    for i in range(a.runs):
        edit(a.runs + i)
        t0 = now_ms()
        subprocess.run([kiln, "build", a.target], cwd=ws, env=env, check=True, capture_output=True)
        fresh.append(now_ms() - t0)
    with open(path, "w") as f:
        f.write(original)
    result = {
        "target": a.target,
        "file": a.file,
        "runs": a.runs,
        "watch_write_to_first_action_ms": statistics.median(first) if first else None,
        "watch_write_to_output_ms": statistics.median(rebuilt),
        "fresh_build_ms": statistics.median(fresh),
    }
    print("write → first action (watch): %.1f ms" % (result["watch_write_to_first_action_ms"] or -1))
    print("write → rebuilt output (watch): %.1f ms" % result["watch_write_to_output_ms"])
    print("fresh `kiln build` of the change: %.1f ms" % result["fresh_build_ms"])
    print(json.dumps(result))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
