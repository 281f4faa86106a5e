"""The house's layer rules, read from every module's imports (ast): a forbidden edge fails here."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"platform": "segloop.platform", "selectors": "segloop.selectors", "pretrain": "segloop.pretrain",
           "ui": "segloop.ui", "migrations": "segloop.migrations"}


def module_name(path: Path) -> str:
    """The dotted segloop name of a source file."""
    folder = path.relative_to(REPO_ROOT).parts[0]
    parts = list(path.relative_to(REPO_ROOT / folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([FOLDERS[folder], *parts])


def imported_modules(path: Path) -> set[str]:
    """Every segloop module a file imports (top level or inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("segloop.")}


def unit(module: str) -> str:
    """The layer a module belongs to: a subpackage of platform (migrations count as db), or pretrain, selectors, ui."""
    parts = module.split(".")
    if parts[1] == "migrations":  # Alembic scripts are the schema half of the db layer
        return "platform.db"
    if parts[1] == "platform":
        return "platform." + parts[2] if len(parts) > 2 else "platform"
    return parts[1]


def source_files() -> list[Path]:
    """Every segloop source file."""
    return [p for folder in FOLDERS for p in sorted((REPO_ROOT / folder).rglob("*.py")) if "__pycache__" not in p.parts]


def import_edges() -> list[tuple[str, str]]:
    """(importing module, imported module) for every segloop import; names inside a module map to the module."""
    known = {module_name(p) for p in source_files()}
    edges = set()
    for path in source_files():
        source = module_name(path)
        for target in imported_modules(path):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != source:
                edges.add((source, target))
    return sorted(edges)


ALLOWED_FOR_LIBRARIES = {"platform.core"}


def violations(edges: list[tuple[str, str]]) -> list[str]:
    """Each edge that breaks a layer rule, as 'a -> b: rule'."""
    found = []
    for source, target in edges:
        s, t = unit(source), unit(target)
        if s == t:
            continue
        rule = None
        if s == "platform.core":
            rule = "platform.core imports nothing else from segloop"
        elif s in ("pretrain", "selectors") and t not in ALLOWED_FOR_LIBRARIES:
            rule = f"{s} is a library: it may import platform.core only"
        elif s == "ui" and t not in ("platform.services", "platform.core"):
            rule = "ui imports only platform.services and platform.core"
        elif t == "platform.bench" and s not in ("platform.bench", "platform.cli"):
            rule = "only bench/ and cli/ import bench/"
        elif s != "platform.cli" and t == "platform.cli":
            rule = "nothing imports the CLI"
        if rule:
            found.append(f"{source} -> {target}: {rule}")
    return found


def cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """Cycles in the graph of layers (strongly connected components of more than one layer)."""
    graph = defaultdict(set)
    for source, target in edges:
        if unit(source) != unit(target):
            graph[unit(source)].add(unit(target))
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return result


def test_layer_rules_hold() -> None:
    """No module imports across a forbidden layer edge."""
    assert violations(import_edges()) == []


def test_no_cycles_between_layers() -> None:
    """The layers form a DAG."""
    assert cycles(import_edges()) == []


def test_platform_root_holds_at_most_three_modules() -> None:
    """Every module of platform/ lives in its layer's subpackage."""
    assert len(list((REPO_ROOT / "platform").glob("*.py"))) <= 3


@pytest.mark.parametrize(("edge", "rule"), [
    (("segloop.platform.core.settings", "segloop.platform.db.engine"), "platform.core imports nothing"),
    (("segloop.pretrain.train", "segloop.platform.db.engine"), "library"),
    (("segloop.selectors.index", "segloop.pretrain.embed"), "library"),
    (("segloop.ui.views.label", "segloop.platform.db.stores.annotations"), "ui imports only"),
    (("segloop.platform.services.finetuning", "segloop.platform.bench.keyframes"), "only bench/ and cli/"),
    (("segloop.platform.jobs.worker", "segloop.platform.cli.main"), "nothing imports the CLI"),
])
def test_each_rule_catches_a_forbidden_edge(edge: tuple[str, str], rule: str) -> None:
    """The checker is not vacuous: each rule flags an edge that breaks it."""
    found = violations([edge])
    assert len(found) == 1 and rule in found[0]


def test_cycle_detection_finds_a_two_layer_cycle() -> None:
    """A two-way import between layers is reported."""
    edges = [("segloop.platform.db.engine", "segloop.platform.media.ingest"),
             ("segloop.platform.media.ingest", "segloop.platform.db.engine")]
    assert cycles(edges) == [["platform.db", "platform.media"]]
