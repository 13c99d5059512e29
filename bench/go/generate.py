#!/usr/bin/env python3
"""Generates a Go module of N library packages (default 500) and 10 commands, with rules_go BUILD
files, for benchmarking Kiln against `go build`.

Layout: packages p000..p{N-1} under lib/, in 10 layers; each package of layer L > 0 imports three
packages of layer L-1 (and `fmt`, `strings`, `sort`). p000 is the widely imported base: every
package of layer 1 imports it. cmd/c0..c9 each import the top layer's packages i, i+10, ...
`Base()` in p000 is marked //go:noinline: the benchmark's body edit changes its body only.

Each package also gets `work.go`: UNITS (default 6) generated record types, each with a method
and a formatting function that `Value` calls, about 40 lines each, so that a package is ~270
lines, the median of golang.org/x/tools v0.52.0's 215 packages (non-test files; its mean is ~730).
UNITS=0 gives the packages of earlier sessions: a 20-line `Value` and nothing else, whose compile
costs `go build` almost nothing, so that a body edit there measures the links alone.

Usage: [UNITS=K] generate.py OUT_DIR [N]
"""
import os
import sys

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
module = "example.com/bench"
layers = 10
per_layer = n // layers
units = int(os.environ.get("UNITS", "6"))


def work_file(pkg, index):
    """`work.go` of package `pkg`: `units` record types with a method and a formatting function,
    and `work`, which runs them all (so that the linker keeps them, as a real program would)."""
    parts = [f"package {pkg}\n\nimport (\n\t\"fmt\"\n\t\"sort\"\n\t\"strings\"\n)\n"]
    for j in range(units):
        parts.append(f"""
// Record{j} is a generated record.
type Record{j} struct {{
	ID    int
	Name  string
	Tags  []string
	Score float64
}}

// Normalize cleans the record's name and tags.
func (r *Record{j}) Normalize() {{
	r.Name = strings.ToLower(strings.TrimSpace(r.Name))
	seen := make(map[string]bool, len(r.Tags))
	out := r.Tags[:0]
	for _, t := range r.Tags {{
		t = strings.TrimSpace(t)
		if t == "" || seen[t] {{
			continue
		}}
		seen[t] = true
		out = append(out, t)
	}}
	sort.Strings(out)
	r.Tags = out
}}

// Summarize{j} formats the records scoring at least min.
func Summarize{j}(rs []Record{j}, min float64) (string, error) {{
	var b strings.Builder
	for i := range rs {{
		r := &rs[i]
		r.Normalize()
		switch {{
		case r.Score < 0:
			return "", fmt.Errorf("record %d: negative score %v", r.ID, r.Score)
		case r.Score < min:
			continue
		}}
		fmt.Fprintf(&b, "%d:%s:%s:%.2f\\n", r.ID+{index * 31 + j}, r.Name, strings.Join(r.Tags, ","), r.Score)
	}}
	return b.String(), nil
}}
""")
    calls = "".join(
        f"\tif s, err := Summarize{j}([]Record{j}{{{{ID: x, Name: \" N \", Tags: []string{{\"b\", \"a\"}}, Score: 1}}}}, 0); err == nil {{\n\t\tn += len(s)\n\t}}\n"
        for j in range(units)
    )
    parts.append(f"\nfunc work(x int) int {{\n\tn := 0\n{calls}\treturn n\n}}\n")
    return "".join(parts)



def write(path, text):
    full = os.path.join(out, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(text)


write("kiln.toml", "")
write("go.mod", f"module {module}\n\ngo 1.22\n")

name = lambda i: f"p{i:03d}"
for i in range(n):
    layer = i // per_layer
    deps = []
    if layer > 0:
        prev = [(layer - 1) * per_layer + k for k in range(per_layer)]
        deps = sorted({prev[(i * 7 + k * 13) % per_layer] for k in range(3)})
        if layer == 1:
            deps = sorted(set(deps) | {0})
    imports = "".join(f'\t"{module}/lib/{name(d)}"\n' for d in deps)
    calls = " + ".join([f"{name(d)}.Value(x)" for d in deps] or ["len(strings.Repeat(\"a\", x%3))"])
    extra = ""
    if i == 0:
        extra = (
            "\n// Base is imported (indirectly) by every package.\n//\n//go:noinline\n"
            "func Base(x int) int {\n\treturn x * 3 // body\n}\n"
        )
    write(
        f"lib/{name(i)}/{name(i)}.go",
        f"""// Package {name(i)} is generated.
package {name(i)}

import (
	"fmt"
	"sort"
	"strings"
{imports})

// Value combines its dependencies.
func Value(x int) int {{
	s := []int{{x, x + 1, x + 2}}
	sort.Ints(s)
	return {calls} + len(fmt.Sprint(s[0])) + len(strings.TrimSpace(" v ")){" + work(x)" if units else ""}
}}
{extra}""",
    )
    if units:
        write(f"lib/{name(i)}/work.go", work_file(name(i), i))
    deps_attr = "".join(f'        "//lib/{name(d)}",\n' for d in deps)
    write(
        f"lib/{name(i)}/BUILD.bazel",
        f"""load("@io_bazel_rules_go//go:def.bzl", "go_library")

go_library(
    name = "{name(i)}",
    srcs = ["{name(i)}.go"{', "work.go"' if units else ''}],
    importpath = "{module}/lib/{name(i)}",
    visibility = ["//visibility:public"],
    deps = [
{deps_attr}    ],
)
""",
    )

top = [(layers - 1) * per_layer + k for k in range(per_layer)]
for c in range(10):
    uses = top[c::10]
    imports = "".join(f'\t"{module}/lib/{name(d)}"\n' for d in uses)
    total = " + ".join(f"{name(d)}.Value(1)" for d in uses)
    write(
        f"cmd/c{c}/main.go",
        f"""// Command c{c} is generated.
package main

import (
	"fmt"
{imports})

func main() {{
	fmt.Println({total}, {name(0)}Base())
}}
""".replace(f"{name(0)}Base()", "0"),
    )
    deps_attr = "".join(f'        "//lib/{name(d)}",\n' for d in uses)
    write(
        f"cmd/c{c}/BUILD.bazel",
        f"""load("@io_bazel_rules_go//go:def.bzl", "go_binary")

go_binary(
    name = "c{c}",
    srcs = ["main.go"],
    deps = [
{deps_attr}    ],
)
""",
    )
