"""The shape of the library, on its real import graph: every ``import`` counts, module level or
inside a function (a function-level import runs whenever that function does, so it is as much a
dependency as one at the top of the file). The graph keeps a declared layer order, has no
cycle between cxrlib's modules, and no module grows past a chosen line cap."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cxrlib"

#: The layers, lowest first: a package may import its own modules and those of lower layers only
#: (docs/INTERFACES.md has the same table). ``cxrlib/__init__`` (TF settings) and
#: ``cxrlib/__main__`` (the CLI) sit outside it.
LAYERS = ("core", "data", "models", "lungs", "preprocessing", "evaluation", "training", "runs",
          "explain", "audit", "sweep", "reviews", "viz", "dicom", "cli")

#: Imports that go up the layers on purpose: (importer, imported) -> why.
UPWARD_EXCEPTIONS = {
    ("cxrlib.data.film_scan", "cxrlib.preprocessing.steps"):
        "the duplicate search hashes the grey film exactly as preprocessing makes it (to_grey); "
        "steps is a leaf of pure NumPy/OpenCV that imports no cxrlib module, so the edge can "
        "never close a cycle, and a second to_grey would be a second definition of grey",
}

#: "A few hundred lines at most" (../shared/STYLE.md), chosen, not fitted to today's tree.
MAX_LINES = 300
#: Modules allowed past it: module -> why it stays one file.
LONG_MODULES = {
    "cxrlib.runs.run": "the run folder's whole file contract (every file, its atomic write and its "
                       "damage check) in one place, so no file of a run is read two ways",
    "cxrlib.runs.runner": "the life of a training process (start, execute with its prerequisite, "
                          "follow, cancel) shares one locking protocol that reads best whole",
    "cxrlib.explain.graph": "the gradient model's graph surgery (rebuilding a Keras graph around a "
                            "chosen layer) is one algorithm whose helpers mean nothing apart",
    "cxrlib.data.datasets": "scan_dataset and the Dataset it returns: the manifest's one contract",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name an ``import`` anywhere in ``path`` may load (relative ones resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    """Module -> the cxrlib modules it imports (the root package left out: it is always loaded
    first, whoever imports what)."""
    modules = _modules()
    known = set(modules) - {"cxrlib"}
    return {name: {n for n in _imported_names(path, name) if n in known and n != name}
            for name, path in modules.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if _layer(a) and _layer(b) and rank[_layer(b)] > rank[_layer(a)])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
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


def test_the_scan_sees_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "cxrlib" / "pkg" / "mod.py"
    source.parent.mkdir(parents=True)
    source.write_text("import os\nfrom . import sibling\n\ndef f():\n"
                      "    from cxrlib.core.config import RunConfig  # noqa: PLC0415\n"
                      "    from ..other import thing\n", encoding="utf-8")
    names = _imported_names(source, "cxrlib.pkg.mod")
    assert {"os", "cxrlib.pkg.sibling", "cxrlib.core.config", "cxrlib.core.config.RunConfig",
            "cxrlib.other", "cxrlib.other.thing"} <= names
    # and on the real tree: a function-level import the old module-level scan could not see
    graph = _graph()
    assert "cxrlib.training.engine" in graph["cxrlib.runs.runner"]
    assert sum(map(len, graph.values())) > 2 * len(graph)


def test_every_package_is_a_declared_layer():
    packages = {name.split(".")[1] for name in _modules() if name.count(".") >= 1}
    assert packages - set(LAYERS) == {"__main__"}, sorted(packages - set(LAYERS))


def test_imports_follow_the_layer_order():
    found = _upward(_graph())
    unexplained = [edge for edge in found if edge not in UPWARD_EXCEPTIONS]
    assert not unexplained, "\n".join(f"{a} -> {b}" for a, b in unexplained)
    stale = set(UPWARD_EXCEPTIONS) - set(found)
    assert not stale, f"exceptions no longer needed: {sorted(stale)}"


def test_the_layer_check_finds_a_planted_upward_import():
    assert _upward({"cxrlib.core.x": {"cxrlib.lungs.y"}, "cxrlib.lungs.y": {"cxrlib.core.x"}}) == [
        ("cxrlib.core.x", "cxrlib.lungs.y")]


def test_no_import_cycles_between_cxrlib_modules():
    graph = _graph()
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_stay_small(name):
    lines = len(_modules()[name].read_text(encoding="utf-8").splitlines())
    if name in LONG_MODULES:
        assert lines > MAX_LINES, f"{name} is back under {MAX_LINES} lines: drop its exception"
        return
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by concept"


def test_the_exceptions_stay_a_handful():
    assert len(LONG_MODULES) <= 5 and len(UPWARD_EXCEPTIONS) <= 3
    assert set(LONG_MODULES) <= set(_modules())


#: A page draws components and calls services (../shared/STYLE.md: pages of 10-50 lines, no math or
#: policy). 100 lines is a chosen cap, not today's longest page: it leaves room for a page's own
#: layout and empty states, and a page past it is doing a component's work, which belongs in
#: ``app_services`` (issue 21).
MAX_PAGE_LINES = 100
PAGES = sorted((ROOT / "views").glob("*.py"))


def test_the_pages_are_found():
    assert {"audit.py", "training.py", "explain.py", "review.py"} <= {p.name for p in PAGES}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_stay_thin(page):
    lines = len(page.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_PAGE_LINES, (f"views/{page.name} has {lines} lines: move its widget groups "
                                     "into an app_services component")


#: The app's components and services have the library's cap: a component past it is two concepts.
SERVICES = sorted((ROOT / "app_services").glob("*.py"))


def test_the_services_are_found():
    assert {"runs.py", "training_form.py", "explaining.py"} <= {p.name for p in SERVICES}


@pytest.mark.parametrize("module", SERVICES, ids=lambda p: p.name)
def test_services_stay_small(module):
    lines = len(module.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"app_services/{module.name} has {lines} lines: split it by concept"
