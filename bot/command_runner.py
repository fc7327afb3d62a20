"""Runs one command: the path from a typed `!word …` to the answer in the outbox.

Matrix-free on purpose: the router turns a synced event into a `CommandEvent`, and the
unit tests drive this same runner with events of their own (`tests/unit/commandrun.py`).
Inside the event's one transaction (`bot.event_transaction`): flood control, the room's
audience (a room that stands for nobody gets one explanation, then silence), the
command's role and place (`commands.access`), the case the message is threaded under,
the handler, and the answer — a refusal for want of authority also goes on the audit
log; an unexpected failure is answered with an incident code and rolled back.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from liaison.bot.clock import from_ms
from liaison.bot.directory import Directory
from liaison.bot.event_transaction import (
    EventTransactions,
    queue_reply,
    reply_content,
    reply_relation,
)
from liaison.commands.access import AUTHORITY_REFUSALS, command_refusal
from liaison.commands.errors import CommandError
from liaison.commands.flood import FloodGate, flood_notice
from liaison.commands.notify import OutboxKind
from liaison.commands.registry import CommandRegistry, Invocation, Reply
from liaison.commands.relations import Relation
from liaison.commands.render import render_command_error, render_notice
from liaison.commands.texts import text
from liaison.handlers import case_events
from liaison.handlers.context import FollowUp, Services
from liaison.storage import cases, state
from liaison.storage.audit import AuditAction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandEvent:
    """A command as the runner needs it; the router fills it from a decrypted event."""

    room_id: str
    sender: str
    event_id: str
    server_ms: int
    content: dict[str, Any]
    relation: Relation
    word: str
    args: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class CommandResult:
    name: str | None
    """The command's canonical name, None when the word is no command."""
    outcome: str
    """done, refused, failed, flooded or unknown_room."""
    reply: Reply | None
    """What was queued in answer (None: nothing, e.g. over the flood limit)."""


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


class CommandRunner:
    def __init__(self, *, transactions: EventTransactions, registry: CommandRegistry,
                 directory: Directory, flood: FloodGate, bot_device_id: str) -> None:
        self._transactions = transactions
        self._registry = registry
        self._directory = directory
        self._flood = flood
        self._bot_device_id = bot_device_id
        self.commands_handled = 0

    async def run(self, event: CommandEvent) -> CommandResult | None:
        """Run the command once; None when the event was handled before (a replay)."""
        results: list[CommandResult] = []

        async def work(services: Services) -> None:
            results.append(await self._in_transaction(services, event))

        if not await self._transactions.run(event.room_id, event.event_id, work):
            log.info("event already processed", extra={"event_id": event.event_id})
            return None
        result = results[0]
        if result.outcome not in ("flooded", "unknown_room"):
            # The command's name only: what follows it is the officer's text.
            log.info("command handled", extra={"command": result.name,
                                               "outcome": result.outcome})
            self.commands_handled += 1
        return result

    async def _in_transaction(self, services: Services, event: CommandEvent) -> CommandResult:
        room_id = event.room_id
        if await self._flooded(services, event):
            return CommandResult(None, "flooded", None)
        audience = services.audience(room_id)
        if not audience.known:
            reply = await self._unknown_room(services, event)
            return CommandResult(None, "unknown_room", reply)
        post = self._directory.post_for_room(room_id)
        language = self._directory.language_for_room(room_id)
        name, outcome = None, "done"
        follow_ups: list[FollowUp] = []
        try:
            spec = self._registry.resolve(event.word)
            name = spec.name
            config = services.config
            refusal = command_refusal(spec, event.sender, post=post, posts=config.posts,
                                      admins=config.access.admins, audience=audience,
                                      language=language)
            if refusal is not None:
                raise refusal
            candidates = event.relation.candidates
            link = (await case_events.case_in_room(services, room_id, candidates)
                    if candidates else None)
            invocation = Invocation(
                command=spec, args=event.args, lines=event.lines, room_id=room_id,
                sender=event.sender, event_id=event.event_id,
                sent_at=from_ms(event.server_ms), now=services.clock.now(),
                post=post, audience=audience, language=language,
                bot_device_id=self._bot_device_id, services=services,
                context_ref=link.case.ref if link is not None else None,
            )
            reply = await spec.handler(invocation)
            follow_ups = services.follow_ups  # only a handler that succeeded has them
        except CommandError as error:
            await record_refusal(services, error, room_id=room_id, sender=event.sender,
                                 command=event.word)
            reply = render_command_error(error, language)
            outcome = "refused"
        except Exception:
            outcome = "failed"
            incident = secrets.token_hex(4)
            log.exception("command failed", extra={"incident": incident, "room_id": room_id,
                                                   "event_id": event.event_id})
            reply = self._transactions.notice(room_id, "bot.incident", incident=incident)
        opened = await cases.case_opened_by(services.conn, room_id=room_id,
                                            event_id=event.event_id)
        await queue_reply(services, room_id, event.event_id, event.content, reply,
                          case_ref=opened.ref if opened is not None else None)
        for follow_up in follow_ups:  # after the reply: the room's order is kept
            await services.send(room_id, {**follow_up.content, "m.relates_to": reply_relation(
                event.event_id, event.content)}, kind=follow_up.kind)
        return CommandResult(name, outcome, reply)

    async def _unknown_room(self, services: Services, event: CommandEvent) -> Reply | None:
        """A command in a room that stands for nobody the bot serves (`commands.audience`):
        the first one is answered with one explanation and the admins' room is told; every
        later one — `!ping` and `!help` included — gets silence. Each is audited."""
        room_id = event.room_id
        log.warning("command in a room that is no post's, supervisors' or person's room",
                    extra={"room_id": room_id, "event_id": event.event_id})
        await services.record(AuditAction.COMMAND_REFUSED, actor=event.sender, room_id=room_id,
                              detail={"reason": "unknown_room", "command": event.word})
        if not await state.mark_unknown_room_explained(services.conn, room_id,
                                                       now_ms=services.clock.now_ms()):
            return None
        reply = self._transactions.notice(room_id, "bot.unknown_room")
        await queue_reply(services, room_id, event.event_id, event.content, reply,
                          kind=OutboxKind.REFUSAL)
        admins_room = services.config.access.admins_room
        if admins_room is not None and admins_room in services.joined_rooms:
            language = self._directory.language_for_room(admins_room)
            notice = render_notice(text("bot.unknown_room_admins", language, room=room_id,
                                        user=event.sender), language=language)
            await services.send(admins_room, reply_content(notice),
                                kind=OutboxKind.ADMIN_NOTICE)
        return reply

    async def _flooded(self, services: Services, event: CommandEvent) -> bool:
        """Flood control (`commands.flood`), after the claim: True when the command is over a
        limit and must not run. Counted by the event's server time, never later than now,
        so commands queued while the bot was down are not taken for a flood."""
        at_ms = min(event.server_ms, services.clock.now_ms())
        verdict = self._flood.admit(event.sender, event.room_id, at_ms)
        if verdict.admitted:
            return False
        log.info("command refused: over the rate limit",
                 extra={"room_id": event.room_id, "event_id": event.event_id,
                        "sender": event.sender, "limit": f"{verdict.scope}: {verdict.rate}",
                        "notified": verdict.notify})
        if verdict.notify:
            notice = flood_notice(verdict, self._directory.language_for_room(event.room_id))
            await queue_reply(services, event.room_id, event.event_id, event.content, notice,
                              kind=OutboxKind.FLOOD_REFUSAL)
        return True
