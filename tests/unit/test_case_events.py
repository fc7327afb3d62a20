"""Reactions, replies, edits and redactions working cases, against a real database:
what each room is sent, what is stored, and that a replayed event changes nothing."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from liaison.commands.attachments import Attachment, Fetched, attachment_of
from liaison.commands.errors import CommandError
from liaison.commands.registry import Reply
from liaison.commands.relations import Relation
from liaison.commands.render import render_command_error
from liaison.config import parse_config
from liaison.handlers import case_events
from liaison.handlers.context import Services
from liaison.storage import audit, cases, outbox
from liaison.storage.audit import AuditAction
from liaison.storage.db import Database
from tests.unit.test_case_commands import (
    ALERT,
    CONFIG,
    JOINED,
    KZ,
    KZ_ROOM,
    NOW_MS,
    TJ,
    TJ_ROOM,
    UZ,
    UZ_ROOM,
    Bot,
    case_key,
    registry_with_cases,
)

VISITOR = "@visitor:liaison.example"


def config_with(**changes: dict[str, Any]) -> dict[str, Any]:
    """The unit-test configuration with some posts changed: `config_with(UZ={...})`."""
    config: dict[str, Any] = copy.deepcopy(CONFIG)
    for configured in config["posts"]:
        configured.update(changes.get(configured["id"].split("-")[0], {}))
    return config


UZ_LISTS_ITS_OFFICERS = config_with(UZ={"officers": [UZ]})
TJ_CLEARED_GREEN = config_with(TJ={"clearance": "GREEN"})
ALL_CLEARED_STRICT = config_with(**{country: {"clearance": "AMBER+STRICT"}
                                    for country in ("KZ", "UZ", "TJ", "AF", "TM")})

Handler = Callable[[Services], Awaitable[Reply | None]]


@dataclass
class Room:
    """The bot with the case-event handlers wired as `bot.events` wires them."""

    bot: Bot
    events: int = 0

    def _event_id(self, kind: str) -> str:
        self.events += 1
        return f"${kind}{self.events}"

    async def run(self, handler: Handler) -> Reply | None:
        async with self.bot.db.transaction() as conn:
            services = Services(config=self.bot.config, clock=self.bot.clock, conn=conn,
                                bot_user_id="@liaison:liaison.example", joined_rooms=JOINED,
                                encrypted_rooms=JOINED)
            try:
                return await handler(services)
            except CommandError as error:
                return render_command_error(error)

    async def react(self, room_id: str, sender: str, reacts_to: str, key: str = "👍", *,
                    event_id: str | None = None) -> str:
        event_id = event_id or self._event_id("reaction")
        await self.run(lambda services: case_events.react(
            services, room_id=room_id, sender=sender, event_id=event_id, reacts_to=reacts_to,
            key=key))
        return event_id

    async def react_in_the_clear(self, room_id: str, sender: str, reacts_to: str,
                                 key: str = "👍", *, event_id: str | None = None
                                 ) -> Reply | None:
        """A plaintext reaction where only encrypted ones count (policy `cross-signed`)."""
        event_id = event_id or self._event_id("reaction")
        return await self.run(lambda services: case_events.plaintext_reaction(
            services, room_id=room_id, sender=sender, event_id=event_id, reacts_to=reacts_to,
            key=key))

    async def reply(self, room_id: str, sender: str, body: str, *, thread_root: str | None = None,
                    reply_to: str | None = None, event_id: str | None = None) -> Reply | None:
        relation = Relation(thread_root=thread_root, reply_to=reply_to)
        event = event_id or self._event_id("reply")
        return await self.run(lambda services: case_events.carry_reply(
            services, room_id=room_id, sender=sender, event_id=event, relation=relation,
            body=body))

    async def edit(self, room_id: str, sender: str, original: str, body: str, *,
                   event_id: str | None = None) -> Reply | None:
        event = event_id or self._event_id("edit")
        return await self.run(lambda services: case_events.carry_edit(
            services, room_id=room_id, sender=sender, event_id=event, original=original,
            new_body=body))

    async def redact(self, room_id: str, sender: str, redacts: str) -> None:
        event = self._event_id("redaction")
        await self.run(lambda services: case_events.withdraw(
            services, room_id=room_id, sender=sender, event_id=event, redacts=redacts))

    async def sent(self, room_id: str, kind: str) -> list[Any]:
        return [m for m in await self.bot.queued(room_id) if m.kind == kind]

    async def relays(self) -> dict[str, str]:
        """Send everything queued; the relayed case's event id in each target room."""
        await self.bot.send_all()
        return {m.room_id: str(m.event_id) for m in await self.bot.queued()
                if m.kind == "case-relay"}

    async def delivery(self, post: str, ref: str = "KZ-0001") -> cases.Delivery:
        async with self.bot.db.read() as conn:
            case = await cases.case_by_ref(conn, ref)
            assert case is not None
            delivery = await cases.delivery_for(conn, case.id, post)
        assert delivery is not None
        return delivery


