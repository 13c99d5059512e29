#!/usr/bin/env python3
"""hyperfine, with the commands' runs interleaved: one run of each command per round.

Usage (the subset of hyperfine's options the bench scripts use, in hyperfine's syntax):

    bench/hyperfine_interleaved.py --runs N [--warmup W] [--style S]
        [--export-json OUT.json] [--export-markdown OUT.md]
        -n NAME [--prepare CMD] COMMAND  [-n NAME [--prepare CMD] COMMAND ...]

Why: plain hyperfine times all runs of the first command, then all runs of the next. The
benchmark machines are VMs whose CPU throughput drifts by up to 2x over seconds to minutes (a
single-threaded spin loop counts 7.2 to 13.8 million iterations per second on the same machine
within a minute; see docs/benchmarks.md), so a ratio of two blocks of runs taken minutes apart
measures the neighbours as much as the tools. Here every round runs each command once, through
hyperfine itself (`--runs 1`, with the command's `--prepare`), and the order rotates from round
to round so that no command always runs first. Both tools see the same drift.

The JSON written has hyperfine's shape (`results[].command/mean/stddev/median/min/max/user/
system/times/exit_codes`) plus `"interleaved": true`, so bench/ratios.py reads it as before and
can also pair the k-th runs of two commands (same round).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile


def parse(argv):
    """Options and the (name, prepare, command) list from hyperfine-style arguments."""
    options = {"runs": 10, "warmup": 0, "style": None, "json": None, "markdown": None}
    names, prepares, commands = [], [], []
    value_options = {
        "--runs": "runs",
        "-r": "runs",
        "--warmup": "warmup",
        "-w": "warmup",
        "--style": "style",
        "--export-json": "json",
        "--export-markdown": "markdown",
    }
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in value_options or arg in ("-n", "--command-name", "--prepare", "-p"):
            if i + 1 >= len(argv):
                sys.exit(f"hyperfine_interleaved: {arg} needs a value")
            value = argv[i + 1]
            if arg in ("-n", "--command-name"):
                names.append(value)
            elif arg in ("--prepare", "-p"):
                prepares.append(value)
            else:
                key = value_options[arg]
                options[key] = int(value) if key in ("runs", "warmup") else value
            i += 2
        elif arg.startswith("-"):
            sys.exit(f"hyperfine_interleaved: unsupported option {arg}")
        else:
            commands.append(arg)
            i += 1
    if not commands:
        sys.exit(__doc__)
    if len(names) not in (0, len(commands)) or len(prepares) not in (0, 1, len(commands)):
        sys.exit("hyperfine_interleaved: give one -n per command and one --prepare per command (or one for all)")
    names = names or commands
    if len(prepares) == 1:
        prepares = prepares * len(commands)
    prepares = prepares or [None] * len(commands)
    return options, list(zip(names, prepares, commands))


def run_once(name, prepare, command, style):
    """One timed run through hyperfine; returns its JSON result (times, user, system, exit code)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = out.name
    try:
        args = ["hyperfine", "--runs", "1", "--export-json", path, "-n", name]
        if style:
            args += ["--style", style]
        if prepare:
            args += ["--prepare", prepare]
        subprocess.run(args + [command], check=True)
        with open(path, encoding="utf-8") as f:
            return json.load(f)["results"][0]
    finally:
        os.unlink(path)


def summary(name, runs):
    times = [t for run in runs for t in run["times"]]
    return {
        "command": name,
        "mean": statistics.mean(times),
        "stddev": statistics.stdev(times) if len(times) > 1 else None,
        "median": statistics.median(times),
        "user": statistics.mean(run["user"] for run in runs),
        "system": statistics.mean(run["system"] for run in runs),
        "min": min(times),
        "max": max(times),
        "times": times,
        "exit_codes": [code for run in runs for code in run.get("exit_codes", [0])],
    }


def seconds(value):
    return f"{value * 1000:.1f}" if value < 1 else f"{value:.3f}"


def markdown(results):
    unit_ms = all(r["mean"] < 1 for r in results)
    unit = "ms" if unit_ms else "s"
    scale = 1000 if unit_ms else 1
    fastest = min(r["mean"] for r in results)
    lines = [
        f"| Command | Mean [{unit}] | Min [{unit}] | Max [{unit}] | Relative |",
        "|:---|---:|---:|---:|---:|",
    ]
    for r in results:
        sd = r["stddev"] or 0.0
        lines.append(
            f"| `{r['command']}` | {r['mean'] * scale:.3f} ± {sd * scale:.3f} "
            f"| {r['min'] * scale:.3f} | {r['max'] * scale:.3f} | {r['mean'] / fastest:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv):
    options, benchmarks = parse(argv[1:])
    count = len(benchmarks)
    for _ in range(options["warmup"]):
        for name, prepare, command in benchmarks:
            if prepare:
                subprocess.run(["sh", "-c", prepare], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["sh", "-c", command], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    runs = {name: [] for name, _, _ in benchmarks}
    for round_index in range(options["runs"]):
        order = [benchmarks[(round_index + k) % count] for k in range(count)]
        print(f"== round {round_index + 1}/{options['runs']}", flush=True)
        for name, prepare, command in order:
            runs[name].append(run_once(name, prepare, command, options["style"]))
    results = [summary(name, runs[name]) for name, _, _ in benchmarks]
    if options["json"]:
        with open(options["json"], "w", encoding="utf-8") as f:
            json.dump({"interleaved": True, "results": results}, f, indent=2)
    table = markdown(results)
    if options["markdown"]:
        with open(options["markdown"], "w", encoding="utf-8") as f:
            f.write(table)
    print(table, end="")


if __name__ == "__main__":
    main(sys.argv)
