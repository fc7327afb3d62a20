"""The import rewrite (`devkit.namespace`): folder names to installed names, for imports,
`-m` invocations and module-naming strings only, and idempotent, so that it can be run
again after merging branches written against the old names."""

from __future__ import annotations

from pathlib import Path

from devkit.layout import product_packages
from devkit.namespace import rewrite_pyproject, rewrite_python, rewrite_text

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "commands", "storage")

BEFORE = '''"""Runs `python -m bot run`."""
from bot.config import Config
from commands import texts
from commands.report_chart import (
    CHART_KIND,
)
from devkit.synapse import LocalSynapse
import bot.cli as cli
import botocore
from bottle import route

NOTICE = "bot.undecryptable"
PATH = "bot.password"
COMMAND = [sys.executable, "-m", "bot", "run"]
directory = files("storage") / "migrations"


def test(monkeypatch, caplog):
    monkeypatch.setattr("bot.chaser.PLAN_BATCH", 2)
    with caplog.at_level(logging.INFO, logger="storage.db"):
        pass
'''

AFTER = '''"""Runs `python -m liaison.bot run`."""
from liaison.bot.config import Config
from liaison.commands import texts
from liaison.commands.report_chart import (
    CHART_KIND,
)
from devkit.synapse import LocalSynapse
import liaison.bot.cli as cli
import botocore
from bottle import route

NOTICE = "bot.undecryptable"
PATH = "bot.password"
COMMAND = [sys.executable, "-m", "liaison.bot", "run"]
directory = files("liaison.storage") / "migrations"


def test(monkeypatch, caplog):
    monkeypatch.setattr("liaison.bot.chaser.PLAN_BATCH", 2)
    with caplog.at_level(logging.INFO, logger="liaison.storage.db"):
        pass
'''


def test_the_product_folders_are_the_packages_with_an_init_but_the_tools() -> None:
    assert set(PACKAGES) <= set(product_packages(ROOT))
    assert not {"devkit", "tests", "bench"} & set(product_packages(ROOT))


def test_imports_runs_and_module_names_are_rewritten_and_nothing_else() -> None:
    notes: list[str] = []
    assert rewrite_python(BEFORE, PACKAGES, ROOT, notes.append) == AFTER
    assert rewrite_python(AFTER, PACKAGES, ROOT, notes.append) == AFTER


def test_a_bare_import_of_a_product_module_is_left_for_a_person() -> None:
    notes: list[str] = []
    assert rewrite_python("import bot.cli\n", PACKAGES, ROOT, notes.append) == "import bot.cli\n"
    assert notes and "by hand" in notes[0]


def test_text_files_and_pyproject() -> None:
    assert rewrite_text("`python -m bot run` and -m bench", PACKAGES) == (
        "`python -m liaison.bot run` and -m bench")
    pyproject = ('[project.scripts]\nliaison = "bot.cli:main"\n\n[tool.mypy]\nstrict = true\n'
                 'packages = ["bot", "commands", "storage", "devkit"]\n')
    once = rewrite_pyproject(pyproject, PACKAGES)
    assert once == ('[project.scripts]\nliaison = "liaison.bot.cli:main"\n\n[tool.mypy]\n'
                    'strict = true\npackages = ["liaison", "devkit"]\n')
    assert rewrite_pyproject(once, PACKAGES) == once
