"""One version, in one place: pyproject.toml. The installed package, `liaison --version`
and the changelog's newest release all say the same (docs/releasing.md)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from liaison.bot.cli import main

ROOT = Path(__file__).resolve().parents[2]


def declared_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def test_the_installed_package_has_the_declared_version() -> None:
    assert metadata.version("liaison") == declared_version()


def test_liaison_version_prints_the_declared_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"liaison {declared_version()}"
    main(["version"])
    assert capsys.readouterr().out.splitlines()[0] == f"liaison {declared_version()}"


def test_the_changelog_starts_with_the_declared_version() -> None:
    releases = re.findall(r"(?m)^## \[(\d[^\]]*)\] - \d{4}-\d{2}-\d{2}$",
                          (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"))
    assert releases and releases[0] == declared_version()