async def open_room(tmp_path: Path, config: dict[str, Any]) -> AsyncIterator[Room]:
    database = await Database.open(tmp_path / "liaison.db")
    yield Room(Bot(database, parse_config(json.dumps(config)), registry_with_cases()))
    await database.close()


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[Room]:
    async for opened in open_room(tmp_path, CONFIG):
        yield opened


@pytest.fixture
async def listed(tmp_path: Path) -> AsyncIterator[Room]:
    """UZ-TERMEZ lists its officers: only UZ acts for it."""
    async for opened in open_room(tmp_path, UZ_LISTS_ITS_OFFICERS):
        yield opened


# --- reactions --------------------------------------------------------------------------


async def test_a_thumbs_up_on_the_relayed_case_acknowledges_it_and_the_origin_hears_once(
    room: Room,
) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()
    room.bot.later(4)

    first = await room.react(UZ_ROOM, UZ, relays[UZ_ROOM], "👍🏽")
    await room.react(UZ_ROOM, UZ, relays[UZ_ROOM], "✅")
    await room.react(UZ_ROOM, UZ, relays[UZ_ROOM], "👍🏽", event_id=first)  # replayed

    (notice,) = await room.sent(KZ_ROOM, "case-ack")
    assert notice.content["body"] == ("TLP:AMBER Termez post (UZ-TERMEZ) acknowledged KZ-0001 "
                                      "(@bekzod:liaison.example, 2026-05-01 10:04 +00:00). "
                                      "@aigerim:liaison.example")
    assert notice.content["m.relates_to"]["event_id"] == "$event1"
    delivery = await room.delivery("UZ-TERMEZ")
    assert (delivery.state, delivery.acknowledged_by, delivery.acknowledged_ms) == (
        "acknowledged", UZ, NOW_MS + 240_000)
    assert (await room.delivery("TJ-PANJ")).acknowledged_ms is None


async def test_a_reaction_finds_the_relay_by_its_echo_before_the_send_is_booked(
    room: Room,
) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    (relay,) = await room.sent(UZ_ROOM, "case-relay")
    async with room.bot.db.transaction() as conn:  # sync echoed the message back
        assert await outbox.note_event_id(conn, txn_id=relay.txn_id, event_id="$echo")
        assert not await outbox.note_event_id(conn, txn_id=relay.txn_id, event_id="$echo")

    await room.react(UZ_ROOM, UZ, "$echo")

    assert len(await room.sent(KZ_ROOM, "case-ack")) == 1
    async with room.bot.db.transaction() as conn:  # the send's response, handled late
        await outbox.mark_sent(conn, relay.id, event_id="$echo", now_ms=NOW_MS)
    assert (await room.delivery("UZ-TERMEZ")).relayed_event_id == "$echo"


