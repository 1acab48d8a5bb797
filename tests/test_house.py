"""The house: no two modules of the package import each other, directly or round a loop,
module-level or inside a function; the library prints nothing outside its command lines."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "ofa_latency"


def _modules():
    out = {}
    for p in PKG.rglob("*.py"):
        parts = ("ofa_latency", *p.relative_to(PKG).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _lazy_exports(tree, name):
    """A package __init__ that maps public names to submodules (_PUBLIC = {...})."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_PUBLIC"
                                                for t in node.targets):
            return {k.value: name + v.value for k, v in zip(node.value.keys, node.value.values)}
    return {}


def _graph():
    mods = _modules()
    trees = {m: ast.parse(p.read_text()) for m, p in mods.items()}
    lazy = {m: _lazy_exports(t, m) for m, t in trees.items() if mods[m].name == "__init__.py"}

    def resolve(target):
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    edges = {m: set() for m in mods}
    for m, tree in trees.items():
        is_pkg = mods[m].name == "__init__.py"
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = m.split(".") if is_pkg else m.split(".")[:-1]
                if node.level:
                    base = base[:len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                for a in node.names:
                    full = f"{prefix}.{a.name}"
                    if full in mods:
                        targets.append(full)
                    elif prefix in lazy and a.name in lazy[prefix]:
                        targets.append(lazy[prefix][a.name])
                    else:
                        targets.append(prefix)
            for t in targets:
                r = resolve(t)
                if r and r != m and r.startswith("ofa_latency"):
                    # importing a package means importing its __init__, not the whole package
                    edges[m].add(r)
    return edges


def test_no_import_cycles():
    edges = _graph()
    cycles = []
    for start in edges:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    cycles.append(path)
                elif nxt not in seen and len(path) < 12:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_the_library_uses_logging_not_print():
    allowed = {"cli"}  # the command lines (the board's too: ofa_latency/cli/board.py)
    offenders = []
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG)
        if rel.parts[0] in allowed:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print":
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders
