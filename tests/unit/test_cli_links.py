"""`liaison identity`, `liaison link check` and `liaison link export`: what operators of
two linked bots run to pin each other's identity and to watch the link."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from liaison.bot.app import CROSS_SIGNING_FILE
from liaison.bot.cli import EXIT_OK, main
from liaison.bot.crosssigning import build_public_keys, cross_signing_public_key, load_seeds

BOT = "@liaison:kz.example"

CONFIG = f"""\
homeserver:
  url: http://127.0.0.1:8008
bot:
  user_id: "{BOT}"
  password: {{env: TEST_LIAISON_PASSWORD}}
  pickle_key: {{env: TEST_LIAISON_PICKLE}}
data_dir: data
trust:
  policy: tofu
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


def test_identity_creates_the_seeds_offline_and_prints_the_master_key_the_bot_publishes(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["identity", "-c", str(config_file)]) == EXIT_OK
    out, err = capsys.readouterr()
    printed = out.strip()
    seeds_path = config_file.parent / "data" / CROSS_SIGNING_FILE
    assert "created" in err and str(seeds_path) in err
    assert stat.S_IMODE(seeds_path.stat().st_mode) == 0o600
    seeds = load_seeds(seeds_path)
    assert seeds is not None
    # exactly the master key `ensure_cross_signed` uploads from these seeds
    assert printed == cross_signing_public_key(build_public_keys(BOT, seeds)["master_key"])
    assert len(printed) == 43 and "=" not in printed


def test_identity_never_replaces_existing_seeds(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["identity", "-c", str(config_file)]) == EXIT_OK
    first = capsys.readouterr().out
    seeds_path = config_file.parent / "data" / CROSS_SIGNING_FILE
    before = seeds_path.read_text()
    assert main(["identity", "-c", str(config_file)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == first and err == ""
    assert seeds_path.read_text() == before


def test_identity_key_is_accepted_as_a_partners_pinned_key(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from liaison.commands.links import Link

    assert main(["identity", "-c", str(config_file)]) == EXIT_OK
    key = capsys.readouterr().out.strip()
    link = Link(name="kz", partner=BOT, room="!link:kz.example", partner_master_key=key,
                countries=("KZ",))
    assert link.partner_master_key == key