async def test_reactions_that_are_not_an_acknowledgement_by_the_target_change_nothing(
    listed: Room,
) -> None:
    room = listed
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()

    await room.react(UZ_ROOM, VISITOR, relays[UZ_ROOM])       # not one of UZ's officers
    await room.react(UZ_ROOM, UZ, relays[UZ_ROOM], "👎")       # not an acknowledgement
    await room.react(UZ_ROOM, UZ, relays[TJ_ROOM])            # TJ's copy, not in this room
    await room.react(TJ_ROOM, TJ, relays[UZ_ROOM])            # UZ's copy, from TJ's room
    await room.react(KZ_ROOM, KZ, "$event1")                  # the origin's own message
    await room.react(UZ_ROOM, UZ, "$somebody-elses-message")  # not a case at all

    assert await room.sent(KZ_ROOM, "case-ack") == []
    for post in ("UZ-TERMEZ", "TJ-PANJ"):
        assert (await room.delivery(post)).acknowledged_ms is None


async def test_a_reaction_on_a_closed_case_changes_nothing(room: Room) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()
    await room.bot.say(KZ_ROOM, KZ, "!close KZ-0001")

    await room.react(UZ_ROOM, UZ, relays[UZ_ROOM])

    assert await room.sent(KZ_ROOM, "case-ack") == []
    assert (await room.delivery("UZ-TERMEZ")).acknowledged_ms is None


async def test_a_plaintext_reaction_under_cross_signed_acknowledges_nothing_and_says_so_once(
    listed: Room,
) -> None:
    room = listed
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()

    plaintext = room.react_in_the_clear
    # nothing to say: not an acknowledgement, not an officer of the post, not this room's
    # copy; an acknowledged delivery (TJ acknowledges first)
    assert await plaintext(UZ_ROOM, UZ, relays[UZ_ROOM], "👎") is None
    assert await plaintext(UZ_ROOM, VISITOR, relays[UZ_ROOM]) is None
    assert await plaintext(UZ_ROOM, UZ, relays[TJ_ROOM]) is None
    await room.bot.say(TJ_ROOM, TJ, "!ack KZ-0001")
    assert await plaintext(TJ_ROOM, TJ, relays[TJ_ROOM]) is None

    told = await plaintext(UZ_ROOM, UZ, relays[UZ_ROOM], event_id="$thumbs")
    assert told is not None and told.text.startswith(
        "Your reaction did not acknowledge KZ-0001: reactions travel unencrypted"), told
    assert "!ack KZ-0001" in told.text
    # once per officer and case: a replay, another key, another reaction say nothing more
    assert await plaintext(UZ_ROOM, UZ, relays[UZ_ROOM], event_id="$thumbs") is None
    assert await plaintext(UZ_ROOM, UZ, relays[UZ_ROOM], "✅") is None

    async with room.bot.db.read() as conn:
        refused = [(e.actor, e.detail) for e in await audit.entries(conn)
                   if e.action == AuditAction.COMMAND_REFUSED]
    assert refused == [(UZ, {"reason": "plaintext_reaction", "event_id": "$thumbs"})]
    assert (await room.delivery("UZ-TERMEZ")).acknowledged_ms is None
    assert await room.sent(KZ_ROOM, "case-ack") != [] and all(
        "Termez" not in m.content["body"] for m in await room.sent(KZ_ROOM, "case-ack"))


# --- replies ----------------------------------------------------------------------------


