"""The development kit itself, proven against a real Synapse.

If these fail, every other e2e test, the demo and the benchmarks are suspect,
so they check the kit's promises directly: real encryption on the wire,
relations that survive decryption, and a homeserver restart that loses nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from devkit.officer import Officer, SeenMessage
from devkit.synapse import LocalSynapse, SynapseError
from tests.e2e.conftest import OfficerFactory, unique


async def raw_event(synapse: LocalSynapse, officer: Officer, room_id: str, event_id: str) -> Any:
    """The event exactly as the homeserver stores it, fetched with the officer's token."""
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/event/{quote(event_id, safe='')}"
    return await synapse.request("GET", path, token=officer.client.access_token)


async def shared_room(alice: Officer, bob: Officer) -> str:
    """An encrypted room alice created and bob joined, with alice aware of the join."""
    room_id = await alice.create_room(unique("room"), invite=[bob.user_id])
    await bob.join(room_id)
    await alice.wait_until_joined(room_id, bob.user_id)
    return room_id


def event_is(event_id: str) -> Any:
    return lambda m: m.event_id == event_id


async def test_officers_exchange_messages_that_are_encrypted_on_the_server(
    synapse: LocalSynapse, officer_factory: OfficerFactory
) -> None:
    alice = await officer_factory("kz")
    bob = await officer_factory("uz")
    room_id = await shared_room(alice, bob)

    from_bob = await bob.send_text(room_id, "Hello from Tashkent")
    seen = await alice.wait_for(event_is(from_bob), room_id=room_id)
    assert (seen.sender, seen.type, seen.msgtype, seen.body) == (
        bob.user_id,
        "m.room.message",
        "m.text",
        "Hello from Tashkent",
    )
    assert seen.encrypted

    stored = await raw_event(synapse, alice, room_id, from_bob)
    assert stored["type"] == "m.room.encrypted"
    assert stored["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert "body" not in stored["content"]

    from_alice = await alice.send_text(room_id, "Hello from Astana", notice=True)
    seen_by_bob = await bob.wait_for(event_is(from_alice), room_id=room_id)
    assert (seen_by_bob.body, seen_by_bob.msgtype) == ("Hello from Astana", "m.notice")
    assert seen_by_bob.encrypted


async def test_threaded_reply_reply_and_reaction_arrive_with_their_relations(
    officer_factory: OfficerFactory,
) -> None:
    alice = await officer_factory("kz")
    bob = await officer_factory("uz")
    room_id = await shared_room(alice, bob)

    root = await alice.send_text(room_id, "Case root")
    await bob.wait_for(event_is(root), room_id=room_id)

    in_thread = await bob.send_text(room_id, "Taken", thread_root=root)
    threaded = await alice.wait_for(event_is(in_thread), room_id=room_id)
    assert threaded.encrypted and threaded.body == "Taken"
    assert threaded.relates_to == {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},
    }

    reply = await alice.send_text(room_id, "Thanks", reply_to=in_thread)
    replied = await bob.wait_for(event_is(reply), room_id=room_id)
    assert replied.relates_to == {"m.in_reply_to": {"event_id": in_thread}}

    reaction = await alice.react(room_id, in_thread, "👍")
    reacted = await bob.wait_for(event_is(reaction), room_id=room_id)
    assert reacted.type == "m.reaction"
    assert reacted.relates_to == {"rel_type": "m.annotation", "event_id": in_thread, "key": "👍"}
    assert not reacted.encrypted  # nio never encrypts reactions


async def test_a_message_sent_before_joining_is_seen_but_not_readable(
    officer_factory: OfficerFactory,
) -> None:
    alice = await officer_factory("kz")
    carol = await officer_factory("tj")
    # Invited only after the message: nio shares room keys with invitees it already knows.
    room_id = await alice.create_room(unique("room"))
    early = await alice.send_text(room_id, "sent before carol joined")
    await alice.invite(room_id, carol.user_id)
    await carol.join(room_id)

    seen = await carol.wait_for(event_is(early), room_id=room_id)
    assert (seen.type, seen.body, seen.encrypted) == ("m.room.encrypted", None, True)
    assert seen.undecrypted


