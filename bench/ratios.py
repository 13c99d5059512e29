#!/usr/bin/env python3
"""Kiln / anchor ratios from hyperfine JSON exports, against the issues' targets.

Usage: bench/ratios.py OUT.md JSON[,JSON...] "LABEL=KILN_NAME/ANCHOR_NAME<=TARGET" ...

Each pair names two commands (hyperfine's `-n` names) found in the JSON files; the table gives
both means, the ratio of the means with its propagated uncertainty, the target and whether it is
met: "yes" when the ratio plus its uncertainty is at or under the target, "at the line" when
only the ratio itself is, "no" otherwise; with per-round pairs, the per-round median must be
at or under the target too. Writes OUT.md and prints it. A pair whose commands were not timed (a
scenario left out of the run) is skipped. When both commands come from one run of
bench/hyperfine_interleaved.py (their k-th runs were taken in the same round), the table also
gives the median of the per-round ratios, which the machine's drift between rounds affects least.
"""

import json
import math
import statistics
import sys


def verdict(ratio, spread, paired, target):
    """Met with the noise taken into account, met only by the mean, or not met."""
    if ratio > target or (paired is not None and paired > target):
        return "no"
    if ratio + spread <= target:
        return "yes"
    return "at the line (within one σ)"


def load(paths):
    """Command name -> (mean, stddev, per-round times or None, file) over every JSON file given;
    the per-round times only for interleaved runs."""
    results = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            continue
        interleaved = data.get("interleaved", False)
        for result in data.get("results", []):
            times = result.get("times") if interleaved else None
            results[result["command"]] = (
                result["mean"], result.get("stddev") or 0.0, times, path
            )
    return results


def paired_median(kiln, anchor):
    """Median of the per-round Kiln/anchor ratios, or None if the runs were not interleaved."""
    (_, _, ktimes, kpath), (_, _, atimes, apath) = kiln, anchor
    if not ktimes or not atimes or kpath != apath or len(ktimes) != len(atimes):
        return None
    return statistics.median(k / a for k, a in zip(ktimes, atimes))


def seconds(value):
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    out, json_paths, pairs = argv[1], argv[2].split(","), argv[3:]
    results = load(json_paths)
    lines = [
        "| scenario | Kiln | anchor | Kiln/anchor | per-round median | target | met? |",
        "|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for pair in pairs:
        label, rest = pair.split("=", 1)
        names, target = rest.split("<=")
        kiln, anchor = names.split("/")
        if kiln not in results or anchor not in results:
            continue
        (km, ks, _, _), (am, as_, _, _) = results[kiln], results[anchor]
        paired = paired_median(results[kiln], results[anchor])
        paired_text = f"{paired:.3f}" if paired is not None else "-"
        ratio = km / am
        spread = ratio * math.sqrt((ks / km) ** 2 + (as_ / am) ** 2)
        met = verdict(ratio, spread, paired, float(target))
        lines.append(
            f"| {label} | {seconds(km)} ± {seconds(ks)} | {seconds(am)} ± {seconds(as_)} "
            f"| **{ratio:.3f}** ± {spread:.3f} | {paired_text} | ≤ {target} | {met} |"
        )
    text = "\n".join(lines) + "\n"
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main(sys.argv)
