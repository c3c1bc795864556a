"""The package's layers import only downward, and its parts import one another without cycles.

Checked from the import statements themselves (every ``import`` and ``from ... import`` in every
module, inside functions too), so a new upward import or cycle fails here at once.

Layers, lowest first:
0. base: errors and logging, which everything may use;
1. library: data, models, quantization, metrics, the LightningModules, deployment, run I/O,
   drawing and predictors;
2. orchestration: configs, the stages of the method, stage runs, summaries, sweeps, the study;
3. commands: ``qmimic.cli`` and the ``python -m qmimic.<command>`` entry modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import qmimic

PACKAGE = Path(qmimic.__file__).parent
LAYERS = {
    "base": ["qmimic", "qmimic.errors", "qmimic.log"],
    "library": ["qmimic.data", "qmimic.models", "qmimic.quant", "qmimic.metrics",
                "qmimic.modules", "qmimic.deploy", "qmimic.io", "qmimic.drawing",
                "qmimic.predictors"],
    "orchestration": ["qmimic.conf", "qmimic.stages", "qmimic.runs", "qmimic.studies"],
    "commands": ["qmimic.cli", "qmimic.train", "qmimic.evaluate", "qmimic.predict",
                 "qmimic.pipeline", "qmimic.export", "qmimic.study"],
}  # fmt: skip
RANK = {part: rank for rank, parts in enumerate(LAYERS.values()) for part in parts}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str | None:
    """The layer part a module belongs to: the longest listed prefix."""
    matches = [p for p in RANK if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def imports(path: Path) -> set[str]:
    """The qmimic modules ``path`` imports (``from qmimic.x import y`` counts as ``qmimic.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m for m in found if m == "qmimic" or m.startswith("qmimic.")}


def package_imports() -> dict[str, set[str]]:
    """Every module of the package -> the qmimic modules it imports."""
    return {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}


def upward_imports(modules: dict[str, set[str]]) -> list[str]:
    """``"importer imports imported"`` for each import from a lower layer to a higher one."""
    found = []
    for module, imported in sorted(modules.items()):
        source = part_of(module)
        assert source is not None, f"{module} is in no layer: add its package to LAYERS"
        for target_module in sorted(imported):
            target = part_of(target_module)
            assert target is not None, f"{module} imports {target_module}, in no layer"
            if RANK[target] > RANK[source]:
                found.append(f"{module} imports {target_module}")
    return found


def part_graph(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """part -> the other parts its modules import."""
    graph: dict[str, set[str]] = {}
    for module, imported in modules.items():
        source = part_of(module)
        graph.setdefault(source, set()).update({part_of(m) for m in imported} - {source})
    return graph


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each cycle of ``graph`` as ``"a -> b -> a"`` (found from every start: may repeat)."""
    found = []

    def visit(part: str, trail: list[str]) -> None:
        for target in sorted(graph.get(part, ())):
            if target in trail:
                found.append(" -> ".join([*trail[trail.index(target) :], target]))
            else:
                visit(target, [*trail, target])

    for start in sorted(graph):
        visit(start, [start])
    return found


def test_every_module_imports_only_its_own_layer_or_lower():
    assert upward_imports(package_imports()) == []


def test_no_cycle_between_the_parts_of_the_package():
    assert cycles(part_graph(package_imports())) == []


def test_the_checks_see_an_upward_import_and_a_cycle():
    """The checks above can fail: a library module importing a command is upward, and two
    parts importing each other are a cycle."""
    assert upward_imports({"qmimic.data.voc.folder": {"qmimic.cli.train"}}) == [
        "qmimic.data.voc.folder imports qmimic.cli.train"
    ]
    assert upward_imports({"qmimic.cli.train": {"qmimic.data.voc.folder"}}) == []
    looped = part_graph({"qmimic.io.checkpoints": {"qmimic.models"},
                         "qmimic.models.detector": {"qmimic.io.results"}})  # fmt: skip
    assert "qmimic.io -> qmimic.models -> qmimic.io" in cycles(looped)
    assert cycles(part_graph({"qmimic.io.checkpoints": {"qmimic.models"}})) == []
