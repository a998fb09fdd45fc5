"""The package's house rules, read from its source with ``ast`` (nothing is imported):

* no import cycle between the package's top-level files and folders ("units": ``train.py`` is the unit
  ``train``, everything in ``models/`` is the unit ``models``);
* no unit imports one from a higher layer (:data:`LAYERS`);
* no file over :data:`MAX_LINES` lines;
* one folder per concern: no ``*_models.py`` or ``viz_*.py`` beside the folders ``models/`` and ``viz/``.

Every ``import`` / ``from … import`` counts, at module level and inside functions alike (an import deferred
into a function is still a dependency); imports inside one unit (e.g. ``blocks/inception.py`` → ``blocks``) are
the unit's own business and are not edges.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "attncourse"
MAX_LINES = 600

#: lowest first; a unit may import units of its own layer or lower ones (never higher), and no cycles
LAYERS = [
    {"config", "speed"},                       # settings, devices, speed switches
    {"blocks", "augment"},                     # attention blocks; augmentation
    {"data", "metrics", "cost", "models",      # tasks, metrics, cost tools, networks built from blocks,
     "benchmark_tables"},                      # the recorded benchmark tables
    {"objectives", "train", "viz"},            # losses per task kind, the training loop, pictures
    {"experiments", "report"},                 # named comparisons, the runner, recorded results
    {"exercises"},                             # graded exercises (some check answers against recorded results)
    {"grading"},                               # batch grading of learners' notebooks
    {"__main__", "__init__"},                  # the CLI and the package's flat namespace
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _sources():
    return sorted(p for p in PKG.rglob("*.py") if "recorded" not in p.relative_to(PKG).parts)


def _unit(module: str) -> str:
    """``attncourse.models.resnet`` → ``models``; ``attncourse`` → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> tuple[str, str]:
    """``(dotted module name, the package it lives in)`` of a source file."""
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), ".".join(parts[:-1])
    return ".".join(parts), ".".join(parts[:-1])


def _imported(node, package: str) -> list[str]:
    """The absolute module names an import statement names (``from . import x`` names ``package.x``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if not node.level:
        return [node.module or ""]
    base = package.split(".")[:len(package.split(".")) - node.level + 1]
    base = ".".join(base)
    if node.module:
        return [f"{base}.{node.module}"]
    return [f"{base}.{a.name}" for a in node.names]


def import_graph() -> dict[str, dict[str, list[str]]]:
    """``{unit: {imported unit: [files where it is imported]}}`` for imports between different units."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in _sources():
        module, package = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for target in _imported(node, package):
                if target == "attncourse" or target.startswith("attncourse."):
                    a, b = _unit(module), _unit(target)
                    if a != b:
                        graph[a][b].append(f"{path.relative_to(PKG.parent)}:{node.lineno}")
    return graph


def _cycle(graph) -> list[str] | None:
    """One cycle of the graph as ``[a, b, …, a]``, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, {})):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state and (found := visit(v)):
                return found
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return None


def test_the_graph_is_read():
    """The parser sees the imports it must see (a check of the checker)."""
    graph = import_graph()
    assert "objectives" in graph["train"] and "blocks" in graph["models"] and "experiments" in graph["__main__"]
    assert _cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": []}, "b": {}}) is None


def test_every_unit_has_a_layer():
    units = {_unit(_module_name(p)[0]) for p in _sources()}
    assert not units - set(LAYER), f"place these in LAYERS: {sorted(units - set(LAYER))}"


def test_no_import_cycle():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_no_import_from_a_higher_layer():
    upward = [f"{a} (layer {LAYER[a]}) imports {b} (layer {LAYER[b]}) at {', '.join(where)}"
              for a, targets in import_graph().items() for b, where in targets.items()
              if a in LAYER and b in LAYER and LAYER[b] > LAYER[a]]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PKG)))
def test_file_size(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PKG.parent)} has {n} lines (at most {MAX_LINES}): split it by job"


def test_one_folder_per_concern():
    stray = sorted(p.name for p in PKG.glob("*.py") if p.name.endswith("_models.py") or p.name.startswith("viz_")
                   or p.name in ("models.py", "viz.py"))
    assert not stray, f"put these in attncourse/models/ or attncourse/viz/: {stray}"
