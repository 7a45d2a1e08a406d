"""No import cycle in ``src/aupguard``: the import graph, read with ``ast``, has no strongly
connected component of more than one module. Imports inside functions count (a lazy import
only defers a cycle to the first call); ``if TYPE_CHECKING:`` blocks do not (they never run).

The pipeline's modules (``PIPELINE``) are being rewritten to remove the last cycles: until
then the graph is checked without them, and ``REMAINING`` names the one cycle outside them
that waits on that rewrite (``counters_from_uri`` moves out of ``counters.base`` once the
engine imports it from the registry). Both shrink to nothing; no new cycle can appear."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PIPELINE = frozenset(
    {"aupguard.engine.safeguards", "aupguard.engine.versioned", "aupguard.engine.gates", "aupguard.outcome"}
)
REMAINING = [["aupguard.counters.base", "aupguard.counters.redis"]]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "aupguard").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run: anywhere in the module, functions included, but not in an
    ``if TYPE_CHECKING:`` block."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_graph_is_read_as_python_imports_it() -> None:
    graph = import_graph()
    assert "aupguard.engine.context" in graph["aupguard.adapters.lifecycle"]  # from ..engine.context import
    assert "aupguard.testing.double" in graph["aupguard.testing"]  # from .double import
    assert "aupguard.counters.redis" in graph["aupguard.counters.base"]  # an import inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_outside_the_pipeline() -> None:
    graph = {name: targets - PIPELINE for name, targets in import_graph().items() if name not in PIPELINE}
    assert cycles(graph) == REMAINING
