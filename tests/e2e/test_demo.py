"""The README's first command: `liaison demo` runs the whole flow to the end. A new user
runs it before anything else, so a regression in it is caught here, not by them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

DEMO_TIMEOUT_S = 300


async def test_the_demo_runs_the_whole_flow_to_the_end(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "liaison.bot", "demo", "--workdir", str(workdir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), DEMO_TIMEOUT_S)
    text = output.decode()
    assert process.returncode == 0, text[-4000:]
    for line in (
        "Termez reads KZ-0001 in English, Hairatan in Arabic at Kabul time",
        "the bot matches it to the Cyrillic name in KZ-0001 and tells both case threads",
        "Возможное совпадение (100%): имя Мухаммад Абдулла из KZ-0001 похоже на лицо в AF-0001 "
        "поста Погранпост Хайратан (AF-HAIRATAN).",
        "After 8 seconds it escalates to Termez's supervisor in a direct message",
        "uploaded encrypted and decrypted by the supervisor's client",
        "откладывает ответ на KZ-0003 на 12 ч",  # the delay, told to the requester
        "ответ в срок",  # !status: answered on time
        "UZ-TERMEZ urgent-direct: answered on time 1 of 1",  # liaison stats
        "TLP:RED KZ-0004 направлено личными сообщениями: @bekzod:localhost.",
        "reads KZ-0004 in an encrypted direct message with the bot",
        "GET /healthz → 200",
        "== Done. Everything above was end-to-end encrypted between real clients.",
    ):
        assert line in text, f"{line!r} missing from the demo's output:\n{text[-4000:]}"
    red_content = "Источник: водитель Рустам К."
    assert text.count(red_content) == 2, "RED content: typed once, read once, in the DM"
    assert (workdir / "report-7d.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


async def test_the_links_demo_shows_a_case_crossing_between_two_countries_bots(
    tmp_path: Path,
) -> None:
    """`make demo LINKS=1`: two homeservers, two bots, one link room."""
    workdir = tmp_path / "links"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devkit.demo", "--links", "--workdir", str(workdir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), DEMO_TIMEOUT_S)
    text = output.decode()
    assert process.returncode == 0, text[-4000:]
    for line in (
        "• Таможенный пост Термез (UZ-TERMEZ): UZ, customs, до TLP:AMBER",  # !posts
        "TLP:AMBER Flash alert KZ-0001",  # Termez reads it in English, from the UZ bot
        "TLP:AMBER Escalation: KZ-0001",  # by Uzbek rules, to Termez's supervisor
        "Таможенный пост Термез (UZ-TERMEZ) подтвердил получение KZ-0001",
        "Stopped at the bridge, driver detained.",
        "UZ-TERMEZ: TLP:AMBER+STRICT не передаётся по связи",
        "== Done. Each bot kept its own record",
    ):
        assert line in text, f"{line!r} missing from the links demo's output:\n{text[-4000:]}"
    assert text.count("[KZ] exit 0") == 1 and text.count("[UZ] exit 0") == 1, text[-2000:]
