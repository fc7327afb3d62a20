"""The events that work a case without a command: reactions, replies and thread messages,
edits, redactions, photos and files. Each is decided in `handlers.case_events`; this
module checks what Matrix alone can tell (decrypted in an encrypted room, the sending
device trusted, the case-message flood budget), fetches an attachment before the event's
transaction (`bot.media`), and hands the handler to that transaction
(`bot.event_transaction`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from nio import (
    AsyncClient,
    MatrixRoom,
    ReactionEvent,
    RedactionEvent,
    RoomEncryptedMedia,
    RoomMessageText,
)

from liaison.bot.command_runner import record_refusal
from liaison.bot.directory import Directory
from liaison.bot.event_transaction import EventTransactions, queue_reply, thread_of
from liaison.bot.logs import current_case
from liaison.bot.media import take_attachment
from liaison.bot.trust import TOFU, TrustPolicy
from liaison.commands.access import acts_for
from liaison.commands.attachments import AttachmentRefusal, attachment_of
from liaison.commands.errors import CommandError
from liaison.commands.flood import FloodGate, flood_notice
from liaison.commands.notify import OutboxKind
from liaison.commands.registry import Reply
from liaison.commands.relations import Relation, acknowledges, relation_of, reply_text
from liaison.commands.render import render_command_error
from liaison.handlers import case_events
from liaison.handlers.context import Services
from liaison.handlers.red import carry_red_reply
from liaison.storage import cases

log = logging.getLogger(__name__)

UNTRUSTED_DEVICE_REPLY = "bot.untrusted_device"
"""Message id (`commands.texts`) of the answer to a device that may not work cases."""

CaseEventHandler = Callable[[Services], Awaitable[Reply | None]]


def sealed(room: MatrixRoom, event: Any) -> bool:
    """The one guard for acting on a message: it was decrypted, in an encrypted room.
    Plaintext is never carried to other rooms, nor answered."""
    return bool(room.encrypted and getattr(event, "decrypted", False))


def sender_device(client: AsyncClient, event: Any) -> str | None:
    """The device that sent a decrypted event, from the session's curve25519 key."""
    sender_key = getattr(event, "sender_key", None)
    for device in client.device_store.active_user_devices(event.sender):
        if device.curve25519 == sender_key:
            return str(device.id)
    return None


def carries(link: case_events.CaseLink, sender: str) -> bool:
    """Whether a reply or attachment from `sender` on this case would be carried to other
    rooms, and so counts against `limits.case_messages_*`: one that is only answered (a
    member who is not the post's officer, a finished case) must not use up the budget
    of the room's officers."""
    return link.case.is_open and acts_for(link.post, sender)


