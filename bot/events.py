"""The router: decides where each synced event goes, and nothing else.

Invites go to `bot.invites`; the bot's own echoes and membership changes to the room
bookkeeping; undecryptable events to `bot.undecryptable`; commands to
`bot.command_runner`; reactions, replies, edits, redactions, photos and files on cases
to `bot.case_messages`; everything in a link room to `bot.links`. Whoever acts on an
event does it inside the one transaction `bot.event_transaction` owns: claimed once,
queued, committed, then the sender woken.
"""

from __future__ import annotations

import logging
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

from liaison.bot.case_messages import UNTRUSTED_DEVICE_REPLY, CaseMessages, sealed, sender_device
from liaison.bot.command_runner import CommandEvent, CommandRunner
from liaison.bot.directory import Directory
from liaison.bot.event_transaction import (
    EventTransactions,
    queue_reply,
    reply_content,
    valid_unicode,
)
from liaison.bot.invites import InvitePolicy, answer_invite
from liaison.bot.links import LinkEvents
from liaison.bot.logs import log_context
from liaison.bot.receipts import ReadReceipts
from liaison.bot.room_upgrades import RoomUpgrades
from liaison.bot.trust import TrustPolicy
from liaison.bot.undecryptable import UndecryptableTracker
from liaison.commands.command_descriptions import MSC4391_COMMAND, command_text
from liaison.commands.flood import FloodGate
from liaison.commands.notify import OutboxKind
from liaison.commands.registry import CommandRegistry, split_command
from liaison.commands.relations import edited_body, relation_of
from liaison.handlers.context import Services
from liaison.storage import state
from liaison.storage.audit import AuditAction

log = logging.getLogger(__name__)

UNENCRYPTED_WARNING = "bot.unencrypted_warning"
"""Message id (`commands.texts`) of the one plaintext warning in an unencrypted room."""

ACTED_ON = (MegolmEvent, RoomMessageText, ReactionEvent, RedactionEvent, RoomEncryptedMedia)


