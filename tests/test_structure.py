"""The shape of the library: no import cycles between cxrlib's modules, no oversized modules."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cxrlib"
MAX_LINES = 340  # "a few hundred lines at most" (../shared/STYLE.md); most modules are far below


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _import_time_edges(path: Path, known: set[str]) -> set[str]:
    """cxrlib modules imported when ``path`` is imported (module level, not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    edges = set()
    for node in tree.body:  # module level only: imports inside functions run later, if ever
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name in known and name != _module_name(path):
                edges.add(name)
    return edges


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_between_cxrlib_modules():
    modules = _modules()
    graph = {name: _import_time_edges(path, set(modules)) for name, path in modules.items()}
    # the scan sees the imports (else no cycle could ever be found): a known edge, and many
    assert "cxrlib.core.config" in graph["cxrlib.training.engine"]
    assert sum(map(len, graph.values())) > len(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_stay_small(name):
    lines = len(_modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by concept"