async def test_a_thread_reply_from_a_target_reaches_the_origin_thread_and_acknowledges(
    room: Room,
) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()
    room.bot.later(6)

    answer = await room.reply(TJ_ROOM, TJ, "Seen the truck at 18:40 <b>near</b> @room",
                              thread_root=relays[TJ_ROOM], event_id="$tj-reply")
    await room.reply(TJ_ROOM, TJ, "Seen the truck at 18:40", thread_root=relays[TJ_ROOM],
                     event_id="$tj-reply")  # replayed

    assert answer is None
    (carried,) = await room.sent(KZ_ROOM, "case-reply")
    assert carried.content["body"] == (
        "TLP:AMBER Reply from Panj post (TJ-PANJ) on KZ-0001 (@farhod:liaison.example):\n"
        "Seen the truck at 18:40 <b>near</b> @\u2060room")
    assert "&lt;b&gt;near&lt;/b&gt;" in carried.content["formatted_body"]
    assert carried.content["m.mentions"] == {"user_ids": []}
    assert carried.content["m.relates_to"]["rel_type"] == "m.thread"
    assert carried.content["m.relates_to"]["event_id"] == "$event1"
    assert case_key(carried) == {"ref": "KZ-0001", "kind": "alert", "origin": "KZ-ZHIBEK",
                                 "about": "reply"}
    assert await room.sent(KZ_ROOM, "case-ack") == []  # the reply itself told the origin
    delivery = await room.delivery("TJ-PANJ")
    assert (delivery.state, delivery.acknowledged_by, delivery.answered_ms) == (
        "acknowledged", TJ, None)
    assert await room.sent(UZ_ROOM, "case-reply") == []  # never from target to target


async def test_a_plain_reply_to_a_bot_message_about_the_case_counts_too(room: Room) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    await room.relays()
    await room.bot.say(KZ_ROOM, KZ, "!update KZ-0001 Second truck")
    await room.bot.send_all()
    (update,) = await room.sent(UZ_ROOM, "case-update")

    await room.reply(UZ_ROOM, UZ, "> <@liaison:liaison.example> Update\n\nWhich one?",
                     reply_to=update.event_id)

    (carried,) = await room.sent(KZ_ROOM, "case-reply")
    assert carried.content["body"].endswith("(@bekzod:liaison.example):\nWhich one?")


async def test_a_reply_in_the_origin_thread_reaches_every_target_in_its_thread(
    room: Room,
) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()

    answer = await room.reply(KZ_ROOM, KZ, "Stop it at the bridge", thread_root="$event1")

    assert answer is None
    for target in (UZ_ROOM, TJ_ROOM):
        (carried,) = await room.sent(target, "case-reply")
        assert carried.content["body"] == (
            "TLP:AMBER Reply from Zhibek post (KZ-ZHIBEK) on KZ-0001 "
            "(@aigerim:liaison.example):\nStop it at the bridge")
        assert carried.content["m.relates_to"]["event_id"] == relays[target]
    assert await room.sent(KZ_ROOM, "case-reply") == []
    async with room.bot.db.read() as conn:
        history = await cases.timeline(conn, 1)
    assert [(entry.kind, entry.post) for entry in history][-1] == ("replied", "KZ-ZHIBEK")


async def test_a_reply_goes_only_to_targets_that_may_still_receive_the_case(
    tmp_path: Path,
) -> None:
    async for room in open_room(tmp_path, CONFIG):
        await room.bot.say(KZ_ROOM, KZ, ALERT)
        await room.relays()
    async for room in open_room(tmp_path, TJ_CLEARED_GREEN):  # the operator lowered TJ
        answer = await room.reply(KZ_ROOM, KZ, "Stop it at the bridge",
                                  thread_root="$event1")
        assert answer is not None
        assert answer.text == ("Your reply on KZ-0001 was not passed to:\n"
                               "• TJ-PANJ: cleared up to TLP:GREEN; this case is TLP:AMBER.")
        assert len(await room.sent(UZ_ROOM, "case-reply")) == 1
        assert await room.sent(TJ_ROOM, "case-reply") == []


async def test_an_amber_strict_case_never_reaches_a_post_it_was_not_sent_to(
    tmp_path: Path,
) -> None:
    async for room in open_room(tmp_path, ALL_CLEARED_STRICT):
        await strict_case_stays_between_origin_and_target(room)


