"""Prerequisites: a task's ``needs:`` pulls the tasks it names into the workflow, in
dependency order, as make does. Pure: from an expression tree and the tasks to the tree
that runs.

- When the expression is a set of targets (``train``, or ``train | report``), the
  targets and everything they need, recursively, run in waves: a step starts with the
  wave after the last of its prerequisites; the steps of one wave run in parallel.
- Any other expression runs after the waves of the prerequisites it does not name
  itself; a prerequisite it names must run before the task that needs it (in an earlier
  part of a ``;``), or the expression is refused with the order it lacks.

A cycle is refused with its path (``a → b → a``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.errors import UsageError
from .expr import Name, Node, Par, Seq, names


def closure(start: list[str], tasks: Mapping[str, Any]) -> list[str]:
    """``start`` and every task they need, recursively (each once, prerequisites first).
    Unknown names and cycles are usage errors naming them."""
    order: list[str] = []
    state: dict[str, str] = {}              # "open" while its needs are walked, then "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            cycle = path[path.index(name):]
            raise UsageError(f"tasks: needs form a cycle: {' → '.join(cycle)}")
        if name not in tasks:
            if len(path) == 1:
                raise UsageError(f"unknown task {name}; tasks: {', '.join(sorted(tasks))}")
            raise UsageError(f"task {path[-2]}: needs {name}, which is no task; tasks: {', '.join(sorted(tasks))}")
        state[name] = "open"
        for need in tasks[name].needs:
            visit(need, [*path, need])
        state[name] = "done"
        order.append(name)

    for name in start:
        visit(name, [name])
    return order


def waves(members: list[str], tasks: Mapping[str, Any]) -> list[list[str]]:
    """``members`` in waves: a task's wave is one after the latest wave of the members
    it needs (prerequisites outside ``members`` do not count)."""
    inside = set(members)
    depth: dict[str, int] = {}

    def of(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((of(n) for n in tasks[name].needs if n in inside), default=-1)
        return depth[name]

    out: list[list[str]] = []
    for name in members:                     # members come prerequisites first
        d = of(name)
        while len(out) <= d:
            out.append([])
        out[d].append(name)
    return out


def _as_tree(groups: list[list[str]]) -> list[Node]:
    items: list[Node] = []
    for group in groups:
        nodes = tuple(Name(n) for n in group)
        items.append(nodes[0] if len(nodes) == 1 else Par(nodes))
    return items


def _targets(tree: Node) -> list[str] | None:
    """The names of an expression that is a name or names joined by ``|``, else None."""
    if isinstance(tree, Name):
        return [tree.name]
    if isinstance(tree, Par) and all(isinstance(i, Name) for i in tree.items):
        return [i.name for i in tree.items]  # type: ignore[union-attr]
    return None


def _path(tree: Node, name: str) -> list[tuple[Node, int]] | None:
    """The nodes from the root to the first occurrence of ``name``, each with the index
    of the item taken."""
    if isinstance(tree, Name):
        return [] if tree.name == name else None
    for i, item in enumerate(tree.items):
        sub = _path(item, name)
        if sub is not None:
            return [(tree, i), *sub]
    return None


def runs_before(tree: Node, first: str, then: str) -> bool:
    """True when the run of ``first`` ends before the run of ``then`` starts: they sit in
    different parts of one ``;``, ``first``'s part earlier."""
    a, b = _path(tree, first), _path(tree, then)
    if a is None or b is None:
        return False
    for (node_a, i), (node_b, j) in zip(a, b, strict=False):
        if node_a is not node_b:
            return False
        if i != j:
            return isinstance(node_a, Seq) and i < j
    return False


def expand(tree: Node, tasks: Mapping[str, Any]) -> Node:
    """The tree that runs ``tree`` with every prerequisite (the same tree when no task
    involved needs anything)."""
    named = names(tree)
    everything = closure(named, tasks)
    if not any(tasks[n].needs for n in everything):
        return tree
    targets = _targets(tree)
    if targets is not None:
        items = _as_tree(waves(everything, tasks))
        return items[0] if len(items) == 1 else Seq(tuple(items))
    extra = [n for n in everything if n not in set(named)]
    tail = tree.items if isinstance(tree, Seq) else (tree,)
    out = tree if not extra else Seq((*_as_tree(waves(extra, tasks)), *tail))
    for name in everything:
        for need in tasks[name].needs:
            if not runs_before(out, need, name):
                raise UsageError(f"task {name} needs {need}, but in {str(tree)!r} {need} does not run before "
                                 f"{name}: put it in an earlier part of a ';' (or leave it out: needs adds it)")
    return out
