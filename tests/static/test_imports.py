"""The import rules of jobd, checked on the source: no cycle, and each layer's bounds.

Every module of `jobd/` is parsed with `ast` and every import statement in
it counts: at module level, inside functions, under `if TYPE_CHECKING:`.
A deferred import still ties the two modules together (one cannot be read,
moved or tested without the other), and a cycle that only type checking
sees is still a cycle in the design. `from jobd.x import y` is an edge to
the module `jobd.x.y` when there is one, else to `jobd.x`; importing a
module does not add edges to its parent packages (that their `__init__`
runs is Python's doing, not the importer's choice).

The layer rules are a table below: which modules may not import which,
and why. They apply to direct imports, each of which is one line to fix;
what a module reaches through another is the other's rule to keep, and
the cycle check sees the whole graph. Imports by name at run time
(`importlib.import_module(routine_module)`) are not edges: those load the
application, which jobd's import rules do not govern.
"""

from __future__ import annotations

import ast
import fnmatch
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "jobd"


@dataclass(frozen=True)
class Rule:
    """Modules matching `importers` (unless `exempt`) may not import `forbidden` (unless
    `allowed`). Patterns are globs on dotted names: `jobd.store.*` is everything in the
    package `jobd.store`, not the package itself."""

    name: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...]
    reason: str
    allowed: tuple[str, ...] = ()
    exempt: tuple[str, ...] = ()

    def breaks(self, importer: str, imported: str) -> bool:
        return (
            _matches(importer, self.importers)
            and not _matches(importer, self.exempt)
            and _matches(imported, self.forbidden)
            and not _matches(imported, self.allowed)
        )


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def tree(package: str) -> tuple[str, str]:
    """Patterns for a package and everything in it."""
    return package, f"{package}.*"


DATABASE_LIBRARIES = (*tree("sqlalchemy"), *tree("alembic"), *tree("psycopg"), *tree("psycopg2"))

RULES = (
    Rule(
        "records stand alone",
        importers=("jobd.records",),
        forbidden=tree("jobd"),
        reason="the domain records are the vocabulary every layer shares; "
        "they import nothing of jobd, so any layer may import them",
    ),
    Rule(
        "settings sit below the program",
        importers=tree("jobd.settings"),
        forbidden=(
            *tree("jobd.supervisor"),
            *tree("jobd.store"),
            *tree("jobd.worker"),
            *tree("jobd.cli"),
            *tree("jobd.client"),
        ),
        reason="every part of jobd reads its settings, and the template and the workers "
        "load them: the settings cannot depend on the parts that read them",
    ),
    Rule(
        "settings stand on policy, schedules and units",
        importers=tree("jobd.settings"),
        forbidden=tree("jobd"),
        allowed=(*tree("jobd.settings"), "jobd.policy", "jobd.schedule", "jobd.units"),
        reason="the settings declare values in the terms of the modules below them "
        "(policy, schedule, units) and nothing else of jobd",
    ),
    Rule(
        "workers never touch the master or the store",
        importers=tree("jobd.worker"),
        forbidden=(*tree("jobd.supervisor"), *tree("jobd.store")),
        reason="a worker runs application code and talks to the master over the wire only: "
        "it must not load the master's code nor the store (SQLAlchemy: 25 MB per worker)",
    ),
    Rule(
        "the wire speaks records",
        importers=("jobd.wire",),
        forbidden=tree("jobd"),
        allowed=("jobd.records",),
        reason="the master/worker messages are shared by both sides; "
        "they are made of the domain records and nothing else of jobd",
    ),
    Rule(
        "database libraries live in the store",
        importers=tree("jobd"),
        exempt=tree("jobd.store"),
        forbidden=DATABASE_LIBRARIES,
        reason="SQL and its dialects are kept in one place, and the workers and the "
        "template never pay for SQLAlchemy",
    ),
    Rule(
        "the supervisor knows the store by its contract",
        importers=tree("jobd.supervisor"),
        forbidden=tree("jobd.store"),
        allowed=("jobd.store.contract",),
        reason="the master is given an opened store and uses it through the contract, "
        "so its loop runs on a fake store in the unit tests",
    ),
    Rule(
        "store internals stay inside the store",
        importers=tree("jobd"),
        exempt=tree("jobd.store"),
        forbidden=("jobd.store.*",),
        allowed=("jobd.store.contract",),
        reason="outside the store, jobd opens a store with `jobd.store.open_store` and "
        "uses it through `jobd.store.contract`; the SQL implementation may change freely",
    ),
    Rule(
        "the memory store stands beside the SQL store",
        importers=("jobd.store.memory", "jobd.store.memory_tables"),
        forbidden=(*DATABASE_LIBRARIES, "jobd.store.*"),
        allowed=(
            "jobd.store.contract",
            "jobd.store.fairness",
            "jobd.store.rows",
            "jobd.store.memory_tables",
        ),
        reason="the in-memory store is what the contract suite compares with the SQL "
        "store: it shares only the pure parts (records, rows, fairness), not the SQL it is "
        "checked against, and the unit tests on it never load SQLAlchemy",
    ),
)