async def strict_case_stays_between_origin_and_target(room: Room) -> None:
    await room.bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ tlp:amber+strict\nLook out")
    relays = await room.relays()

    await room.reply(UZ_ROOM, UZ, "Noted", thread_root=relays[UZ_ROOM])
    await room.reply(KZ_ROOM, KZ, "Thanks", thread_root="$event1")

    assert len(await room.sent(KZ_ROOM, "case-reply")) == 1
    assert len(await room.sent(UZ_ROOM, "case-reply")) == 1
    assert await room.bot.queued(TJ_ROOM) == []


async def test_a_request_is_answered_only_by_a_reply(room: Room) -> None:
    await room.bot.say(KZ_ROOM, KZ, "!request urgent to:UZ-TERMEZ,TJ-PANJ due:4h\n"
                                    "Who owns 01A123BC?")
    relays = await room.relays()

    await room.react(UZ_ROOM, UZ, relays[UZ_ROOM])
    await room.bot.say(TJ_ROOM, TJ, "!ack KZ-0001")
    acknowledged = [await room.delivery(post) for post in ("UZ-TERMEZ", "TJ-PANJ")]
    await room.reply(UZ_ROOM, UZ, "Registered to a Termez firm", reply_to=relays[UZ_ROOM])

    assert [(d.state, d.answered_ms) for d in acknowledged] == [("acknowledged", None)] * 2
    uz, tj = await room.delivery("UZ-TERMEZ"), await room.delivery("TJ-PANJ")
    assert (uz.state, uz.answered_by, uz.acknowledged_by) == ("answered", UZ, UZ)
    assert (tj.state, tj.answered_ms) == ("acknowledged", None)
    status = await room.bot.say(KZ_ROOM, KZ, "!status KZ-0001")
    assert "Termez post (UZ-TERMEZ): answered" in status.text
    assert "Panj post (TJ-PANJ): acknowledged" in status.text
    assert "reply from Termez post (UZ-TERMEZ) (@bekzod:liaison.example)" in status.text


async def test_replies_on_a_finished_case_are_not_passed_on(room: Room) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()
    await room.bot.say(KZ_ROOM, KZ, "!close KZ-0001")

    answer = await room.reply(TJ_ROOM, TJ, "Too late?", thread_root=relays[TJ_ROOM])

    assert answer is not None
    assert answer.text == "KZ-0001 is closed; replies are no longer passed on."
    assert await room.sent(KZ_ROOM, "case-reply") == []


async def test_a_reply_by_someone_not_acting_for_the_post_is_refused(listed: Room) -> None:
    room = listed
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()

    answer = await room.reply(UZ_ROOM, VISITOR, "Hello", thread_root=relays[UZ_ROOM])

    assert answer is not None and answer.text.startswith(
        "You are not listed as an officer of UZ-TERMEZ")
    assert await room.sent(KZ_ROOM, "case-reply") == []
    assert (await room.delivery("UZ-TERMEZ")).acknowledged_ms is None


async def test_a_reply_to_anything_else_is_not_about_a_case(room: Room) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()

    assert await room.reply(UZ_ROOM, UZ, "lunch?", reply_to="$a-colleagues-message") is None
    assert await room.reply(UZ_ROOM, UZ, "x", thread_root=relays[TJ_ROOM]) is None
    assert await room.sent(KZ_ROOM, "case-reply") == []
    async with room.bot.db.read() as conn:
        rows = await conn.execute_fetchall("SELECT event_id FROM processed_events")
    assert [row[0] for row in rows if not row[0].startswith("$event")] == []


# --- edits ------------------------------------------------------------------------------


