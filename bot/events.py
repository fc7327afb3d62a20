"""What the bot does with each synced event: invites, commands, undecryptable events,
and the events that work a case without a command — reactions, replies and thread
messages, edits, redactions, photos and files (decided in `commands.case_events`; an
attachment is fetched and re-uploaded by `bot.media` before its transaction).

Every event the bot acts on is handled inside one database transaction that claims
the event id and enqueues whatever follows from it, so an event is acted on exactly
once even when a crash makes sync deliver it again.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from nio import (
    AsyncClient,
    InviteInfo,
    MatrixRoom,
    MegolmEvent,
    ReactionEvent,
    RedactionEvent,
    RoomEncryptedMedia,
    RoomMemberEvent,
    RoomMessageText,
    SyncResponse,
)

from bot.clock import Clock, from_ms
from bot.config import Config
from bot.direct_rooms import room_members
from bot.invites import InvitePolicy, answer_invite
from bot.languages import RoomLanguages
from bot.logs import current_case, log_context, note_case
from bot.media import MediaInvalid, MediaTooLarge, MediaUnavailable, fetch, upload
from bot.receipts import ReadReceipts
from bot.reports import charts_installed
from bot.room_upgrades import RoomUpgrades
from bot.seen import note_receipts
from bot.services import FollowUp, Services
from bot.trust import TOFU, TrustPolicy
from bot.undecryptable import UndecryptableTracker
from commands import case_events
from commands.access import AUTHORITY_REFUSALS, acts_for, command_refusal
from commands.attachments import (
    Attachment,
    AttachmentRefusal,
    Fetched,
    attachment_of,
    media_fields,
    refusal_of,
)
from commands.command_descriptions import MSC4391_COMMAND, command_text
from commands.errors import CommandError
from commands.flood import FloodGate, flood_notice
from commands.notify import OutboxKind
from commands.registry import CommandRegistry, Invocation, Reply, split_command
from commands.relations import Relation, acknowledges, edited_body, relation_of, reply_text
from commands.render import notice_content, render_command_error, render_notice
from commands.texts import text
from storage import cases, inbox, outbox, state
from storage.audit import AuditAction
from storage.db import Database

log = logging.getLogger(__name__)

UNENCRYPTED_WARNING = "bot.unencrypted_warning"
UNTRUSTED_DEVICE_REPLY = "bot.untrusted_device"
"""Message ids (`commands.texts`) of the answers the shell gives on its own."""


def reply_relation(event_id: str, content: dict[str, Any]) -> dict[str, Any]:
    """Answer in the sender's thread when there is one, as a reply otherwise."""
    relates = content.get("m.relates_to") or {}
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str):
            return {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                    "m.in_reply_to": {"event_id": event_id}}
    return {"m.in_reply_to": {"event_id": event_id}}


