"""The release check (docs/releasing.md): the sdist and the wheel built from it, as an
operator gets them. The wheel holds one import package and the compiled catalogues; a
fresh virtualenv on each supported Python installs it (without the charts extra) and
runs `liaison --version`, `liaison version` and `liaison check-config` on the example
configuration. An interpreter that is not on the machine is skipped, saying so.

Needs no homeserver, but builds and installs for a minute or two: it lives with the
slow tests, on one worker (`xdist_group`), so the distribution is built once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from devkit.layout import DISTRIBUTION, product_packages

ROOT = Path(__file__).resolve().parents[2]
PYTHONS = ("3.11", "3.12", "3.13")
pytestmark = pytest.mark.xdist_group("wheel")


def version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


def run(*args: str | Path, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True,
                          env=env, cwd=cwd, check=False, timeout=600)


def tracked_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout's tracked files, copied: a release is built from a clean tree, and
    the build's staging directory then lives outside the checkout the other test
    workers run in (in the checkout itself it once lost a file mid-build)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                            check=False)
    if listed.returncode != 0:  # not a git checkout (an unpacked sdist): build it as it is
        return ROOT
    source = tmp_path_factory.mktemp("source")
    for name in filter(None, listed.stdout.decode().split("\0")):
        path = ROOT / name
        if path.is_file() and not path.is_symlink():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name)
    return source


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """`python -m build`: the sdist, then the wheel from the sdist (so a file the sdist
    lacks fails the wheel's build)."""
    out = tmp_path_factory.mktemp("dist")
    built = run(sys.executable, "-m", "build", "--outdir", out, tracked_copy(tmp_path_factory))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    name = f"{DISTRIBUTION}-{version()}"
    return Dist(sdist=out / f"{name}.tar.gz", wheel=out / f"{name}-py3-none-any.whl")


def test_the_wheel_installs_one_import_package_with_the_compiled_catalogues(dist: Dist) -> None:
    names = zipfile.ZipFile(dist.wheel).namelist()
    assert {name.split("/")[0] for name in names} == {
        DISTRIBUTION, f"{DISTRIBUTION}-{version()}.dist-info"}
    shipped = {name.split("/")[1] for name in names if name.startswith(f"{DISTRIBUTION}/")}
    assert shipped == set(product_packages())  # every product folder; no devkit, tests
    assert not [name for name in names if name.endswith(".po")]
    for language in ("ru", "ar"):
        assert f"{DISTRIBUTION}/commands/locale/{language}/LC_MESSAGES/liaison.mo" in names
    assert f"{DISTRIBUTION}/storage/migrations/0001_foundation.sql" in names
    metadata = zipfile.ZipFile(dist.wheel).read(
        f"{DISTRIBUTION}-{version()}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Requires-Python: >=3.11" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any(line.startswith("Requires-Dist: tzdata") for line in requires)
    [matplotlib] = [line for line in requires if "matplotlib" in line]
    assert 'extra == "charts"' in matplotlib


def test_the_sdist_is_the_whole_project(dist: Dist) -> None:
    top = f"{DISTRIBUTION}-{version()}"
    names = {name.removeprefix(top + "/") for name in tarfile.open(dist.sdist).getnames()}
    for expected in ("LICENSE", "CHANGELOG.md", "README.md", "config.example.yaml",
                     "constraints.txt", "Makefile", "Containerfile", "compose.yaml",
                     "deploy/liaison.service", "deploy/container/config.yaml",
                     "docs/deployment.md", "docs/releasing.md", "tests/e2e/test_wheel.py",
                     "tests/unit/test_parser.py", "devkit/synapse.py",
                     "commands/locale/ru/LC_MESSAGES/liaison.po", "setup.py"):
        assert expected in names, expected
    assert not [name for name in names if "node_modules" in name or name.endswith(".mo")]


def find_python(wanted: str) -> str | None:
    found = run(ROOT / ".ci" / "find-python", wanted).stdout.strip()
    return found or None


@pytest.mark.parametrize("wanted", PYTHONS)
def test_a_fresh_virtualenv_installs_the_wheel_and_checks_the_example_config(
        dist: Dist, wanted: str, tmp_path: Path) -> None:
    python = find_python(wanted)
    if python is None:
        pytest.skip(f"Python {wanted} is not on this machine (PATH or pyenv)")
    venv = tmp_path / "venv"
    made = run(python, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    installed = run(venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check",
                    "-c", ROOT / "constraints.txt", dist.wheel)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    liaison = venv / "bin" / "liaison"
    away = tmp_path / "elsewhere"  # not the checkout: nothing may come from it
    away.mkdir()
    env = {key: value for key, value in os.environ.items()
           if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}

    said = run(liaison, "--version", cwd=away, env=env)
    assert (said.returncode, said.stdout.strip()) == (0, f"liaison {version()}")
    said = run(liaison, "version", cwd=away, env=env)
    assert said.returncode == 0 and said.stdout.splitlines()[0] == f"liaison {version()}"
    assert f"Python {wanted}." in said.stdout

    example = ROOT / "config.example.yaml"
    checked = run(liaison, "check-config", example, cwd=away,
                  env={**env, "LIAISON_PASSWORD": "x", "LIAISON_PICKLE_KEY": "y"})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith(f"{example}: OK")

    demo = run(liaison, "demo", cwd=away, env=env)
    assert demo.returncode == 1 and "make demo" in demo.stderr

    # Installed under one name only, with the catalogues compiled and no charts extra.
    probe = run(venv / "bin" / "python", "-c", "\n".join((
        "import importlib.util, sys",
        "from importlib import metadata",
        "top = {str(f).split('/')[0] for f in metadata.files('liaison')}",
        "print(sorted(t for t in top if not t.startswith('..')))",
        "print([m for m in ('bot', 'commands', 'storage', 'devkit')",
        "       if importlib.util.find_spec(m) is not None])",
        "from liaison.bot.reports import charts_installed",
        "from liaison.commands.texts import text",
        "print(charts_installed())",
        "print(text('chart.not_installed', 'ru'))",
    )), cwd=away, env=env)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines() == [
        str(sorted([DISTRIBUTION, f"{DISTRIBUTION}-{version()}.dist-info"])),
        "[]",
        "False",
        "Без диаграммы: в этой установке Liaison диаграммы не установлены "
        "(дополнение liaison[charts]).",
    ]