class EventRouter:
    def __init__(self, *, client: AsyncClient, transactions: EventTransactions,
                 registry: CommandRegistry, directory: Directory, invite_policy: InvitePolicy,
                 trust: TrustPolicy, undecryptable: UndecryptableTracker,
                 receipts: ReadReceipts | None = None,
                 upgrades: RoomUpgrades | None = None,
                 links: LinkEvents | None = None) -> None:
        self._client = client
        self._transactions = transactions
        self._registry = registry
        self._directory = directory
        self._invite_policy = invite_policy
        self._invites_to_retry: dict[str, InviteInfo] = {}
        self._trust = trust
        self._undecryptable = undecryptable
        self._receipts = receipts
        """Marks each processed command read (`bot.receipts`); None in unit tests."""
        self._upgrades = upgrades
        """Follows upgraded post rooms (`bot.room_upgrades`); None in unit tests."""
        self.links = links
        """Protocol events of the link rooms (`bot.links`); None: no links configured."""
        limits = directory.config.limits
        self.commands = CommandRunner(
            transactions=transactions, registry=registry, directory=directory,
            flood=FloodGate(per_user=limits.commands_per_user, per_room=limits.commands_per_room),
            bot_device_id=client.device_id or "")
        self.case_messages = CaseMessages(
            client=client, transactions=transactions, directory=directory, trust=trust,
            flood=FloodGate(per_user=limits.case_messages_per_user,
                            per_room=limits.case_messages_per_room))

    @property
    def user_id(self) -> str:
        assert self._client.user_id
        return str(self._client.user_id)

    @property
    def commands_handled(self) -> int:
        return self.commands.commands_handled

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
                await self._transactions.note_receipts(room, list(joined.ephemeral))
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
            async def work(services: Services) -> None:
                await services.record(AuditAction.INVITE_DECLINED, actor=inviter or "unknown",
                                      room_id=room_id, detail={"reason": "inviter_not_allowed"})
            await self._transactions.record(work)
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
        link = self.links.link_for_room(room.room_id) if self.links is not None else None
        if link is not None and self.links is not None:
            # No filter on the join time: a protocol event is claimed and keyed, and one
            # sent while the bot was only invited must not be lost.
            await self._transactions.refresh_directory()
            if isinstance(event, MegolmEvent):
                await self._undecryptable.track(room, event)
            else:
                await self.links.on_event(link, room, event)
            return
        if not isinstance(event, ACTED_ON):
            return
        # Shared history from before the bot joined is not a request to it.
        if getattr(event, "server_timestamp", 0) < await self._transactions.joined_ms(room.room_id):
            return
        await self._transactions.refresh_directory()
        if not valid_unicode(getattr(event, "source", None)):
            await self._refuse_invalid_text(room, event)
        elif isinstance(event, MegolmEvent):
            await self._undecryptable.track(room, event)
        elif isinstance(event, RoomMessageText):
            await self._on_text(room, event)
        elif isinstance(event, RoomEncryptedMedia):
            await self.case_messages.on_media(room, event)
        elif isinstance(event, ReactionEvent):
            await self.case_messages.on_reaction(room, event)
        else:
            await self.case_messages.on_redaction(room, event)

    async def _note_echo(self, event: Any) -> None:
        """The bot's own message came back through sync: note its event id against its
        outbox row now, since a reaction or reply to it may be in this very batch, ahead
        of the sender's bookkeeping of the send's response."""
        source = getattr(event, "source", None) or {}
        unsigned = source.get("unsigned")
        txn_id = unsigned.get("transaction_id") if isinstance(unsigned, dict) else None
        event_id = source.get("event_id")
        if isinstance(txn_id, str) and isinstance(event_id, str):
            await self._transactions.note_echo(txn_id, event_id)

    async def _on_member(self, room: MatrixRoom, event: RoomMemberEvent) -> None:
        link = self.links.link_for_room(room.room_id) if self.links is not None else None
        if link is not None and self.links is not None:
            await self.links.on_member(link, event)
        if event.state_key == self.user_id and event.membership == "join":
            await self._transactions.record_joined(room.room_id, event.server_timestamp)
        elif event.membership != (event.prev_membership or ""):
            self._trust.invalidate({event.state_key})

    async def _on_text(self, room: MatrixRoom, event: RoomMessageText) -> None:
        content = event.source.get("content", {})
        relation = relation_of(content)
        if relation.replaces is not None:
            await self.case_messages.on_edit(room, event, relation.replaces,
                                             edited_body(content))
            return
        parsed = split_command(self._typed_form(content, event.body))
        if parsed is None:
            if relation.candidates:
                await self.case_messages.on_reply(room, event, relation, content)
            return
        if not sealed(room, event):
            await self._refuse_unencrypted(room, event)
            return
        if not await self._trust.sender_allowed(event.sender, sender_device(self._client, event)):
            await self._transactions.answer(
                room.room_id, event.event_id, content,
                self._transactions.notice(room.room_id, UNTRUSTED_DEVICE_REPLY),
                kind=OutboxKind.REFUSAL, refused="untrusted_device", sender=event.sender)
            return
        word, args, lines = parsed
        result = await self.commands.run(CommandEvent(
            room_id=room.room_id, sender=event.sender, event_id=event.event_id,
            server_ms=event.server_timestamp, content=content, relation=relation,
            word=word, args=args, lines=lines))
        if result is not None and result.outcome != "unknown_room" and self._receipts:
            # The officer's client shows the command was read, in its thread if it has one.
            self._receipts.mark_read(room.room_id, event.event_id,
                                     thread_root=relation.thread_root)

    def _typed_form(self, content: dict[str, Any], body: str) -> str:
        """The command as an officer would type it: a client that knows the bot's command
        descriptions (MSC4391) sends the command and its arguments, and a body of its own
        choosing; anything else is read from the body."""
        invocation = content.get(MSC4391_COMMAND)
        if invocation is None:
            return body
        typed = command_text(self._registry, invocation)
        return body if typed is None else typed

    async def _refuse_invalid_text(self, room: MatrixRoom, event: Any) -> None:
        """An event that is not valid Unicode is acted on in no way; a command gets a plain
        reply saying why (its own relation is not repeated: it may be what is broken)."""
        log.warning("event with invalid Unicode ignored",
                    extra={"room_id": room.room_id, "event_id": event.event_id,
                           "sender": getattr(event, "sender", None)})
        if (not isinstance(event, RoomMessageText) or not room.encrypted
                or split_command(event.body) is None):
            return
        notice = self._transactions.notice(room.room_id, "error.invalid_text")

        async def work(services: Services) -> None:
            await queue_reply(services, room.room_id, event.event_id, {}, notice,
                              kind=OutboxKind.REFUSAL)
        await self._transactions.run(room.room_id, event.event_id, work)

    async def _refuse_unencrypted(self, room: MatrixRoom, event: RoomMessageText) -> None:
        log.warning("command in an unencrypted room ignored",
                    extra={"room_id": room.room_id, "event_id": event.event_id})
        if room.encrypted:
            return  # a plaintext message in an encrypted room: never answer in plaintext
        warning = self._transactions.notice(room.room_id, UNENCRYPTED_WARNING)

        async def work(services: Services) -> None:
            await services.record(AuditAction.COMMAND_REFUSED, actor=event.sender,
                                  room_id=room.room_id, detail={"reason": "unencrypted_room"})
            if await state.mark_unencrypted_warned(services.conn, room.room_id,
                                                   now_ms=services.clock.now_ms()):
                await services.send(room.room_id, reply_content(warning),
                                    kind=OutboxKind.PLAINTEXT_WARNING)
        await self._transactions.run(room.room_id, event.event_id, work)
