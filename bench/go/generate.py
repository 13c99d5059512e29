#!/usr/bin/env python3
"""Generates a Go module of N library packages (default 500) and 10 commands, with rules_go BUILD
files, for benchmarking Kiln against `go build`.

Layout: packages p000..p{N-1} under lib/, in 10 layers; each package of layer L > 0 imports three
packages of layer L-1 (and `fmt`, `strings`, `sort`). p000 is the widely imported base: every
package of layer 1 imports it. cmd/c0..c9 each import the top layer's packages i, i+10, ...
`Base()` in p000 is marked //go:noinline: the benchmark's body edit changes its body only.

Usage: generate.py OUT_DIR [N]
"""
import os
import sys

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
module = "example.com/bench"
layers = 10
per_layer = n // layers


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
	return {calls} + len(fmt.Sprint(s[0])) + len(strings.TrimSpace(" v "))
}}
{extra}""",
    )
    deps_attr = "".join(f'        "//lib/{name(d)}",\n' for d in deps)
    write(
        f"lib/{name(i)}/BUILD.bazel",
        f"""load("@io_bazel_rules_go//go:def.bzl", "go_library")

go_library(
    name = "{name(i)}",
    srcs = ["{name(i)}.go"],
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
