"""The house keeps its plan (docs/architecture.md).

- The pure core (`commands/`) imports no configuration loading, storage, handlers, shell,
  Matrix or scheduler.
- `config/` (the YAML, its models and cross-checks) imports only the core.
- `storage/` imports the core's records and nothing of the handlers or the shell.
- `handlers/` import the core and storage, never the shell (`bot/`) or the dev kit.
- No two folders import each other; the product never imports the dev kit at import
  time (the `demo` subcommand loads it lazily, from a checkout).
- Nothing outside `storage/` runs SQL.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from devkit.layout import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("commands", "config", "storage", "handlers", "bot", "devkit")
THIRD_PARTY_SHELL = ("nio", "aiosqlite", "apscheduler")
FORBIDDEN = {
    "commands": {"config", "storage", "handlers", "bot", "devkit", *THIRD_PARTY_SHELL},
    "config": {"storage", "handlers", "bot", "devkit", *THIRD_PARTY_SHELL},
    "storage": {"handlers", "bot", "devkit", "nio", "apscheduler"},
    "handlers": {"bot", "devkit", "nio", "apscheduler"},
    "bot": {"devkit"},
}
SQL_CALLS = frozenset({"execute", "execute_fetchall", "executemany", "executescript"})


def root_of(module: str) -> str:
    """The top-level folder a module lives in: `bot` for `bot.app` and for its installed
    name `liaison.bot.app` (devkit/layout.py)."""
    parts = module.split(".")
    return parts[1] if parts[0] == DISTRIBUTION and len(parts) > 1 else parts[0]


def imported_modules(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The absolute imports of a module; with `top_level_only`, those outside functions
    (an import inside a function runs only when that function does)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules_of(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def name_of(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_each_folder_imports_only_what_its_layer_may(folder: str) -> None:
    forbidden = FORBIDDEN[folder]
    reached = {name_of(path): sorted(root for module in imported_modules(
                   path, top_level_only=folder == "bot")
               if (root := root_of(module)) in forbidden)
               for path in modules_of(folder)}
    assert {name: roots for name, roots in reached.items() if roots} == {}


def folder_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {folder: set() for folder in FOLDERS}
    for folder in FOLDERS:
        for path in modules_of(folder):
            for module in imported_modules(path, top_level_only=True):
                root = root_of(module)
                if root in graph and root != folder:
                    graph[folder].add(root)
    return graph


def test_no_two_folders_import_each_other() -> None:
    graph = folder_graph()
    both_ways = sorted((a, b) for a in FOLDERS for b in graph[a] if a < b and a in graph[b])
    assert both_ways == []


def test_the_layers_stack_in_one_direction() -> None:
    """core ← config ← storage ← handlers ← bot: each imports only the layers below it
    (the dev kit, tests and benchmarks sit on top and may use anything)."""
    order = ["commands", "config", "storage", "handlers", "bot"]
    graph = folder_graph()
    upward = sorted((folder, target) for folder in order for target in graph[folder]
                    if target in order and order.index(target) > order.index(folder))
    assert upward == []


def sql_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS]


@pytest.mark.parametrize("folder", ["bot", "commands", "config", "handlers", "devkit"])
# (bench/ seeds its own databases)
def test_only_storage_runs_sql(folder: str) -> None:
    found = {name_of(path): lines for path in modules_of(folder) if (lines := sql_calls(path))}
    assert found == {}, f"SQL outside storage/: {found}"


def test_the_checks_see_the_code() -> None:
    """The rules above would pass on an empty tree: make sure they read real modules and
    that a forbidden import would be seen."""
    assert len(modules_of("commands")) > 20 and len(modules_of("handlers")) >= 4
    assert "storage" in {root_of(m) for m in imported_modules(ROOT / "handlers/cases.py")}
    assert folder_graph()["bot"] >= {"handlers", "storage", "commands"}