async def test_an_edit_of_the_alert_reaches_the_targets_as_an_update(room: Room) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()
    edited = ALERT.replace("plate 01A123BC", "plate 01A999BC").replace(
        "\nroute: Hairatan -> Termez", "")

    answer = await room.edit(KZ_ROOM, KZ, "$event1", edited, event_id="$edit")
    again = await room.edit(KZ_ROOM, KZ, "$event1", edited, event_id="$edit")

    assert answer is not None and answer.text == (
        "Your edit of KZ-0001 went to: UZ-TERMEZ, TJ-PANJ. An edit is not routed again; it "
        "goes to the posts that have the case.")
    assert again is None
    for target in (UZ_ROOM, TJ_ROOM):
        (update,) = await room.sent(target, "case-edit")
        assert update.content["body"] == (
            "TLP:AMBER KZ-0001 was edited by Zhibek post (KZ-ZHIBEK). What changed:\n"
            "vehicle: white Kamaz, plate 01A999BC\n"
            "route: (removed)")
        assert update.content["m.relates_to"]["event_id"] == relays[target]
    assert len([m for m in await room.bot.queued() if m.kind == "case-relay"]) == 2
    case = await room.bot.case("KZ-0001")
    assert case is not None and case.fields == (("vehicle", "white Kamaz, plate 01A999BC"),)
    assert await room.bot.case("KZ-0002") is None
    status = await room.bot.say(KZ_ROOM, KZ, "!status KZ-0001")
    assert "edited by Zhibek post (KZ-ZHIBEK) (@aigerim:liaison.example): vehicle, route" in (
        status.text)


async def test_an_edit_cannot_change_what_routed_the_case(room: Room) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    await room.relays()

    flash = await room.edit(KZ_ROOM, KZ, "$event1", ALERT.replace("urgent", "flash")
                            .replace("tlp:amber", "tlp:green"))
    chat = await room.edit(KZ_ROOM, KZ, "$event1", "never mind")
    broken = await room.edit(KZ_ROOM, KZ, "$event1", "!alert urgent tlp:purple\nx")

    assert flash is not None and flash.text.startswith(
        "Your edit of KZ-0001 changes its priority, TLP, which an edit cannot change")
    assert chat is not None and "changes its kind (alert or request)" in chat.text
    assert broken is not None and broken.text.startswith(
        "Your edit of KZ-0001 was not passed on: purple is not a TLP level")
    assert [m for m in await room.bot.queued() if m.kind == "case-edit"] == []


async def test_only_the_author_edits_and_only_the_opening_message(room: Room) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    await room.relays()
    changed = ALERT.replace("cement", "flour")

    assert await room.edit(KZ_ROOM, "@someone-else:liaison.example", "$event1", changed) is None
    assert await room.edit(UZ_ROOM, KZ, "$event1", changed) is None
    assert await room.edit(KZ_ROOM, KZ, "$event99", changed) is None
    assert [m for m in await room.bot.queued() if m.kind == "case-edit"] == []


# --- redactions -------------------------------------------------------------------------


async def test_deleting_the_alert_withdraws_and_cancels_the_case_everywhere(room: Room) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()

    await room.redact(KZ_ROOM, KZ, "$event1")
    await room.redact(KZ_ROOM, KZ, "$event1")  # a second redaction of the same event

    for target in (UZ_ROOM, TJ_ROOM):
        (notice,) = await room.sent(target, "case-withdrawn")
        assert notice.content["body"] == (
            "TLP:AMBER Zhibek post (KZ-ZHIBEK) withdrew KZ-0001: the originator deleted the "
            "message. The case is cancelled; disregard it.")
        assert notice.content["m.relates_to"]["event_id"] == relays[target]
    (told,) = await room.sent(KZ_ROOM, "case-withdrawn")
    assert "m.relates_to" not in told.content
    assert told.content["body"] == ("KZ-0001 was withdrawn because its message was deleted; "
                                    "the case is cancelled. Told: UZ-TERMEZ, TJ-PANJ.")
    case = await room.bot.case("KZ-0001")
    assert case is not None and case.state == "cancelled"
    async with room.bot.db.read() as conn:
        kinds = [entry.kind for entry in await cases.timeline(conn, case.id)]
    assert kinds[-2:] == ["redacted", "cancelled"]


