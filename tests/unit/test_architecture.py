"""The house keeps its plan (docs/architecture.md): the pure core imports no storage,
no Matrix and no scheduler, and nothing outside `storage/` runs SQL.

`SHELL_IN_CORE` lists the modules of `commands/` that still reach the database or the
shell; it may only shrink (moving handlers out of the core is issue 14's work). A new
module that imports the shell, or an import added to a pure one, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from devkit.layout import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = ("storage", "bot", "nio", "aiosqlite", "apscheduler", "devkit")
SHELL_IN_CORE = frozenset({  # handlers: they read and write the database
    "commands/cases.py", "commands/case_events.py", "commands/chase_commands.py",
    "commands/lang.py",
})
SQL_CALLS = frozenset({"execute", "execute_fetchall", "executemany", "executescript"})


def root_of(module: str) -> str:
    """The top-level folder a module lives in: `bot` for `bot.app` and for its installed
    name `liaison.bot.app` (devkit/layout.py)."""
    parts = module.split(".")
    return parts[1] if parts[0] == DISTRIBUTION and len(parts) > 1 else parts[0]


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(root_of(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(root_of(node.module))
    return roots


def core_modules() -> list[Path]:
    return sorted((ROOT / "commands").glob("*.py"))


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_the_pure_core_imports_no_shell(path: Path) -> None:
    name = path.relative_to(ROOT).as_posix()
    reached = sorted(imported_roots(path) & set(FORBIDDEN_IN_CORE))
    if name in SHELL_IN_CORE:
        assert reached, f"{name} is pure now: take it off SHELL_IN_CORE"
        return
    assert not reached, f"{name} imports {reached}: the core decides, the shell does"


def test_the_list_of_shell_modules_in_the_core_names_real_files() -> None:
    assert all((ROOT / name).is_file() for name in SHELL_IN_CORE)


def sql_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS]


@pytest.mark.parametrize("folder", ["bot", "commands", "devkit"])  # bench/ seeds its own
def test_only_storage_runs_sql(folder: str) -> None:
    found = {path.relative_to(ROOT).as_posix(): lines
             for path in sorted((ROOT / folder).rglob("*.py"))
             if (lines := sql_calls(path))}
    assert found == {}, f"SQL outside storage/: {found}"
