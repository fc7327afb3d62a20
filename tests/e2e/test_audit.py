"""The audit log end to end: a short case across three posts on a real Synapse lands on
the record action by action; `liaison audit verify` (run as the operator runs it, beside
the running bot) passes; one row edited by hand with sqlite3 is named by the next
verify, which exits 4."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path

from devkit.botprocess import BotProcess
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_case_flow import db_rows, relayed, told
from tests.e2e.test_cases import ALERT, three_posts

REPO = Path(__file__).resolve().parents[2]


async def liaison(bot: BotProcess, *args: str) -> tuple[int, str, str]:
    """`liaison ARGS -c CONFIG` as a separate process, as an operator runs it; it needs
    no secret from the environment."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "liaison.bot", *args, "-c", str(bot.config_path), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def recorded(bot: BotProcess, action: str, count: int) -> None:
    """Until the audit log holds `count` entries of `action` (deliveries are recorded
    when the homeserver's answer is handled, a moment after officers see them)."""
    deadline = time.monotonic() + 30
    while True:
        rows = db_rows_of(bot, "SELECT COUNT(*) FROM audit_log WHERE action = ?", action)
        if rows[0][0] >= count:
            return
        assert time.monotonic() < deadline, f"{action}: {rows[0][0]} of {count} recorded"
        await asyncio.sleep(0.1)


def db_rows_of(bot: BotProcess, query: str, *values: object) -> list[tuple[object, ...]]:
    uri = f"{(bot.data_dir / 'liaison.db').as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        rows = conn.execute(query, values).fetchall()
    conn.close()
    return [tuple(row) for row in rows]


async def test_a_worked_case_is_on_the_record_and_a_row_edited_by_hand_is_named(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts = await three_posts(officer_factory, bot_factory)
    kz, uz, tj, bot = posts.kz, posts.uz, posts.tj, posts.bot

    sent = await posts.ask(kz, posts.kz_room, ALERT)
    assert (sent.body or "").startswith("KZ-0001: Urgent alert sent to:"), sent.body
    await relayed(posts, uz, posts.uz_room, "KZ-0001")
    tj_case = await relayed(posts, tj, posts.tj_room, "KZ-0001")
    acked = await posts.ask(uz, posts.uz_room, "!ack KZ-0001")
    assert (acked.body or "").startswith("Acknowledged KZ-0001"), acked.body
    await tj.send_text(posts.tj_room, "Seen the truck at 18:40", thread_root=tj_case.event_id)
    await told(posts, kz, posts.kz_room, "KZ-0001", "reply")
    refused = await posts.ask(tj, posts.tj_room, "!close KZ-0001 Not yours to close")
    assert (refused.body or "").startswith("Only Zhibek (KZ-ZHIBEK)"), refused.body
    await posts.ask(kz, posts.kz_room, "!close KZ-0001 Seized 40 kg at the bridge")
    await told(posts, uz, posts.uz_room, "KZ-0001", "closed")
    await recorded(bot, "delivered", 2)

    trail = db_rows(posts, "SELECT action, actor, case_ref, room_id FROM audit_log ORDER BY seq")
    assert trail[0][:2] == ("config-loaded", "liaison")
    assert [row for row in trail if row[2] == "KZ-0001" and row[0] != "delivered"] == [
        ("created", kz.user_id, "KZ-0001", posts.kz_room),
        ("routed", "liaison", "KZ-0001", posts.uz_room),
        ("routed", "liaison", "KZ-0001", posts.tj_room),
        ("acknowledged", uz.user_id, "KZ-0001", posts.uz_room),
        ("replied", tj.user_id, "KZ-0001", posts.tj_room),
        ("acknowledged", tj.user_id, "KZ-0001", posts.tj_room),
        ("command-refused", tj.user_id, "KZ-0001", posts.tj_room),
        ("closed", kz.user_id, "KZ-0001", posts.kz_room),
    ]
    assert sorted(row[3] for row in trail if row[0] == "delivered") == sorted(
        [posts.uz_room, posts.tj_room])
    details = " ".join(str(row[0]) for row in db_rows(posts, "SELECT detail FROM audit_log"))
    for content in ("heroin", "Kamaz", "18:40", "Seized", "Not yours"):
        assert content not in details, content

    # The operator checks the record while the bot runs, then exports it.
    code, out, err = await liaison(bot, "audit", "verify")
    assert code == 0, err
    assert out.startswith(f"{len(trail)} entries, chain intact\n"), out
    code, out, err = await liaison(bot, "export", "--audit")
    assert code == 0, err
    assert [entry["action"] for entry in json.loads(out)["audit"]][:len(trail)] == [
        row[0] for row in trail]

    # Someone with the file makes UZ's acknowledgement someone else's.
    (seq,) = [row[0] for row in db_rows(
        posts, "SELECT seq FROM audit_log WHERE action = 'acknowledged' AND actor = "
               f"'{uz.user_id}'")]
    with sqlite3.connect(bot.data_dir / "liaison.db") as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET actor = ? WHERE seq = ?", (tj.user_id, seq))
    conn.close()
    code, out, err = await liaison(bot, "audit", "verify")
    assert code == 4, (out, err)
    assert f"audit chain broken at entry {seq} (" in out, out
    assert "acknowledged): its content does not match its hash" in out, out
    assert f"{seq - 1} entries before it are intact" in out, out

    # Put back as it was, the row verifies again: the chain names edits, nothing else.
    with sqlite3.connect(bot.data_dir / "liaison.db") as conn:
        conn.execute("UPDATE audit_log SET actor = ? WHERE seq = ?", (uz.user_id, seq))
    conn.close()
    code, out, err = await liaison(bot, "audit", "verify")
    assert code == 0 and "chain intact" in out, (out, err)
