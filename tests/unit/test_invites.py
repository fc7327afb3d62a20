"""Invites: an allowed invite whose join fails is handed back to be tried again."""

from __future__ import annotations

from dataclasses import dataclass, field

from nio import InviteInfo, InviteMemberEvent, JoinError, JoinResponse

from liaison.bot.invites import InvitePolicy, answer_invite

BOT = "@liaison:127.0.0.1:39123"
PARTNER = "@ops:127.0.0.1:41555"
ROOM = "!termez:127.0.0.1:41555"


@dataclass
class Client:
    """Refuses the first join as a partner's server does when the join beats its own
    record of the invite."""

    user_id: str = BOT
    joins: list[str] = field(default_factory=list)

    async def join(self, room_id: str) -> JoinResponse | JoinError:
        self.joins.append(room_id)
        if len(self.joins) == 1:
            return JoinError("You are not invited to this room.", "M_FORBIDDEN")
        return JoinResponse(room_id)


async def test_a_failed_join_of_an_allowed_invite_is_handed_back_and_then_succeeds() -> None:
    invite = InviteInfo([InviteMemberEvent({}, PARTNER, BOT, "invite", "",
                                           {"membership": "invite"})])
    policy = InvitePolicy(frozenset({PARTNER}), frozenset())
    client = Client()
    again: list[str] = []

    first = await answer_invite(client, policy, ROOM, invite,  # type: ignore[arg-type]
                                on_join_failed=lambda: again.append(ROOM))
    assert (first, again) == (False, [ROOM])
    second = await answer_invite(client, policy, ROOM, invite,  # type: ignore[arg-type]
                                 on_join_failed=lambda: again.append(ROOM))
    assert (second, again, client.joins) == (True, [ROOM], [ROOM, ROOM])
