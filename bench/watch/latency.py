#!/usr/bin/env python3
"""Watch-mode latency: for a one-file change, the time from the write to the first action starting
and to the rebuilt output, under `kiln watch build`, against a fresh `kiln build` of the same change.

Usage: bench/watch/latency.py [--kiln PATH] [--runs N] [--replace OLD --with NEW] WORKSPACE_SRC TARGET
       FILE OUTPUT

WORKSPACE_SRC is copied to a temp dir (e.g. examples/); FILE is the workspace-relative file to edit
(by default a line is appended; with --replace, the first OLD becomes NEW with its `%d` replaced by
the edit's number, so source files stay valid: `--replace '"version:"' --with '"version %d:"'`);
OUTPUT is the workspace-relative output that must
change (e.g. kiln-out/bin/core/text/anthology.txt). Prints medians and a JSON line.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time


def now_ms():
    return time.time() * 1000.0


def read_events(path):
    events = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass  # the last line may be half written
    except FileNotFoundError:
        pass
    return events


def stat_key(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


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
    p.add_argument("--cache", help="KILN_CACHE_DIR to use (default: a fresh one in the temp dir)")
    p.add_argument("--replace", help="text in FILE to replace on each edit")
    p.add_argument("--with", dest="replacement", help="its replacement; %%d is the edit number")
    p.add_argument("src")
    p.add_argument("target")
    p.add_argument("file")
    p.add_argument("output")
    a = p.parse_args()
    kiln = os.path.abspath(a.kiln)
    work = tempfile.mkdtemp(prefix="kiln-watch-bench-")
    ws = os.path.join(work, "ws")
    shutil.copytree(a.src, ws, ignore=shutil.ignore_patterns("kiln-out"))
    env = dict(os.environ, KILN_CACHE_DIR=os.path.abspath(a.cache) if a.cache else os.path.join(work, "cache"))
    events = os.path.join(work, "events.jsonl")
    subprocess.run([kiln, "build", a.target], cwd=ws, env=env, check=True, capture_output=True)
    path = os.path.join(ws, a.file)
    original = open(path).read()
    output = os.path.join(ws, a.output)

    if a.replace and a.replace not in original:
        raise SystemExit("--replace text not found in " + a.file)

    # A per-invocation nonce: with a shared --cache, edits repeated from an earlier run would be
    # cache hits and measure nothing.
    nonce = "%x" % int(time.time() * 1000)

    def edit(i):
        tag = "%s-%d" % (nonce, i)
        with open(path, "w") as f:
            if a.replace:
                f.write(original.replace(a.replace, a.replacement.replace("%d", tag), 1))
            else:
                f.write(original + "kiln-watch-bench edit %s\n" % tag)

    watch = subprocess.Popen([kiln, "watch", "build", a.target, "--events=" + events], cwd=ws, env=env,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(e.get("type") == "watch_round_done" for e in read_events(events)), step=0.05)
        first, rebuilt, executed, overhead = [], [], [], []
        for i in range(a.runs):
            before = open(output, "rb").read() if os.path.exists(output) else b""
            before_stat = stat_key(output)
            rounds = len([e for e in read_events(events) if e.get("type") == "watch_round_done"])
            time.sleep(0.3)
            t0 = now_ms()
            edit(i)
            # Poll the output's stat (cheap), and read it only once that moved: reading a
            # multi-megabyte binary every few milliseconds would compete with the build.
            wait_for(lambda: stat_key(output) not in (None, before_stat)
                     and open(output, "rb").read() != before, step=0.005)
            t_out = now_ms()
            done = wait_for(lambda: [e for e in read_events(events) if e.get("type") == "watch_round_done"][rounds:],
                            step=0.05)
            # The round's own cost beyond its actions: the rebuilt-output latency less the time
            # its executed actions ran (they run one after the other for a one-file change).
            all_events = read_events(events)
            starts = [k for k, e in enumerate(all_events) if e.get("type") == "watch_round"]
            this_round = all_events[starts[rounds]:] if len(starts) > rounds else []
            action_ms = sum(e.get("duration_ms", 0) for e in this_round
                            if e.get("type") == "action" and e.get("cache") == "executed")
            if not done[0].get("executed"):
                raise SystemExit("round %d executed nothing: the edit was a cache hit" % done[0].get("round", 0))
            executed.append(len(done[0]["executed"]))
            if done[0].get("first_action_ms"):
                first.append(done[0]["first_action_ms"] - t0)
            rebuilt.append(t_out - t0)
            overhead.append(t_out - t0 - action_ms)
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
        "watch_round_overhead_ms": statistics.median(overhead),
        "executed_per_round": executed,
    }
    print("write → first action (watch): %.1f ms" % (result["watch_write_to_first_action_ms"] or -1))
    print("write → rebuilt output (watch): %.1f ms" % result["watch_write_to_output_ms"])
    print("fresh `kiln build` of the change: %.1f ms" % result["fresh_build_ms"])
    print("watch round beyond its actions (settle, events, load, analysis, keys, outputs): %.1f ms"
          % result["watch_round_overhead_ms"])
    print(json.dumps(result))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