def _content(notice: Reply, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return notice_content(notice.text, notice.html, mentions=notice.mentions, extra=extra)


def valid_unicode(source: Any) -> bool:
    """False when an event's JSON holds a lone surrogate (`"\\ud800"`): JSON can escape
    one, but it is not text and SQLite refuses it, so a command or a relation holding one
    would raise wherever the bot stores or looks it up — on every replay of the event.
    Only a broken or hostile client sends one, inside the ciphertext."""
    try:
        json.dumps(source, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError):
        return False
    return True


def thread_of(event_id: str) -> dict[str, Any]:
    """Content placing an answer in the thread rooted at `event_id` (a case's opening message)."""
    return {"m.relates_to": {"rel_type": "m.thread", "event_id": event_id}}


CaseEventHandler = Callable[[Services], Awaitable[Reply | None]]


async def record_refusal(services: Services, error: CommandError, *, room_id: str,
                         sender: str, command: str | None) -> None:
    """Put a refusal for want of authority on the audit log (`commands.access`); bad input
    is only answered. Asking about a case the post may not see counts when it exists."""
    ref = error.params.get("ref")
    case_ref = ref if isinstance(ref, str) else None
    if (error.msg_id == "error.case_unknown" and case_ref is not None
            and await cases.case_by_ref(services.conn, case_ref) is not None):
        reason = "case_not_visible"
    elif error.msg_id in AUTHORITY_REFUSALS:
        reason = error.msg_id.rsplit(".", 1)[-1]
    else:
        return
    detail = {"reason": reason} if command is None else {"reason": reason, "command": command}
    await services.record(AuditAction.COMMAND_REFUSED, actor=sender, case_ref=case_ref,
                          room_id=room_id, detail=detail)


def carries(link: case_events.CaseLink, sender: str) -> bool:
    """Whether a reply or attachment from `sender` on this case would be carried to other
    rooms, and so counts against `limits.case_messages_*`: one that is only answered (a
    member who is not the post's officer, a finished case) must not use up the budget
    of the room's officers."""
    return link.case.is_open and acts_for(link.post, sender)


class EventRouter:
    def __init__(
        self,
        *,
        client: AsyncClient,
        db: Database,
        clock: Clock,
        registry: CommandRegistry,
        invite_policy: InvitePolicy,
        trust: TrustPolicy,
        undecryptable: UndecryptableTracker,
        wake_sender: Callable[[], None],
        config: Config,
        language_for_room: Callable[[str], str],
        post_for_room: Callable[[str], Any],
        languages: RoomLanguages | None = None,
        receipts: ReadReceipts | None = None,
        upgrades: RoomUpgrades | None = None,
    ) -> None:
        self._client = client
        self._upgrades = upgrades
        """Follows upgraded post rooms (`bot.room_upgrades`); None in unit tests."""
        self._receipts = receipts
        """Marks each processed command read (`bot.receipts`); None in unit tests."""
        self._db = db
        self._clock = clock
        self._registry = registry
        self._invite_policy = invite_policy
        self._invites_to_retry: dict[str, InviteInfo] = {}
        self._trust = trust
        self._undecryptable = undecryptable
        self._wake_sender = wake_sender
        self._config = config
        self._language_for_room = language_for_room
        self._post_for_room = post_for_room
        self._languages = languages
        """Rooms' `!lang` choices, read again before each event (see `bot.languages`)."""
        self._flood = FloodGate(per_user=config.limits.commands_per_user,
                                per_room=config.limits.commands_per_room)
        self._case_flood = FloodGate(per_user=config.limits.case_messages_per_user,
                                     per_room=config.limits.case_messages_per_room)
        self.commands_handled = 0

    @property
    def user_id(self) -> str:
        assert self._client.user_id
        return str(self._client.user_id)

    async def handle_batch(self, response: SyncResponse) -> None:
        # Invites whose join failed are tried again with every batch while still pending.
        retry = {room_id: invite for room_id, invite in self._invites_to_retry.items()
                 if room_id in self._client.invited_rooms
                 and room_id not in response.rooms.invite}
        self._invites_to_retry = {}
        for room_id, invite in [*response.rooms.invite.items(), *retry.items()]:
            expected = self._upgrades is not None and self._upgrades.is_replacement(room_id)
            await answer_invite(self._client, self._invite_policy, room_id, invite,
                                on_declined=self._invite_recorder(room_id), expected=expected,
                                on_join_failed=self._invite_retrier(room_id, invite))
        for room_id, joined in response.rooms.join.items():
            room = self._client.rooms.get(room_id)
            if room is None:
                continue
            # Learn when the bot joined before judging any event of the batch by it.
            for event in joined.timeline.events:
                if isinstance(event, RoomMemberEvent):
                    await self._on_member(room, event)
            for event in joined.timeline.events:
                if not isinstance(event, RoomMemberEvent):
                    await self.handle_event(room, event)
            if joined.ephemeral:
                await note_receipts(self._db, self._clock, room, list(joined.ephemeral),
                                    self.user_id)
        await self._undecryptable.retry(self.handle_event)
        if self._upgrades is not None:
            await self._upgrades.check()

    def _invite_retrier(self, room_id: str, invite: InviteInfo) -> Callable[[], None]:
        def again() -> None:
            self._invites_to_retry[room_id] = invite
        return again

    def _invite_recorder(self, room_id: str) -> Callable[[str | None], Awaitable[None]]:
        """Records a declined invite on the audit log: who tried to bring the bot where."""
        async def record(inviter: str | None) -> None:
            async with self._db.transaction() as conn:
                await self._services_for(conn).record(
                    AuditAction.INVITE_DECLINED, actor=inviter or "unknown", room_id=room_id,
                    detail={"reason": "inviter_not_allowed"})
        return record

    async def handle_event(self, room: MatrixRoom, event: Any) -> None:
        """Act on one event; every log line meanwhile names its room, the event and, once
        known, the case (`bot.logs`)."""
        with log_context(room_id=room.room_id, event_id=getattr(event, "event_id", None)):
            await self._route(room, event)

    async def _route(self, room: MatrixRoom, event: Any) -> None:
        log.debug("event", extra={"room_id": room.room_id, "type": type(event).__name__,
                                  "event_id": getattr(event, "event_id", None)})
        if getattr(event, "sender", None) == self.user_id:
            await self._note_echo(event)
            return
        if not isinstance(event, MegolmEvent | RoomMessageText | ReactionEvent | RedactionEvent
                          | RoomEncryptedMedia):
            return
        if not await self._after_join(room, event):
            return
        if self._languages is not None:
            await self._languages.refresh(self._db)
        if not valid_unicode(getattr(event, "source", None)):
            await self._refuse_invalid_text(room, event)
            return
        if isinstance(event, MegolmEvent):
            await self._undecryptable.track(room, event)
        elif isinstance(event, RoomMessageText):
            await self._on_text(room, event)
        elif isinstance(event, RoomEncryptedMedia):
            await self._on_media(room, event)
        elif isinstance(event, ReactionEvent):
            await self._on_reaction(room, event)
        else:
            await self._on_redaction(room, event)

    async def _note_echo(self, event: Any) -> None:
        """The bot's own message came back through sync: note its event id against its
        outbox row now, since a reaction or reply to it may be in this very batch, ahead
        of the sender's bookkeeping of the send's response."""
        source = getattr(event, "source", None) or {}
        unsigned = source.get("unsigned")
        txn_id = unsigned.get("transaction_id") if isinstance(unsigned, dict) else None
        event_id = source.get("event_id")
        if not isinstance(txn_id, str) or not isinstance(event_id, str):
            return
        async with self._db.transaction() as conn:
            await outbox.note_event_id(conn, txn_id=txn_id, event_id=event_id)

    async def _on_member(self, room: MatrixRoom, event: RoomMemberEvent) -> None:
        if event.state_key == self.user_id and event.membership == "join":
            async with self._db.transaction() as conn:
                await state.record_room_joined(
                    conn, room_id=room.room_id, joined_ms=event.server_timestamp
                )
        elif event.membership != (event.prev_membership or ""):
            self._trust.invalidate({event.state_key})

    async def _after_join(self, room: MatrixRoom, event: Any) -> bool:
        """Ignore history from before the bot joined (shared history is not a request to it)."""
        ts = getattr(event, "server_timestamp", 0)
        async with self._db.read() as conn:
            joined_ms = await state.room_joined_ms(conn, room.room_id)
        if joined_ms is None:
            async with self._db.transaction() as conn:
                joined_ms = await state.record_room_joined(
                    conn, room_id=room.room_id, joined_ms=self._clock.now_ms()
                )
        return bool(ts >= joined_ms)

    async def _on_text(self, room: MatrixRoom, event: RoomMessageText) -> None:
        content = event.source.get("content", {})
        relation = relation_of(content)
        if relation.replaces is not None:
            await self._on_edit(room, event, relation.replaces, edited_body(content))
            return
        parsed = split_command(self._typed_form(content, event.body))
        if parsed is None:
            if relation.candidates:
                await self._on_reply(room, event, relation, content)
            return
        if not room.encrypted or not getattr(event, "decrypted", False):
            await self._refuse_unencrypted(room, event)
            return
        device_id = self._sender_device(event)
        if not await self._trust.sender_allowed(event.sender, device_id):
            await self._answer(room, event, self._notice(room, UNTRUSTED_DEVICE_REPLY),
                               kind=OutboxKind.REFUSAL, refused="untrusted_device")
            return
        await self._run_command(room, event, parsed, content, relation)

    def _typed_form(self, content: dict[str, Any], body: str) -> str:
        """The command as an officer would type it: a client that knows the bot's command
        descriptions (MSC4391) sends the command and its arguments, and a body of its own
        choosing; anything else is read from the body."""
        invocation = content.get(MSC4391_COMMAND)
        if invocation is None:
            return body
        typed = command_text(self._registry, invocation)
        return body if typed is None else typed

    # --- events that work a case without a command --------------------------------------

    async def _on_reaction(self, room: MatrixRoom, event: ReactionEvent) -> None:
        """Clients send reactions in the clear even in encrypted rooms (nio always does),
        so a plaintext reaction counts — in an encrypted room, and under the `tofu` policy
        only, since no device vouches for it. An encrypted one is checked like a command."""
        if not room.encrypted or not acknowledges(event.key):
            return
        if getattr(event, "decrypted", False):
            if not await self._trust.sender_allowed(event.sender, self._sender_device(event)):
                return
        elif self._trust.policy != TOFU:
            log.info("plaintext reaction ignored under the cross-signed policy",
                     extra={"room_id": room.room_id, "event_id": event.event_id})
            await self._handle_case_event(
                room, event.sender, event.reacts_to, None, lambda services: (
                    case_events.plaintext_reaction(
                        services, room_id=room.room_id, sender=event.sender,
                        event_id=event.event_id, reacts_to=event.reacts_to, key=event.key)))
            return
        await self._handle_case_event(room, event.sender, event.event_id, None, lambda services: (
            case_events.react(services, room_id=room.room_id, sender=event.sender,
                              event_id=event.event_id, reacts_to=event.reacts_to,
                              key=event.key)))

    async def _on_reply(self, room: MatrixRoom, event: RoomMessageText, relation: Relation,
                        content: dict[str, Any]) -> None:
        if not room.encrypted or not getattr(event, "decrypted", False):
            return  # never carry (or answer) plaintext
        async with self._db.read() as conn:
            link = await case_events.case_in_room(self._services_for(conn), room.room_id,
                                                  relation.candidates)
        if link is None or not await self._trusted_or_answered(room, event):
            return
        if (carries(link, event.sender) and reply_text(event.body)
                and await self._case_flooded(room, event, content)):
            return
        await self._handle_case_event(
            room, event.sender, event.event_id, content, lambda services: (
                case_events.carry_reply(services, room_id=room.room_id, sender=event.sender,
                                        event_id=event.event_id, relation=relation,
                                        body=event.body)))

    async def _on_media(self, room: MatrixRoom, event: RoomEncryptedMedia) -> None:
        """A photo or file on a case (`commands.attachments`): fetched, decrypted and
        checked, and uploaded again under a fresh key, before the event's transaction —
        which claims the event and queues the relays, so they go out once even if a crash
        makes sync deliver the event again (the upload before it is then an orphan)."""
        if not room.encrypted or not getattr(event, "decrypted", False):
            return
        content = event.source.get("content", {})
        attachment = attachment_of(content)
        if attachment is None:
            return
        relation = relation_of(content)
        async with self._db.read() as conn:
            if await inbox.is_processed(conn, event.event_id):
                return
            services = self._services_for(conn)
            if relation.candidates:
                link = await case_events.case_in_room(services, room.room_id,
                                                      relation.candidates)
            else:
                link = await case_events.case_after_alert(services, room.room_id,
                                                          event.sender, event.server_timestamp)
        if link is None or not await self._trusted_or_answered(room, event):
            return
        if carries(link, event.sender) and await self._case_flooded(room, event, content):
            return
        outcome = await self._take_attachment(attachment, open_case=link.case.is_open)
        if isinstance(outcome, AttachmentRefusal):
            log.info("attachment refused", extra={"room_id": room.room_id,
                                                  "event_id": event.event_id,
                                                  "reason": outcome.reason})
            await self._handle_case_event(
                room, event.sender, event.event_id, content, lambda services: (
                    case_events.refuse_attachment(services, link=link, sender=event.sender,
                                                  event_id=event.event_id, refusal=outcome)))
            return
        fetched, media = outcome
        await self._handle_case_event(
            room, event.sender, event.event_id, content, lambda services: (
                case_events.carry_attachment(services, link=link, sender=event.sender,
                                             event_id=event.event_id, attachment=attachment,
                                             fetched=fetched, media=media)))

    async def _take_attachment(
        self, attachment: Attachment, *, open_case: bool
    ) -> AttachmentRefusal | tuple[Fetched, dict[str, Any]]:
        """Fetch, verify and re-upload an attachment, or say why it is not taken."""
        policy = self._config.attachments
        if not open_case:
            return AttachmentRefusal("finished", {})
        refusal = refusal_of(attachment, policy)
        if refusal is not None:
            return refusal
        try:
            fetched = await fetch(self._client, attachment.file, timeout=policy.fetch_timeout,
                                  max_bytes=policy.max_bytes)
        except MediaTooLarge as error:
            return refusal_of(attachment, policy, size=error.size) or AttachmentRefusal(
                "too_large", {"name": attachment.filename, "size": error.size,
                              "limit": policy.max_bytes})
        except MediaUnavailable as error:
            log.warning("attachment not fetched", extra={"reason": str(error)})
            return AttachmentRefusal("unavailable", {"name": attachment.filename})
        except MediaInvalid as error:
            log.warning("attachment does not decrypt", extra={"reason": str(error)})
            return AttachmentRefusal("invalid", {"name": attachment.filename})
        if attachment.declared_size is not None and attachment.declared_size != len(fetched.data):
            return AttachmentRefusal("invalid", {"name": attachment.filename})
        thumbnail = await self._relayed_thumbnail(attachment)
        try:
            file = await upload(self._client, fetched.data, filename=attachment.filename)
        except MediaUnavailable as error:
            log.warning("attachment not uploaded", extra={"reason": str(error)})
            return AttachmentRefusal("unavailable", {"name": attachment.filename})
        return fetched, media_fields(attachment, file=file, size=len(fetched.data),
                                     thumbnail=thumbnail)

    async def _relayed_thumbnail(self, attachment: Attachment) -> dict[str, Any] | None:
        """The source's thumbnail, re-encrypted and uploaded; None when it had none or it
        cannot be had (the attachment goes without it)."""
        if attachment.thumbnail is None:
            return None
        policy = self._config.attachments
        try:
            thumbnail = await fetch(self._client, attachment.thumbnail,
                                    timeout=policy.fetch_timeout, max_bytes=policy.max_bytes)
            return await upload(self._client, thumbnail.data, filename="thumbnail")
        except (MediaUnavailable, MediaInvalid, MediaTooLarge) as error:
            log.info("thumbnail left out", extra={"reason": str(error)})
            return None

    async def _on_edit(self, room: MatrixRoom, event: RoomMessageText, original: str,
                       new_body: str | None) -> None:
        if not room.encrypted or not getattr(event, "decrypted", False) or new_body is None:
            return
        async with self._db.read() as conn:
            case = await cases.case_opened_by(conn, room_id=room.room_id, event_id=original)
        if case is None or not await self._trusted_or_answered(room, event):
            return
        post = self._post_for_room(room.room_id)
        if (case.is_open and event.sender == case.origin_sender and post is not None
                and acts_for(post, event.sender)  # an edit that would be carried
                and await self._case_flooded(room, event, thread_of(original),
                                             reply_to=original)):
            return
        await self._handle_case_event(
            room, event.sender, original, thread_of(original), lambda services: (
                case_events.carry_edit(services, room_id=room.room_id, sender=event.sender,
                                       event_id=event.event_id, original=original,
                                       new_body=new_body)))

    async def _on_redaction(self, room: MatrixRoom, event: RedactionEvent) -> None:
        if not room.encrypted:
            return
        await self._handle_case_event(room, event.sender, event.event_id, None, lambda services: (
            case_events.withdraw(services, room_id=room.room_id, sender=event.sender,
                                 event_id=event.event_id, redacts=event.redacts)))

    async def _trusted_or_answered(self, room: MatrixRoom,
                                   event: RoomMessageText | RoomEncryptedMedia) -> bool:
        """True if the device that sent the message may work cases; otherwise the sender is
        told (once) why nothing happened."""
        if await self._trust.sender_allowed(event.sender, self._sender_device(event)):
            return True
        await self._answer(room, event, self._notice(room, UNTRUSTED_DEVICE_REPLY),
                           kind=OutboxKind.REFUSAL, refused="untrusted_device")
        return False

    async def _handle_case_event(self, room: MatrixRoom, sender: str, answer_to: str,
                                 answer_content: dict[str, Any] | None,
                                 handler: CaseEventHandler) -> None:
        """Run a case-event handler in one transaction; its answer, if any, goes out as a
        reply to `answer_to` (in the thread `answer_content` is in). The handler claims the
        event itself once it knows the event is about a case; a failure rolls it all back."""
        language = self._language_for_room(room.room_id)
        try:
            async with self._db.transaction() as conn:
                services = self._services_for(conn)
                try:
                    reply = await handler(services)
                except CommandError as error:
                    await record_refusal(services, error, room_id=room.room_id, sender=sender,
                                         command=None)
                    reply = render_command_error(error, language)
                if reply is not None:
                    await self._enqueue_reply(conn, room.room_id, answer_to,
                                              answer_content or {}, reply)
            if current_case() is not None:  # learnt through `Services`: it was about a case
                log.info("case event handled")
        except Exception:
            log.exception("case event failed", extra={"incident": secrets.token_hex(4),
                                                      "room_id": room.room_id,
                                                      "event_id": answer_to})
            return
        self._wake_sender()

    def _notice(self, room: MatrixRoom, msg_id: str, **params: object) -> Reply:
        """One of the shell's own answers, in the room's language."""
        language = self._language_for_room(room.room_id)
        return render_notice(text(msg_id, language, **params), language=language)

    def _sender_device(self, event: Any) -> str | None:
        """The device that sent a decrypted event, from the session's curve25519 key."""
        sender_key = getattr(event, "sender_key", None)
        for device in self._client.device_store.active_user_devices(event.sender):
            if device.curve25519 == sender_key:
                return str(device.id)
        return None

    async def _refuse_invalid_text(self, room: MatrixRoom, event: Any) -> None:
        """An event that is not valid Unicode is acted on in no way; a command gets a plain
        reply saying why (its own relation is not repeated: it may be what is broken)."""
        log.warning("event with invalid Unicode ignored",
                    extra={"room_id": room.room_id, "event_id": event.event_id,
                           "sender": getattr(event, "sender", None)})
        if (not isinstance(event, RoomMessageText) or not room.encrypted
                or split_command(event.body) is None):
            return
        notice = self._notice(room, "error.invalid_text")
        async with self._db.transaction() as conn:
            if not await inbox.claim_event(conn, event_id=event.event_id, room_id=room.room_id,
                                           now_ms=self._clock.now_ms()):
                return
            await self._enqueue_reply(conn, room.room_id, event.event_id, {}, notice,
                                      kind=OutboxKind.REFUSAL)
        self._wake_sender()

    async def _refuse_unencrypted(self, room: MatrixRoom, event: RoomMessageText) -> None:
        log.warning("command in an unencrypted room ignored",
                    extra={"room_id": room.room_id, "event_id": event.event_id})
        if room.encrypted:
            return  # a plaintext message in an encrypted room: never answer in plaintext
        async with self._db.transaction() as conn:
            if not await inbox.claim_event(conn, event_id=event.event_id,
                                           room_id=room.room_id, now_ms=self._clock.now_ms()):
                return
            await self._services_for(conn).record(
                AuditAction.COMMAND_REFUSED, actor=event.sender, room_id=room.room_id,
                detail={"reason": "unencrypted_room"})
            if not await state.mark_unencrypted_warned(conn, room.room_id,
                                                       now_ms=self._clock.now_ms()):
                return
            await outbox.enqueue(
                conn, room_id=room.room_id, event_type="m.room.message",
                content=_content(self._notice(room, UNENCRYPTED_WARNING)),
                now_ms=self._clock.now_ms(), kind=OutboxKind.PLAINTEXT_WARNING,
            )
        self._wake_sender()

    async def _run_command(
        self,
        room: MatrixRoom,
        event: RoomMessageText,
        parsed: tuple[str, str, tuple[str, ...]],
        content: dict[str, Any],
        relation: Relation,
    ) -> None:
        word, args, lines = parsed
        now = self._clock.now()
        async with self._db.transaction() as conn:
            if not await inbox.claim_event(conn, event_id=event.event_id, room_id=room.room_id,
                                           now_ms=self._clock.now_ms()):
                log.info("event already processed", extra={"event_id": event.event_id})
                return
            if await self._flooded(conn, room, event, content):
                self._mark_read(room, event, relation)
                return
            services = self._services_for(conn)
            audience = services.audience(room.room_id)
            if not audience.known:
                await self._unknown_room(services, room, event, content, word)
                return
            post = self._post_for_room(room.room_id)
            name, outcome = None, "done"
            follow_ups: list[FollowUp] = []
            try:
                spec = self._registry.resolve(word)
                name = spec.name
                refusal = command_refusal(spec, event.sender, post=post,
                                          posts=self._config.posts,
                                          admins=self._config.access.admins,
                                          audience=audience,
                                          language=self._language_for_room(room.room_id))
                if refusal is not None:
                    raise refusal
                link = (await case_events.case_in_room(services, room.room_id,
                                                       relation.candidates)
                        if relation.candidates else None)
                invocation = Invocation(
                    command=spec, args=args, lines=lines, room_id=room.room_id,
                    sender=event.sender, event_id=event.event_id,
                    sent_at=from_ms(event.server_timestamp), now=now,
                    post=post, audience=audience,
                    language=self._language_for_room(room.room_id),
                    bot_device_id=self._client.device_id or "",
                    services=services,
                    context_ref=link.case.ref if link is not None else None,
                )
                reply = await spec.handler(invocation)
                follow_ups = services.follow_ups  # only a handler that succeeded has them
            except CommandError as error:
                await record_refusal(services, error, room_id=room.room_id, sender=event.sender,
                                     command=word)
                reply = render_command_error(error, self._language_for_room(room.room_id))
                outcome = "refused"
            except Exception:
                outcome = "failed"
                incident = secrets.token_hex(4)
                log.exception("command failed", extra={"incident": incident,
                                                       "room_id": room.room_id,
                                                       "event_id": event.event_id})
                reply = self._notice(room, "bot.incident", incident=incident)
            opened = await cases.case_opened_by(conn, room_id=room.room_id,
                                                event_id=event.event_id)
            await self._enqueue_reply(conn, room.room_id, event.event_id, content, reply,
                                      case_ref=opened.ref if opened is not None else None)
            for follow_up in follow_ups:  # after the reply: the room's order is kept
                await outbox.enqueue(
                    conn, room_id=room.room_id, event_type="m.room.message",
                    content={**follow_up.content,
                             "m.relates_to": reply_relation(event.event_id, content)},
                    now_ms=self._clock.now_ms(), kind=follow_up.kind)
        # The command's name only: what follows it is the officer's text.
        log.info("command handled", extra={"command": name, "outcome": outcome})
        self.commands_handled += 1
        self._wake_sender()
        self._mark_read(room, event, relation)

    def _mark_read(self, room: MatrixRoom, event: RoomMessageText, relation: Relation) -> None:
        """The officer's client shows the command was read, in its thread if it has one."""
        if self._receipts is not None:
            self._receipts.mark_read(room.room_id, event.event_id,
                                     thread_root=relation.thread_root)

    async def _unknown_room(self, services: Services, room: MatrixRoom, event: RoomMessageText,
                            content: dict[str, Any], word: str) -> None:
        """A command in a room that stands for nobody the bot serves (`commands.audience`):
        the first one is answered with one explanation and the admins' room is told; every
        later one — `!ping` and `!help` included — gets silence. Each is audited."""
        conn, now_ms = services.conn, self._clock.now_ms()
        log.warning("command in a room that is no post's, supervisors' or person's room",
                    extra={"room_id": room.room_id, "event_id": event.event_id})
        await services.record(AuditAction.COMMAND_REFUSED, actor=event.sender,
                              room_id=room.room_id,
                              detail={"reason": "unknown_room", "command": word})
        if not await state.mark_unknown_room_explained(conn, room.room_id, now_ms=now_ms):
            return
        await self._enqueue_reply(conn, room.room_id, event.event_id, content,
                                  self._notice(room, "bot.unknown_room"),
                                  kind=OutboxKind.REFUSAL)
        admins_room = self._config.access.admins_room
        if admins_room is not None and admins_room in self._client.rooms:
            language = self._language_for_room(admins_room)
            notice = render_notice(text("bot.unknown_room_admins", language, room=room.room_id,
                                        user=event.sender), language=language)
            await outbox.enqueue(conn, room_id=admins_room, event_type="m.room.message",
                                 content=_content(notice), now_ms=now_ms,
                                 kind=OutboxKind.ADMIN_NOTICE)
        self._wake_sender()

    async def _flooded(self, conn: Any, room: MatrixRoom, event: RoomMessageText,
                       content: dict[str, Any]) -> bool:
        """Flood control (`commands.flood`), after the claim: True when the command is over a
        limit and must not run. Counted by the event's server time, never later than now,
        so commands queued while the bot was down are not taken for a flood."""
        at_ms = min(event.server_timestamp, self._clock.now_ms())
        verdict = self._flood.admit(event.sender, room.room_id, at_ms)
        if verdict.admitted:
            return False
        log.info("command refused: over the rate limit",
                 extra={"room_id": room.room_id, "event_id": event.event_id,
                        "sender": event.sender, "limit": f"{verdict.scope}: {verdict.rate}",
                        "notified": verdict.notify})
        if verdict.notify:
            notice = flood_notice(verdict, self._language_for_room(room.room_id))
            await self._enqueue_reply(conn, room.room_id, event.event_id, content, notice,
                                      kind=OutboxKind.FLOOD_REFUSAL)
            self._wake_sender()  # it reads the outbox only once this transaction commits
        return True

    async def _case_flooded(self, room: MatrixRoom, event: RoomMessageText | RoomEncryptedMedia,
                            content: dict[str, Any], *, reply_to: str | None = None) -> bool:
        """Flood control for replies, attachments and edits of alerts on cases
        (`limits.case_messages_*`): each one makes the bot write into other posts' rooms,
        so a member sending them in a loop would flood those rooms through it. True when
        this one is over a limit: it is claimed and not carried, and the sender is told
        once per window (in answer to `reply_to`, default the event itself). Counted by
        server time like commands; an event handled before a restart costs no token."""
        async with self._db.read() as conn:
            if await inbox.is_processed(conn, event.event_id):
                return False  # its handler finds the claim and does nothing
        at_ms = min(event.server_timestamp, self._clock.now_ms())
        verdict = self._case_flood.admit(event.sender, room.room_id, at_ms)
        if verdict.admitted:
            return False
        log.info("case message not carried: over the rate limit",
                 extra={"room_id": room.room_id, "event_id": event.event_id,
                        "sender": event.sender, "limit": f"{verdict.scope}: {verdict.rate}",
                        "notified": verdict.notify})
        async with self._db.transaction() as conn:
            if not await inbox.claim_event(conn, event_id=event.event_id, room_id=room.room_id,
                                           now_ms=self._clock.now_ms()):
                return True
            if verdict.notify:
                notice = flood_notice(verdict, self._language_for_room(room.room_id),
                                      messages="flood.case")
                await self._enqueue_reply(conn, room.room_id, reply_to or event.event_id,
                                          content, notice, kind=OutboxKind.FLOOD_REFUSAL)
        if verdict.notify:
            self._wake_sender()
        return True

    def _services_for(self, conn: Any) -> Services:
        rooms = self._client.rooms
        return Services(
            config=self._languages.config if self._languages is not None else self._config,
            clock=self._clock, conn=conn, bot_user_id=self.user_id,
            joined_rooms=frozenset(rooms),
            encrypted_rooms=frozenset(r for r, room in rooms.items() if room.encrypted),
            members_of=lambda room_id: room_members(self._client, room_id),
            charts=charts_installed(),
        )

    async def _answer(self, room: MatrixRoom, event: RoomMessageText | RoomEncryptedMedia,
                      reply: Reply,
                      *, kind: OutboxKind, refused: str | None = None) -> None:
        """Answer the event once; `refused` (a reason) also records it on the audit log."""
        content = event.source.get("content", {})
        async with self._db.transaction() as conn:
            if not await inbox.claim_event(conn, event_id=event.event_id, room_id=room.room_id,
                                           now_ms=self._clock.now_ms()):
                return
            if refused is not None:
                await self._services_for(conn).record(
                    AuditAction.COMMAND_REFUSED, actor=event.sender, room_id=room.room_id,
                    detail={"reason": refused})
            await self._enqueue_reply(conn, room.room_id, event.event_id, content, reply,
                                      kind=kind)
        self._wake_sender()

    async def _enqueue_reply(self, conn: Any, room_id: str, event_id: str,
                             content: dict[str, Any], reply: Reply, *,
                             kind: OutboxKind = OutboxKind.REPLY,
                             case_ref: str | None = None) -> None:
        """Queue `reply` as an answer to `event_id`; with `case_ref` (the answer to the
        command that opened a case) a reply to the answer is a reply on the case."""
        message = _content(reply, {"m.relates_to": reply_relation(event_id, content)})
        if case_ref is not None:
            note_case(case_ref)
        await outbox.enqueue(conn, room_id=room_id, event_type="m.room.message",
                             content=message, now_ms=self._clock.now_ms(), kind=kind,
                             case_ref=case_ref)
