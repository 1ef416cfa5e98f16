"""Rules of the package's shape, read from its source: no import cycles (function-local imports count), no imports
of another module's private names, no pyplot state. Each check is tested on a small fake package first, so a check
that cannot fail is caught."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mtpjax"


def modules(package: Path) -> dict[str, Path]:
    out = {}
    for p in package.rglob("*.py"):
        parts = list(p.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def imports(path: Path, name: str, is_package: bool, known: set) -> list[tuple[str, list[str]]]:
    """(imported module, names imported from it) of every import statement, module-level or inside functions."""
    base = name.split(".") if is_package else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            names = [a.name for a in node.names]
            out.append((mod, names))
            out += [(f"{mod}.{n}", []) for n in names if f"{mod}.{n}" in known]  # submodules imported by name
    return out


def import_graph(package: Path) -> dict[str, set]:
    files = modules(package)
    known = set(files)
    graph = {}
    for m, p in files.items():
        targets = set()
        for t, _ in imports(p, m, p.name == "__init__.py", known):
            while t and t not in known:
                t = t.rpartition(".")[0]
            # a package's __init__ importing its own children is not a cycle
            if t and t != m and not m.startswith(t + "."):
                targets.add(t)
        graph[m] = targets
    return graph


def cycles(graph: dict[str, set]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, found, n = {}, {}, set(), [], [], 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = n; n += 1; stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = n; n += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def private_imports(package: Path) -> list[str]:
    """'module: from other import _name' for every private name imported from another module of the package."""
    files = modules(package)
    known = set(files)
    top = package.name
    bad = []
    for m, p in files.items():
        for mod, names in imports(p, m, p.name == "__init__.py", known):
            if mod != m and (mod == top or mod.startswith(top + ".")):
                bad += [f"{m}: from {mod} import {n}" for n in names if n.startswith("_") and not n.startswith("__")]
    return bad


def pyplot_uses(paths) -> list[str]:
    """'file:line' of every import of matplotlib.pyplot and every call of matplotlib.use (global state)."""
    bad = []
    for p in paths:
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"), str(p))):
            hit = (isinstance(node, ast.Import) and any(a.name.startswith("matplotlib.pyplot") for a in node.names)) \
                or (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("matplotlib")
                    and ("pyplot" in (node.module or "") or any(a.name == "pyplot" for a in node.names))) \
                or (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "use"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "matplotlib")
            if hit:
                bad.append(f"{p}:{node.lineno}")
    return bad


@pytest.fixture
def fake(tmp_path):
    pkg = tmp_path / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from .sub.b import g  # hidden in a function\n    return g()\n")
    (pkg / "sub" / "__init__.py").write_text("from .b import g\n")
    (pkg / "sub" / "b.py").write_text('"""Not pyplot."""\nfrom ..a import _helper\nimport matplotlib.pyplot as plt\n\n'
                                       'def g():\n    import matplotlib\n    matplotlib.use("Agg")\n    return 1\n')
    return pkg


def test_checks_find_what_they_look_for(fake):
    graph = import_graph(fake)
    assert graph["fakepkg.a"] == {"fakepkg.sub.b"} and "fakepkg.a" in graph["fakepkg.sub.b"]
    assert cycles(graph) == [["fakepkg.a", "fakepkg.sub.b"]]
    assert private_imports(fake) == ["fakepkg.sub.b: from fakepkg.a import _helper"]
    assert [u.rsplit("/", 1)[1] for u in pyplot_uses(sorted(fake.rglob("*.py")))] == ["b.py:3", "b.py:7"]
    (fake / "a.py").write_text("def f():\n    return 1\n")
    assert cycles(import_graph(fake)) == []


def test_no_import_cycles():
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles (function-local imports count): " + "; ".join(" <-> ".join(c) for c in found)


def test_no_private_names_imported_across_modules():
    assert private_imports(PACKAGE) == []


def test_package_keeps_no_pyplot_state():
    assert pyplot_uses(sorted(PACKAGE.rglob("*.py"))) == []
