#!/usr/bin/env bash
# Checks the module layering of core, bridge and gateway/src/kafka (see docs/architecture.md,
# "Layers"): fails on an import cycle between modules, on an import from a lower layer into a
# higher one, and on a module missing from the layer list. Test code (`#[cfg(test)]` modules) and
# comments are ignored. Usage: scripts/check-layers.sh [--graph] (--graph prints every edge).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys

GRAPH = "--graph" in sys.argv[1:]
DOC = "docs/architecture.md"
# unit name -> (directory whose files/dirs are the modules, how a sibling is named in code)
UNITS = {
    "core": ("core/src", "crate"),
    "client": ("client/src", "crate"),
    "bridge": ("bridge/src", "crate"),
    "gateway/kafka": ("gateway/src/kafka", "kafka"),
}
ROOT_FILES = {"lib.rs", "main.rs", "mod.rs"}

def read_layers():
    """Layer lists from fenced blocks ```layers UNIT ... ``` in docs/architecture.md, bottom first;
    one layer a line, modules of one layer separated by spaces."""
    text = open(DOC, encoding="utf-8").read()
    out = {}
    for m in re.finditer(r"^```layers[ \t]+(\S+)[ \t]*\n(.*?)^```", text, re.S | re.M):
        layers = [l.split("#")[0].split() for l in m.group(2).splitlines()]
        out[m.group(1)] = [l for l in layers if l]
    return out

def strip(src):
    # Cut test modules (by convention at the end of a file), then comments and string literals.
    m = re.search(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod\s+\w+\s*\{", src)
    if m:
        src = src[: m.start()]
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r'r#*"(?:.|\n)*?"#*', '""', src)
    src = re.sub(r'"(?:\\.|[^"\\])*"', '""', src)
    return src

def modules(d):
    mods = {}
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        if os.path.isdir(p):
            files = [os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs if f.endswith(".rs")]
            mods.setdefault(name, []).extend(files)
        elif name.endswith(".rs") and name not in ROOT_FILES:
            mods.setdefault(name[:-3], []).append(p)
    return mods

def refs(src, unit_kind, is_top_file):
    """Top-level sibling module names referenced by a file."""
    names = set()
    if unit_kind == "crate":
        prefixes = [r"\bcrate::"]
    else:  # gateway/src/kafka: siblings are crate::kafka::X, or super::X from a top-level file
        prefixes = [r"\bcrate::kafka::"]
        if is_top_file:
            prefixes.append(r"\bsuper::")
    if unit_kind == "crate" and is_top_file is False:
        pass
    for pre in prefixes:
        for m in re.finditer(pre + r"(\{|\w+)", src):
            if m.group(1) == "{":
                # crate::{a, b::c, d::{e}}: the top-level names of the group
                depth, i, start = 1, m.end(), m.end()
                while i < len(src) and depth:
                    depth += {"{": 1, "}": -1}.get(src[i], 0)
                    i += 1
                body, items, depth, cur = src[start : i - 1], [], 0, ""
                for ch in body:
                    if ch == "," and depth == 0:
                        items.append(cur); cur = ""
                        continue
                    depth += {"{": 1, "}": -1}.get(ch, 0)
                    cur += ch
                items.append(cur)
                for it in items:
                    w = re.match(r"\s*(\w+)", it)
                    if w:
                        names.add(w.group(1))
            else:
                names.add(m.group(1))
    return names

def sccs(nodes, edges):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out

layers = read_layers()
errors = []
for unit, (d, kind) in UNITS.items():
    if not os.path.isdir(d):
        continue
    mods = modules(d)
    edges = {}
    for mod, files in mods.items():
        for f in files:
            top = os.path.dirname(f) == d
            src = strip(open(f, encoding="utf-8").read())
            for r in refs(src, kind, top):
                if r in mods and r != mod:
                    edges.setdefault(mod, set()).add(r)
    if GRAPH:
        for a in sorted(edges):
            print(f"{unit}: {a} -> {', '.join(sorted(edges[a]))}")
    for comp in sccs(mods, edges):
        if len(comp) > 1:
            cyc = [f"{a}->{b}" for a in comp for b in sorted(edges.get(a, ())) if b in comp]
            errors.append(f"{unit}: import cycle among {', '.join(comp)} ({'; '.join(cyc)})")
    order = layers.get(unit)
    if order is None:
        errors.append(f"{unit}: no ```layers {unit}``` block in {DOC}")
        continue
    level = {m: i for i, layer in enumerate(order) for m in layer}
    for m in sorted(set(mods) - set(level)):
        errors.append(f"{unit}: module `{m}` is not in the layer list of {DOC}")
    for m in sorted(set(level) - set(mods)):
        errors.append(f"{unit}: layer list of {DOC} names `{m}`, which does not exist")
    for a in sorted(edges):
        for b in sorted(edges[a]):
            if a in level and b in level and level[b] > level[a]:
                errors.append(f"{unit}: `{a}` (layer {level[a]}) imports `{b}` (layer {level[b]}, higher)")

if errors:
    print("\n".join(errors))
    print(f"check-layers: {len(errors)} problem(s)")
    sys.exit(1)
print("check-layers: no cycles, every import follows the layer order")
PY