# -- the graph ----------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} imports {self.imported} (line {self.line})"


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under `root`, by dotted name."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def build_graph(root: Path, package: str = PACKAGE) -> dict[str, list[Edge]]:
    """Every import edge of every module of `package` (under `root`), by importer.

    An edge to a module outside the package names the module imported from
    (`from sqlalchemy import select` is an edge to `sqlalchemy`).
    """
    modules = module_files(root, package)
    graph: dict[str, list[Edge]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: dict[str, Edge] = {}
        syntax = ast.parse(path.read_text(), str(path))
        for base, member, line in _imports(syntax, name, is_package):
            target = _target(base, member, modules, package)
            if target != name and target not in edges:
                edges[target] = Edge(name, target, line)
        graph[name] = list(edges.values())
    return graph


def _imports(
    syntax: ast.AST, module: str, is_package: bool
) -> Iterator[tuple[str, str | None, int]]:
    """(module, name imported from it or None, line) for every import statement anywhere."""
    for node in ast.walk(syntax):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            for alias in node.names:
                yield base, alias.name, node.lineno


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name of the module a `from` import names (`from ..store import x`)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def _target(base: str, member: str | None, modules: Mapping[str, Path], package: str) -> str:
    """`from base import member` imports the module `base.member` if there is one, else a
    name of `base`; outside the package we cannot tell, and `base` is what was imported."""
    if base.partition(".")[0] == package and member is not None and f"{base}.{member}" in modules:
        return f"{base}.{member}"
    return base


def find_cycles(graph: Mapping[str, list[Edge]]) -> list[list[str]]:
    """The shortest cycle through each module that is on one, each cycle once.

    A group of modules that import each other may hold several cycles (a module
    and each of its helpers that imports it back): each is named, so that the
    message lists every edge there is to cut.
    """
    internal = {
        name: [edge.imported for edge in edges if edge.imported in graph]
        for name, edges in graph.items()
    }
    cycles: set[tuple[str, ...]] = set()
    for group in _strongly_connected(internal):
        if len(group) > 1:
            cycles.update(_rotated(_cycle_within(member, group, internal)) for member in group)
    return sorted(list(cycle) for cycle in cycles)


def _rotated(cycle: list[str]) -> tuple[str, ...]:
    """The cycle starting at its first module by name: one spelling for each cycle."""
    ring = cycle[:-1]
    first = ring.index(min(ring))
    ring = ring[first:] + ring[:first]
    return (*ring, ring[0])


def _strongly_connected(graph: Mapping[str, list[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on a deep import chain)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group: set[str] = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
    return groups


def _cycle_within(start: str, group: set[str], graph: Mapping[str, list[str]]) -> list[str]:
    """A shortest path from `start` back to itself inside `group` (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node]):
                if succ not in group or succ in came_from:
                    continue
                came_from[succ] = node
                if succ == start:
                    path = [start]
                    while path[-1] != start or len(path) == 1:
                        path.append(came_from[path[-1]])
                    return path[::-1]
                following.append(succ)
        frontier = following
    raise AssertionError(f"{start} is in a cycle but no path leads back to it")


def broken_rules(graph: Mapping[str, list[Edge]], rules: Iterable[Rule]) -> list[str]:
    return [
        f"{edge}: {rule.name}: {rule.reason}"
        for rule in rules
        for edges in graph.values()
        for edge in edges
        if rule.breaks(edge.importer, edge.imported)
    ]


# -- the tests ------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Edge]]:
    return build_graph(ROOT)


def describe_cycle(cycle: list[str], graph: Mapping[str, list[Edge]]) -> str:
    """`a (line 3) -> b (line 9) -> a`: each module with the line of its import of the next."""
    lines = {(e.importer, e.imported): e.line for edges in graph.values() for e in edges}
    steps = [f"{a} (line {lines[a, b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join([*steps, cycle[-1]])


def test_no_import_cycle(graph: dict[str, list[Edge]]) -> None:
    cycles = [describe_cycle(cycle, graph) for cycle in find_cycles(graph)]
    assert not cycles, "import cycles in jobd/:\n" + "\n".join(cycles)


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_layer_rule(graph: dict[str, list[Edge]], rule: Rule) -> None:
    broken = broken_rules(graph, [rule])
    assert not broken, "\n".join(broken)


def test_the_graph_is_jobds(graph: dict[str, list[Edge]]) -> None:
    """The rules above are only as good as the graph: it must hold what jobd imports."""
    assert {"jobd", "jobd.records", "jobd.store.contract", "jobd.cli"} <= graph.keys()
    edges = {(e.importer, e.imported) for edges in graph.values() for e in edges}
    assert ("jobd.store.sql", "sqlalchemy") in edges
    assert ("jobd", "jobd.client") in edges
    assert sum(len(edges) for edges in graph.values()) > 150


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_every_rule_names_modules_there_are(graph: dict[str, list[Edge]], rule: Rule) -> None:
    """A rule whose modules were moved away would pass forever without checking anything."""
    names = graph.keys() | {e.imported for edges in graph.values() for e in edges}
    for part in ("importers", "forbidden", "allowed", "exempt"):
        patterns = getattr(rule, part)
        assert not patterns or any(_matches(name, patterns) for name in names), (
            f"{rule.name}: no module matches its {part} {patterns}"
        )


def write_package(root: Path, files: Mapping[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_find_a_planted_cycle_and_forbidden_imports(tmp_path: Path) -> None:
    """A tiny `jobd` with every form of import the builder must see."""
    write_package(
        tmp_path,
        {
            "jobd/__init__.py": "from jobd.client import Client\n",
            "jobd/client.py": "class Client: ...\n",
            # a cycle: store -> store.sql (a submodule, imported by its package)
            # -> records (inside a function) -> store (only for type checking)
            "jobd/store/__init__.py": "from jobd.store import sql\n",
            "jobd/store/sql.py": "def f():\n    from jobd.records import Job\n",
            "jobd/records.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from jobd.store import open_store\n"
                "class Job: ...\n"
            ),
            # forbidden: the worker reaches the store internals and SQLAlchemy, relatively
            "jobd/worker/__init__.py": "",
            "jobd/worker/process.py": "from ..store import sql\nimport sqlalchemy.orm\n",
            "jobd/wire.py": "from . import records\n",
        },
    )
    graph = build_graph(tmp_path)
    edges = {(e.importer, e.imported) for edges in graph.values() for e in edges}
    assert ("jobd.wire", "jobd.records") in edges  # `from . import records`: the module
    assert ("jobd", "jobd.client") in edges  # `from jobd.client import Client`: the module

    assert find_cycles(graph) == [["jobd.records", "jobd.store", "jobd.store.sql", "jobd.records"]]
    assert broken_rules(graph, RULES) == [
        "jobd.records imports jobd.store (line 3): records stand alone: " + RULES[0].reason,
        "jobd.worker.process imports jobd.store.sql (line 1): "
        "workers never touch the master or the store: " + RULES[3].reason,
        "jobd.worker.process imports sqlalchemy.orm (line 2): "
        "database libraries live in the store: " + RULES[5].reason,
        "jobd.worker.process imports jobd.store.sql (line 1): "
        "store internals stay inside the store: " + RULES[7].reason,
    ]