async def test_deleting_something_else_changes_nothing(room: Room) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)
    relays = await room.relays()

    await room.redact(UZ_ROOM, UZ, relays[UZ_ROOM])
    await room.redact(UZ_ROOM, UZ, "$event1")

    case = await room.bot.case("KZ-0001")
    assert case is not None and case.is_open
    assert [m for m in await room.bot.queued() if m.kind == "case-withdrawn"] == []


# --- attachments ------------------------------------------------------------------------


def _photo() -> tuple[Attachment, Fetched, dict[str, Any]]:
    attachment = attachment_of({
        "msgtype": "m.image", "body": "Plate <b>01A</b>", "filename": "plate.jpg",
        "file": {"url": "mxc://kz.example/a", "key": {"k": "a2V5"}, "iv": "aXY",
                 "hashes": {"sha256": "aGFzaA"}},
        "info": {"mimetype": "image/jpeg", "size": 5}})
    assert attachment is not None
    media = {"msgtype": "m.image", "filename": "plate.jpg",
             "file": {"url": "mxc://bot.example/b"}, "info": {"mimetype": "image/jpeg"}}
    return attachment, Fetched.of(b"photo"), media


async def test_an_attachment_goes_only_to_targets_that_may_still_receive_the_case(
    tmp_path: Path,
) -> None:
    async for room in open_room(tmp_path, CONFIG):
        await room.bot.say(KZ_ROOM, KZ, ALERT)
        await room.relays()
    attachment, fetched, media = _photo()
    async for room in open_room(tmp_path, TJ_CLEARED_GREEN):  # the operator lowered TJ

        async def attach(services: Services) -> Reply | None:
            link = await case_events.case_in_room(services, KZ_ROOM, ["$event1"])
            assert link is not None
            return await case_events.carry_attachment(
                services, link=link, sender=KZ, event_id="$photo", attachment=attachment,
                fetched=fetched, media=media)

        answer = await room.run(attach)
        assert answer is not None and answer.text.startswith(
            "Your attachment on KZ-0001 was not passed to:\n• TJ-PANJ: cleared up to TLP:GREEN")
        [relayed] = await room.sent(UZ_ROOM, "case-attachment")
        assert relayed.content["file"] == {"url": "mxc://bot.example/b"}
        assert relayed.content["msgtype"] == "m.image"
        assert fetched.sha256 in relayed.content["body"]
        assert "Plate &lt;b&gt;01A&lt;/b&gt;" in relayed.content["formatted_body"]
        assert await room.sent(TJ_ROOM, "case-attachment") == []
        assert await room.run(attach) is None  # replayed: claimed, nothing twice
        assert len(await room.sent(UZ_ROOM, "case-attachment")) == 1
        async with room.bot.db.read() as conn:
            case = await cases.case_by_ref(conn, "KZ-0001")
            assert case is not None
            history = await cases.timeline(conn, case.id)
        [entry] = [e for e in history if e.kind == "attached"]
        assert entry.detail["sha256"] == fetched.sha256 and entry.actor == KZ


async def test_a_bare_attachment_joins_its_senders_alert_only_within_the_window(
    room: Room,
) -> None:
    await room.bot.say(KZ_ROOM, KZ, ALERT)

    async def after(sender: str, sent_ms: int) -> str | None:
        async with room.bot.db.read() as conn:
            services = Services(config=room.bot.config, clock=room.bot.clock, conn=conn,
                                bot_user_id="@liaison:liaison.example", joined_rooms=JOINED,
                                encrypted_rooms=JOINED)
            link = await case_events.case_after_alert(services, KZ_ROOM, sender, sent_ms)
        return None if link is None else link.case.ref

    assert await after(KZ, NOW_MS + 60_000) == "KZ-0001"
    assert await after(KZ, NOW_MS + 121_000) is None  # the window is 2 minutes
    assert await after(VISITOR, NOW_MS + 1000) is None  # someone else's photo
