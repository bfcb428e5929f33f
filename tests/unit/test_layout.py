"""The shape of the package: one package per step of the data flow, small modules, no
import circle (imports inside functions count), and a map in docs/architecture.md that
names every package."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cmqueue"
#: Modules allowed directly in cmqueue/ (packages do not count).
MAX_TOP_MODULES = 12
#: Lines a module may have at most (aim for about 500).
MAX_LINES = 600


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of cmqueue by dotted name: its file and whether it is a package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _owner(name: str, modules: dict) -> str | None:
    """The module ``name`` is, or the one it is an attribute of."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Which cmqueue modules each cmqueue module imports, at any level of its code."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        base = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                    source = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # `from pkg import mod` imports the module; `from mod import name` the module
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            for target in targets:
                owner = _owner(target, modules) if target.startswith("cmqueue") else None
                if owner and owner != name:
                    graph[name].add(owner)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_circle_finder_finds_a_circle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_cmqueues_modules_counting_imports_inside_functions():
    assert circles(import_graph()) == []


def test_few_modules_at_the_top_and_none_too_long():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_package_has_a_docstring_and_is_named_in_the_architecture_map():
    text = (ROOT / "docs" / "architecture.md").read_text()
    packages = sorted(p.parent for p in PACKAGE.rglob("__init__.py"))
    assert len(packages) >= 10
    for package in packages:
        dotted = ".".join(package.relative_to(ROOT).parts)
        assert ast.get_docstring(ast.parse((package / "__init__.py").read_text())), f"{dotted} has no docstring"
        if package != PACKAGE:
            assert f"`{package.relative_to(ROOT)}/`" in text, f"docs/architecture.md does not name {dotted}"


def test_the_public_names_and_the_celery_task_names_are_where_they_were():
    import cmqueue
    from cmqueue.queue.celery_tasks import REDUCE_TASK, RUN_TASK, TRANSFER_TASK

    assert {cmqueue.Cluster.__name__, cmqueue.Cloud.__name__, cmqueue.Pool.__name__, cmqueue.Job.__name__} == {
        "Cluster", "Cloud", "Pool", "Job"}
    assert (RUN_TASK, TRANSFER_TASK, REDUCE_TASK) == ("cmq.run", "cmq.transfer", "cmq.reduce")


def test_every_command_module_and_every_module_the_launcher_preloads_imports():
    from cmqueue.cli.launcher import PRELOAD
    from cmqueue.cli.main import COMMAND_MODULES, command

    for name in COMMAND_MODULES:
        assert callable(command(name)), name
    for module in PRELOAD:
        importlib.import_module(module)
