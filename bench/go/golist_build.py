#!/usr/bin/env python3
"""Writes rules_go BUILD.bazel files for every package of a Go module checkout, from `go list`.

Usage: golist_build.py MODULE_DIR

Used by bench/go/real.sh to build a real module (golang.org/x/tools) with Kiln as Gazelle
would have prepared it: one `go_library` per package named after its directory, a `go_binary`
per main package, same-module imports as `//dir:name`, other modules' packages under Gazelle's
repository names (`@org_golang_x_mod//semver:semver`). File lists are what `go list` selects
for the host with CGO_ENABLED=0; Kiln applies the same build constraints again.
"""

import json
import os
import subprocess
import sys


def repo_name(module):
    """Gazelle's repository name: host reversed, then the path, non-alphanumerics as `_`."""
    host, _, rest = module.partition("/")
    parts = list(reversed(host.split(".")))
    if rest:
        parts.append(rest)
    return "".join(c.lower() if c.isalnum() else "_" for c in "_".join(parts))


def go_list(root, *args):
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
    out = subprocess.run(
        ["go", "list", "-e", "-json", *args],
        cwd=root, env=env, check=True, capture_output=True, text=True,
    ).stdout
    dec = json.JSONDecoder()
    pos, items = 0, []
    while pos < len(out):
        while pos < len(out) and out[pos].isspace():
            pos += 1
        if pos >= len(out):
            break
        obj, pos = dec.raw_decode(out, pos)
        items.append(obj)
    return items


def main():
    root = os.path.abspath(sys.argv[1])
    pkgs = go_list(root, "./...")
    module = pkgs[0]["Module"]["Path"]
    owner = {}
    for p in go_list(root, "-deps", "./..."):
        if not p.get("Standard"):
            owner[p["ImportPath"]] = p.get("Module", {}).get("Path", "")
    count = 0
    for p in pkgs:
        if p.get("Error"):
            print(f"skipping {p['ImportPath']}: {p['Error'].get('Err')}", file=sys.stderr)
            continue
        if not p.get("GoFiles"):
            continue  # test-only directory: nothing for `go build ./...` either
        rel = os.path.relpath(p["Dir"], root)
        rel = "" if rel == "." else rel
        name = p["ImportPath"].rsplit("/", 1)[-1]
        deps = []
        for imp in p.get("Imports", []):
            mod = owner.get(imp)
            if mod is None:
                continue  # standard library
            last = imp.rsplit("/", 1)[-1]
            sub = imp[len(mod):].lstrip("/")
            if mod == module:
                deps.append(f"//{sub}:{last}")
            else:
                deps.append(f"@{repo_name(mod)}//{sub}:{last}")
        srcs = sorted(p.get("GoFiles", []) + p.get("SFiles", []) + p.get("HFiles", []))
        embeds = sorted(p.get("EmbedFiles", []))

        def lst(v):
            return "".join(f"        {json.dumps(s)},\n" for s in v)

        main_pkg = p["Name"] == "main"
        lib = f"{name}_lib" if main_pkg else name
        text = 'load("@io_bazel_rules_go//go:def.bzl", "go_binary", "go_library")\n\n'
        text += f"go_library(\n    name = {json.dumps(lib)},\n    srcs = [\n{lst(srcs)}    ],\n"
        text += f"    importpath = {json.dumps(p['ImportPath'])},\n"
        if embeds:
            text += f"    embedsrcs = [\n{lst(embeds)}    ],\n"
        if deps:
            text += f"    deps = [\n{lst(sorted(set(deps)))}    ],\n"
        text += '    visibility = ["//visibility:public"],\n)\n'
        if main_pkg:
            text += f'\ngo_binary(\n    name = {json.dumps(name)},\n    embed = [":{lib}"],\n)\n'
        with open(os.path.join(root, rel, "BUILD.bazel"), "w") as f:
            f.write(text)
        count += 1
    print(f"{count} BUILD files for {module}", file=sys.stderr)


if __name__ == "__main__":
    main()
