"""Cases end to end: three officers in three post rooms, a real Synapse, real encryption."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from devkit.botprocess import BotProcess
from devkit.officer import Officer, SeenMessage
from liaison.commands.case_render import CASE_KEY
from liaison.handlers import default_registry
from tests.e2e.conftest import BotFactory, OfficerFactory

pytestmark = pytest.mark.skipif(
    "alert" not in default_registry(),
    reason="case commands are not registered in handlers.default_registry() yet",
)

ALERT = (
    "!alert urgent to:UZ-TERMEZ,TJ-PANJ tlp:amber cat:drugs grade:B2\n"
    "vehicle: white Kamaz, plate 01A123BC\n"
    "route: Hairatan -> Termez\n"
    "Suspected heroin in a cement load."
)


def replies_to(message: SeenMessage, event_id: str) -> bool:
    relates = message.content.get("m.relates_to") or {}
    return bool(relates.get("m.in_reply_to", {}).get("event_id") == event_id)


def about_case(message: SeenMessage, ref: str, about: str | None = None) -> bool:
    key = message.content.get(CASE_KEY)
    return isinstance(key, dict) and key.get("ref") == ref and key.get("about") == about


def post(post_id: str, room: str, timezone: str, neighbours: list[str]) -> dict[str, Any]:
    return {"id": post_id, "names": {"en": post_id.split("-")[1].title()},
            "country": post_id[:2], "agency": "border", "room": room, "timezone": timezone,
            "neighbours": neighbours}


@dataclass
class Posts:
    bot: BotProcess
    kz: Officer
    uz: Officer
    tj: Officer
    kz_room: str
    uz_room: str
    tj_room: str

    async def ask(self, officer: Officer, room_id: str, body: str) -> SeenMessage:
        """Send a command and wait for the bot's answer to it, in the sender's room."""
        event_id = await officer.send_text(room_id, body)
        return await officer.wait_for(lambda m: replies_to(m, event_id), room_id=room_id,
                                      sender=self.bot.user_id)


async def posts_for(officer_factory: OfficerFactory, bot_factory: BotFactory,
                    config: dict[str, Any] | None = None) -> Posts:
    """KZ, UZ and TJ officers, each in their post's encrypted room with the bot; `config`
    is merged into the bot's configuration."""
    kz, uz, tj = [await officer_factory(name) for name in ("kz", "uz", "tj")]
    rooms = {officer: await officer.create_room("post") for officer in (kz, uz, tj)}
    bot = await bot_factory(config={
        "posts": [
            post("KZ-ZHIBEK", rooms[kz], "Asia/Almaty", ["UZ-TERMEZ"]),
            post("UZ-TERMEZ", rooms[uz], "Asia/Tashkent", ["KZ-ZHIBEK", "TJ-PANJ"]),
            post("TJ-PANJ", rooms[tj], "Asia/Dushanbe", ["UZ-TERMEZ"]),
        ],
        **(config or {}),
    })
    for officer, room_id in rooms.items():
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)
    return Posts(bot, kz, uz, tj, rooms[kz], rooms[uz], rooms[tj])


async def three_posts(officer_factory: OfficerFactory, bot_factory: BotFactory) -> Posts:
    """The three posts, UZ and TJ also in the CARICC group."""
    return await posts_for(officer_factory, bot_factory,
                           {"groups": [{"name": "caricc", "posts": ["UZ-TERMEZ", "TJ-PANJ"]}]})


async def test_alert_reaches_both_targets_is_acknowledged_and_refusals_are_explained(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts = await three_posts(officer_factory, bot_factory)
    bot_id = posts.bot.user_id

    sent = await posts.ask(posts.kz, posts.kz_room, ALERT)
    assert (sent.body or "").startswith("KZ-0001: Urgent alert sent to:"), sent.body
    assert "UZ-TERMEZ" in (sent.body or "") and "TJ-PANJ" in (sent.body or "")

    for officer, room_id in ((posts.uz, posts.uz_room), (posts.tj, posts.tj_room)):
        relayed = await officer.wait_for(lambda m: about_case(m, "KZ-0001"), room_id=room_id,
                                         sender=bot_id)
        assert relayed.encrypted and relayed.msgtype == "m.text"  # it must ring
        assert (relayed.body or "").startswith("TLP:AMBER Urgent alert KZ-0001"), relayed.body
        assert "vehicle: white Kamaz, plate 01A123BC" in (relayed.body or "")
        assert "Acknowledge with !ack KZ-0001" in (relayed.body or "")

    acked = await posts.ask(posts.uz, posts.uz_room, "!ack KZ-0001")
    assert (acked.body or "").startswith("Acknowledged KZ-0001"), acked.body
    told = await posts.kz.wait_for(lambda m: about_case(m, "KZ-0001", "ack"),
                                   room_id=posts.kz_room, sender=bot_id)
    assert told.encrypted
    assert "Termez (UZ-TERMEZ) acknowledged KZ-0001" in (told.body or ""), told.body

    amber_to_group = await posts.ask(posts.kz, posts.kz_room,
                                     "!alert urgent to:caricc tlp:amber\nLook out")
    assert (amber_to_group.body or "").startswith("Nothing was sent."), amber_to_group.body
    assert "caricc: TLP:AMBER goes only to posts named by id" in (amber_to_group.body or "")

    typo = await posts.ask(posts.kz, posts.kz_room, "!alert urgent to:UZ-TERMZ\nLook out")
    assert "Did you mean: UZ-TERMEZ?" in (typo.body or ""), typo.body

    status = await posts.ask(posts.kz, posts.kz_room, "!status KZ-0001")
    body = status.body or ""
    assert "KZ-0001 — Urgent alert from Zhibek (KZ-ZHIBEK), open" in body, body
    assert "Termez (UZ-TERMEZ): acknowledged" in body
    assert "routed to Panj (TJ-PANJ)" in body
    assert f"acknowledged by Termez (UZ-TERMEZ) ({posts.uz.user_id})" in body

    # Neither refused alert went anywhere: the targets saw exactly one case message.
    for officer, room_id in ((posts.uz, posts.uz_room), (posts.tj, posts.tj_room)):
        cases_seen = [m.content[CASE_KEY] for m in officer.messages(room_id, sender=bot_id)
                      if isinstance(m.content.get(CASE_KEY), dict)]
        assert [key["ref"] for key in cases_seen if "about" not in key] == ["KZ-0001"]
