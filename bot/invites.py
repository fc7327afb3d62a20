"""Invites: join rooms only when invited by an allowed user or server, or a configured
link room (`links:`, whoever invites: its id is configured); decline the rest."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import ClientError
from nio import AsyncClient, InviteInfo, InviteMemberEvent, JoinError, RoomLeaveError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InvitePolicy:
    users: frozenset[str]
    servers: frozenset[str]
    rooms: frozenset[str] = frozenset()
    """Rooms joined whoever invites the bot: the configured link rooms."""

    def allows(self, inviter: str) -> bool:
        if inviter in self.users:
            return True
        _, _, server = inviter.partition(":")
        return server in self.servers


def find_inviter(info: InviteInfo, user_id: str) -> str | None:
    for event in info.invite_state:
        if (
            isinstance(event, InviteMemberEvent)
            and event.state_key == user_id
            and event.membership == "invite"
        ):
            return str(event.sender)
    return None


async def answer_invite(
    client: AsyncClient, policy: InvitePolicy, room_id: str, info: InviteInfo,
    on_declined: Callable[[str | None], Awaitable[None]] | None = None,
    expected: bool = False,
    on_join_failed: Callable[[], None] | None = None,
) -> bool:
    """Join or decline; return True when joined. `on_declined(inviter)` runs once the
    homeserver took the decline (to record it); `on_join_failed()` when a join of an
    allowed invite failed, so the caller tries again later. (Across federation a join
    sent the instant the invite arrives can beat the inviting server's own record of
    the invite: its make_join answers 403 "not invited", and the invite, unchanged,
    does not come through sync again.)"""
    assert client.user_id
    inviter = find_inviter(info, client.user_id)
    try:
        if (inviter is not None and (expected or policy.allows(inviter))) \
                or room_id in policy.rooms:
            try:
                response = await client.join(room_id)
            except (ClientError, TimeoutError, OSError) as exc:
                response = JoinError(f"{type(exc).__name__}: {exc}")
            if isinstance(response, JoinError):
                log.warning("could not join; will retry",
                            extra={"room_id": room_id, "error": str(response)})
                if on_join_failed is not None:
                    on_join_failed()
                return False
            log.info("joined room", extra={"room_id": room_id, "inviter": inviter})
            return True
        declined = await client.room_leave(room_id)
        if isinstance(declined, RoomLeaveError):
            log.warning("could not decline invite",
                        extra={"room_id": room_id, "error": str(declined)})
        else:
            log.info("declined invite", extra={"room_id": room_id, "inviter": inviter})
            if on_declined is not None:
                await on_declined(inviter)
    except (ClientError, TimeoutError, OSError) as exc:
        log.warning("invite handling failed; will retry", extra={"room_id": room_id,
                                                                 "error": str(exc)})
    return False
