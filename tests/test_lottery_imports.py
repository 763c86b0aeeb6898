"""lottery/ has no import cycle, function-level imports included, and an explicit method registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root/package``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Edges module -> modules of ``package`` it imports anywhere in its body (functions included)."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from pkg import sub`` imports the submodule pkg.sub (pkg itself, like any
                # parent package, runs first anyway); other names come from pkg/__init__
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            for target in targets:
                # ``import a.b.c`` runs a.b.c; credit the longest known prefix
                parts = target.split(".")
                while parts and ".".join(parts) not in modules:
                    parts.pop()
                if parts and ".".join(parts) != name:
                    graph[name].add(".".join(parts))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None (iterative three-colour DFS)."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child, 2) == 1:
                return path[path.index(child) :] + [child]
            elif colour.get(child, 2) == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_lottery_import_graph_is_acyclic():
    graph = import_graph(ROOT, "lottery")
    assert len(graph) > 30 and "lottery.methods" in graph
    assert {"lottery.imp", "lottery.rtl", "lottery.independent"} <= graph["lottery.methods"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("import os\n\ndef f():\n    from .sub import c\n    return c\n")
    (pkg / "sub" / "c.py").write_text("def g():\n    if True:\n        import pkg.a.missing\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
    (pkg / "sub" / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None


def test_method_registry_is_explicit_and_matches_the_description_checks():
    from lottery import imp, independent, rtl
    from lottery.config import METHOD_NAMES
    from lottery.methods import METHODS

    assert set(METHODS) == set(METHOD_NAMES)
    assert METHODS["imp"].run is imp.run_imp and METHODS["rtl"].run is rtl.run_rtl
    assert METHODS["independent"].manifest_entry is independent.manifest_entry
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "lottery").rglob("*.py"))
    assert "register_method" not in sources and "_ensure_methods_registered" not in sources


@pytest.mark.parametrize("module", ["lottery.pipeline", "lottery.inr.run", "lottery.speech.run"])
def test_every_domain_runs_through_the_one_spine(module):
    import importlib

    from lottery.context import Domain, RunContext

    mod = importlib.import_module(module)
    domains = [v for v in vars(mod).values() if isinstance(v, Domain)]
    assert len(domains) == 1
    ctx_types = [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, RunContext)]
    assert ctx_types and all(t.theta0 is RunContext.theta0 for t in ctx_types)