async def test_a_withheld_key_leaves_one_user_unable_to_read_until_it_is_released(
    officer_factory: OfficerFactory,
) -> None:
    alice = await officer_factory("kz")
    bob = await officer_factory("uz")
    carol = await officer_factory("tj")
    room_id = await shared_room(alice, bob)
    await alice.invite(room_id, carol.user_id)
    await carol.join(room_id)
    await alice.wait_until_joined(room_id, carol.user_id)

    withheld = await alice.send_text_withholding_key(room_id, "late key", withhold_from=bob.user_id)
    early = await bob.wait_for(event_is(withheld.event_id), room_id=room_id)
    assert early.undecrypted and early.body is None
    read_by_carol = await carol.wait_for(event_is(withheld.event_id), room_id=room_id)
    assert read_by_carol.body == "late key"  # only bob was left without the key
    assert (await alice.wait_for(event_is(withheld.event_id))).body == "late key"

    # The officer's next message uses a new session that bob does get.
    after = await alice.send_text(room_id, "normal again")
    assert (await bob.wait_for(event_is(after), room_id=room_id)).body == "normal again"
    still = next(m for m in bob.messages(room_id) if m.event_id == withheld.event_id)
    assert still.undecrypted
    olm = alice.client.olm
    assert olm is not None
    for device in alice.client.device_store.active_user_devices(bob.user_id):
        assert not olm.is_device_blacklisted(device)  # trust state left as it was

    await withheld.release()
    late = await bob.wait_for(
        lambda m: m.event_id == withheld.event_id and not m.undecrypted, room_id=room_id
    )
    assert (late.type, late.body, late.encrypted) == ("m.room.message", "late key", True)
    assert [m.event_id for m in bob.messages(room_id)].count(withheld.event_id) == 1


async def test_a_burst_of_messages_is_not_rate_limited(officer_factory: OfficerFactory) -> None:
    alice = await officer_factory("kz")
    bob = await officer_factory("uz")
    room_id = await shared_room(alice, bob)

    started = time.monotonic()
    bodies = [f"burst {i}" for i in range(25)]
    for body in bodies:
        await alice.send_text(room_id, body)
    await bob.wait_for(lambda m: m.body == bodies[-1], room_id=room_id, sender=alice.user_id)

    received = bob.messages(room_id, sender=alice.user_id)
    assert [m.body for m in received if m.type == "m.room.message"] == bodies
    # Synapse's default (0.2/s after a burst of 10) would need over a minute.
    assert time.monotonic() - started < 20


async def test_users_rooms_and_officers_survive_a_synapse_restart(
    synapse: LocalSynapse, officer_factory: OfficerFactory
) -> None:
    alice = await officer_factory("kz")
    bob = await officer_factory("uz")
    room_id = await shared_room(alice, bob)
    before = await alice.send_text(room_id, "before restart")
    await bob.wait_for(event_is(before), room_id=room_id)

    await synapse.restart()

    after = await alice.send_text(room_id, "after restart")
    seen = await bob.wait_for(event_is(after), room_id=room_id)
    assert seen.encrypted and seen.body == "after restart"
    answer = await bob.send_text(room_id, "still here")
    assert (await alice.wait_for(event_is(answer), room_id=room_id)).body == "still here"
    newcomer = await officer_factory("ae")
    assert newcomer.user_id.startswith("@ae-")


async def test_a_second_local_synapse_on_the_same_workdir_resumes_server_and_device(
    tmp_path: Path,
) -> None:
    first = LocalSynapse(tmp_path / "hs")
    async with first:
        officer = await Officer.create(first, "resumed", tmp_path / "officers")
        device_id = officer.device_id
        await officer.stop()

    second = LocalSynapse(tmp_path / "hs")
    assert second.url == first.url
    async with second:
        again = await Officer.create(second, "resumed", tmp_path / "officers")
        try:
            assert (again.user_id, again.device_id) == ("@resumed:localhost", device_id)
            await again.start()
            room_id = await again.create_room("after reopen")
            sent = await again.send_text(room_id, "mine")
            assert (await again.wait_for(event_is(sent))).body == "mine"
        finally:
            await again.stop()


async def test_wait_for_timeout_lists_what_was_seen(officer_factory: OfficerFactory) -> None:
    alice = await officer_factory("kz")
    room_id = await alice.create_room(unique("room"))
    sent = await alice.send_text(room_id, "the only message here")
    await alice.wait_for(event_is(sent), room_id=room_id)

    def never(_: SeenMessage) -> bool:
        return False

    with pytest.raises(AssertionError, match="the only message here"):
        await alice.wait_for(never, room_id=room_id, timeout=0.3)


def test_missing_synapse_interpreter_points_to_make_setup(tmp_path: Path) -> None:
    with pytest.raises(SynapseError, match="make setup"):
        LocalSynapse(tmp_path, python=str(tmp_path / "no-such-python"))