class CaseMessages:
    def __init__(self, *, client: AsyncClient, transactions: EventTransactions,
                 directory: Directory, trust: TrustPolicy, flood: FloodGate) -> None:
        self._client = client
        self._transactions = transactions
        self._directory = directory
        self._trust = trust
        self._flood = flood

    async def trusted_or_answered(self, room: MatrixRoom,
                                  event: RoomMessageText | RoomEncryptedMedia) -> bool:
        """True if the device that sent the message may work cases; otherwise the sender is
        told (once) why nothing happened."""
        if await self._trust.sender_allowed(event.sender, sender_device(self._client, event)):
            return True
        await self._transactions.answer(
            room.room_id, event.event_id, event.source.get("content", {}),
            self._transactions.notice(room.room_id, UNTRUSTED_DEVICE_REPLY),
            kind=OutboxKind.REFUSAL, refused="untrusted_device", sender=event.sender)
        return False

    async def on_reaction(self, room: MatrixRoom, event: ReactionEvent) -> None:
        """Clients send reactions in the clear even in encrypted rooms (nio always does),
        so a plaintext reaction counts — in an encrypted room, and under the `tofu` policy
        only, since no device vouches for it. An encrypted one is checked like a command."""
        if not room.encrypted or not acknowledges(event.key):
            return
        if getattr(event, "decrypted", False):
            if not await self._trust.sender_allowed(event.sender,
                                                    sender_device(self._client, event)):
                return
        elif self._trust.policy != TOFU:
            log.info("plaintext reaction ignored under the cross-signed policy",
                     extra={"room_id": room.room_id, "event_id": event.event_id})
            await self._handle(room, event.sender, event.reacts_to, None, lambda services: (
                case_events.plaintext_reaction(
                    services, room_id=room.room_id, sender=event.sender,
                    event_id=event.event_id, reacts_to=event.reacts_to, key=event.key)))
            return
        await self._handle(room, event.sender, event.event_id, None, lambda services: (
            case_events.react(services, room_id=room.room_id, sender=event.sender,
                              event_id=event.event_id, reacts_to=event.reacts_to,
                              key=event.key)))

    async def on_reply(self, room: MatrixRoom, event: RoomMessageText, relation: Relation,
                       content: dict[str, Any]) -> None:
        if not sealed(room, event):
            return
        link = await self._transactions.read(lambda services: case_events.case_in_room(
            services, room.room_id, relation.candidates))
        if link is None and self._directory.post_for_room(room.room_id) is None:
            if await self.trusted_or_answered(room, event):  # a TLP:RED direct room?
                await self._handle(room, event.sender, event.event_id, content, lambda services: (
                    carry_red_reply(services, room_id=room.room_id, sender=event.sender,
                                    event_id=event.event_id, relation=relation,
                                    body=event.body)))
            return
        if link is None or not await self.trusted_or_answered(room, event):
            return
        if (carries(link, event.sender) and reply_text(event.body)
                and await self._flooded(room, event, content)):
            return
        await self._handle(room, event.sender, event.event_id, content, lambda services: (
            case_events.carry_reply(services, room_id=room.room_id, sender=event.sender,
                                    event_id=event.event_id, relation=relation,
                                    body=event.body)))

    async def on_media(self, room: MatrixRoom, event: RoomEncryptedMedia) -> None:
        """A photo or file on a case (`commands.attachments`): fetched, decrypted and
        checked, and uploaded again under a fresh key, before the event's transaction —
        which claims the event and queues the relays, so they go out once even if a crash
        makes sync deliver the event again (the upload before it is then an orphan)."""
        if not sealed(room, event):
            return
        content = event.source.get("content", {})
        attachment = attachment_of(content)
        if attachment is None or await self._transactions.is_processed(event.event_id):
            return
        relation = relation_of(content)

        async def find(services: Services) -> case_events.CaseLink | None:
            if relation.candidates:
                return await case_events.case_in_room(services, room.room_id,
                                                      relation.candidates)
            return await case_events.case_after_alert(services, room.room_id, event.sender,
                                                      event.server_timestamp)
        link: case_events.CaseLink | None = await self._transactions.read(find)
        if link is None or not await self.trusted_or_answered(room, event):
            return
        if carries(link, event.sender) and await self._flooded(room, event, content):
            return
        outcome = await take_attachment(self._client, attachment,
                                        self._directory.config.attachments,
                                        open_case=link.case.is_open)
        if isinstance(outcome, AttachmentRefusal):
            log.info("attachment refused", extra={"room_id": room.room_id,
                                                  "event_id": event.event_id,
                                                  "reason": outcome.reason})
            await self._handle(room, event.sender, event.event_id, content, lambda services: (
                case_events.refuse_attachment(services, link=link, sender=event.sender,
                                              event_id=event.event_id, refusal=outcome)))
            return
        fetched, media = outcome
        await self._handle(room, event.sender, event.event_id, content, lambda services: (
            case_events.carry_attachment(services, link=link, sender=event.sender,
                                         event_id=event.event_id, attachment=attachment,
                                         fetched=fetched, media=media)))

    async def on_edit(self, room: MatrixRoom, event: RoomMessageText, original: str,
                      new_body: str | None) -> None:
        if not sealed(room, event) or new_body is None:
            return
        case = await self._transactions.read(lambda services: cases.case_opened_by(
            services.conn, room_id=room.room_id, event_id=original))
        if case is None or not await self.trusted_or_answered(room, event):
            return
        post = self._directory.post_for_room(room.room_id)
        if (case.is_open and event.sender == case.origin_sender and post is not None
                and acts_for(post, event.sender)  # an edit that would be carried
                and await self._flooded(room, event, thread_of(original), reply_to=original)):
            return
        await self._handle(room, event.sender, original, thread_of(original), lambda services: (
            case_events.carry_edit(services, room_id=room.room_id, sender=event.sender,
                                   event_id=event.event_id, original=original,
                                   new_body=new_body)))

    async def on_redaction(self, room: MatrixRoom, event: RedactionEvent) -> None:
        if not room.encrypted:
            return
        await self._handle(room, event.sender, event.event_id, None, lambda services: (
            case_events.withdraw(services, room_id=room.room_id, sender=event.sender,
                                 event_id=event.event_id, redacts=event.redacts)))

    async def _flooded(self, room: MatrixRoom, event: RoomMessageText | RoomEncryptedMedia,
                       content: dict[str, Any], *, reply_to: str | None = None) -> bool:
        """Flood control for replies, attachments and edits of alerts on cases
        (`limits.case_messages_*`): each one makes the bot write into other posts' rooms,
        so a member sending them in a loop would flood those rooms through it. True when
        this one is over a limit: it is claimed and not carried, and the sender is told
        once per window (in answer to `reply_to`, default the event itself). Counted by
        server time like commands; an event handled before a restart costs no token."""
        if await self._transactions.is_processed(event.event_id):
            return False  # its handler finds the claim and does nothing
        at_ms = min(event.server_timestamp, self._transactions.clock.now_ms())
        verdict = self._flood.admit(event.sender, room.room_id, at_ms)
        if verdict.admitted:
            return False
        log.info("case message not carried: over the rate limit",
                 extra={"room_id": room.room_id, "event_id": event.event_id,
                        "sender": event.sender, "limit": f"{verdict.scope}: {verdict.rate}",
                        "notified": verdict.notify})

        async def work(services: Services) -> None:
            if verdict.notify:
                notice = flood_notice(verdict, self._directory.language_for_room(room.room_id),
                                      messages="flood.case")
                await queue_reply(services, room.room_id, reply_to or event.event_id,
                                  content, notice, kind=OutboxKind.FLOOD_REFUSAL)
        await self._transactions.run(room.room_id, event.event_id, work)
        return True

    async def _handle(self, room: MatrixRoom, sender: str, answer_to: str,
                      answer_content: dict[str, Any] | None,
                      handler: CaseEventHandler) -> None:
        """Run a case-event handler in the event's transaction; its answer, if any, goes out
        as a reply to `answer_to` (in the thread `answer_content` is in). The handler
        claims the event itself once it knows the event is about a case; a failure rolls
        it all back."""
        language = self._directory.language_for_room(room.room_id)

        async def work(services: Services) -> None:
            try:
                reply = await handler(services)
            except CommandError as error:
                await record_refusal(services, error, room_id=room.room_id, sender=sender,
                                     command=None)
                reply = render_command_error(error, language)
            if reply is not None:
                await queue_reply(services, room.room_id, answer_to, answer_content or {},
                                  reply)
        try:
            await self._transactions.run(room.room_id, None, work)
            if current_case() is not None:  # learnt through `Services`: it was about a case
                log.info("case event handled")
        except Exception:
            log.exception("case event failed", extra={"incident": secrets.token_hex(4),
                                                      "room_id": room.room_id,
                                                      "event_id": answer_to})
