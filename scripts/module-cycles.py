#!/usr/bin/env python3
"""Reports import cycles between sibling modules of every crate in the workspace.

A module's file maps to its path by the usual layout (`src/a.rs` and `src/a/mod.rs` are `a`,
`src/a/b.rs` is `a::b`). Every `crate::…`, `super::…` and `self::…` path in a module (in `use`
lines and inline, `#[cfg(test)]` modules left out) is resolved to the module that defines it,
following `pub use` re-exports. An edge from `x::a::…` to `x::b::…` counts as `a → b` among the
children of `x`; references between a module and its own ancestors are not edges. Exits 1 and
prints each cycle (strongly connected component) when there is one.

    python3 scripts/module-cycles.py            # every crate under crates/
    python3 scripts/module-cycles.py crates/m365-pipeline
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        # Drop `//` comments (doc comments included) but keep strings simple: good enough for
        # the paths this looks for.
        idx = line.find("//")
        out.append(line if idx < 0 else line[:idx])
    return "\n".join(out)


def strip_test_modules(text):
    """Removes `#[cfg(test)] mod name { … }` blocks."""
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{")
    while True:
        m = pattern.search(text)
        if not m:
            return text
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        text = text[: m.start()] + text[i:]


def expand_use_tree(tree):
    """`a::{b, c::{d, e as f}}` → [['a','b'], ['a','c','d'], ['a','c','e']] (aliases dropped)."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        tree = re.sub(r"\s+as\s+" + IDENT + r"$", "", tree)
        return [[p for p in tree.split("::") if p]]
    prefix = [p for p in tree[:brace].split("::") if p]
    inner = tree[brace + 1 : tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for part in parts:
        if part.strip():
            for sub in expand_use_tree(part):
                out.append(prefix + sub)
    return out


def module_of(src, path):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return ()
    return tuple(parts)


def crate_modules(src):
    """Module path → source text for the library crate (or the binary when there is no lib)."""
    root = "lib.rs" if (src / "lib.rs").exists() else "main.rs"
    mods = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        if rel.parts[0] == "bin" or (rel.name in ("lib.rs", "main.rs") and len(rel.parts) == 1 and rel.name != root):
            continue
        text = strip_test_modules(strip_comments(path.read_text()))
        mods[module_of(src, path)] = text
    return mods


def absolute(module, path):
    """Resolves a `crate::`/`super::`/`self::` path seen in `module` to an absolute one."""
    if not path:
        return None
    if path[0] == "crate":
        return tuple(path[1:])
    base = list(module)
    i = 0
    if path[0] == "self":
        i = 1
    while i < len(path) and path[i] == "super":
        if not base:
            return None
        base.pop()
        i += 1
    if i == 0:
        return None
    return tuple(base) + tuple(path[i:])


def analyse(src):
    mods = crate_modules(src)
    known = set(mods)
    uses = {}  # module → list of absolute paths
    reexports = {}  # (module, name) → absolute path
    use_re = re.compile(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);")
    inline_re = re.compile(r"\b((?:crate|super|self)(?:::(?:super|" + IDENT + r"))+)")
    for module, text in mods.items():
        found = []
        for m in use_re.finditer(text):
            for p in expand_use_tree(m.group(2)):
                a = absolute(module, p)
                if a is None:
                    continue
                found.append(a)
                if m.group(1) and a:
                    reexports[(module, a[-1])] = a
        without_uses = use_re.sub("", text)
        for m in inline_re.finditer(without_uses):
            a = absolute(module, m.group(1).split("::"))
            if a is not None:
                found.append(a)
        uses[module] = found

    def resolve(path, depth=0):
        """The module that defines `path`: longest known prefix, following re-exports."""
        for n in range(len(path), -1, -1):
            prefix = path[:n]
            if prefix in known:
                if n < len(path) and (prefix, path[n]) in reexports and depth < 8:
                    target = reexports[(prefix, path[n])]
                    if target != path:
                        return resolve(target + path[n + 1 :], depth + 1)
                return prefix
        return ()

    edges = {}
    for module, paths in uses.items():
        for p in paths:
            target = resolve(p)
            k = 0
            while k < min(len(module), len(target)) and module[k] == target[k]:
                k += 1
            if k == len(module) or k == len(target):
                continue  # same module, or an ancestor/descendant
            a, b = module[: k + 1], target[: k + 1]
            edges.setdefault(a, set()).add(b)
    return edges


def cycles(edges):
    """Tarjan's strongly connected components with more than one member."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def main(args):
    roots = [Path(a) for a in args] or sorted(Path("crates").glob("*/"))
    bad = 0
    for crate in roots:
        src = crate / "src"
        if not src.is_dir():
            continue
        edges = analyse(src)
        for comp in cycles(edges):
            bad += 1
            names = ["::".join(m) for m in comp]
            print(f"{crate.name}: cycle between {', '.join(names)}")
            members = set(comp)
            for a in comp:
                for b in sorted(edges.get(a, ())):
                    if b in members:
                        print(f"    {'::'.join(a)} -> {'::'.join(b)}")
    if bad:
        return 1
    print(f"no module cycles in {len(roots)} crate(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
