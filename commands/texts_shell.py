"""English messages (see `commands.texts`): flood control, the shell's own answers
(unencrypted or unknown rooms, incidents, undecryptable messages, new devices), rendering,
command descriptions for clients and case field keys."""

from __future__ import annotations

from collections.abc import Mapping

SHELL_MESSAGES: Mapping[str, str] = {
    # flood control (commands.flood)
    "flood.user": (
        "Too many commands at once: I take at most {count} in {per} from one person, so I "
        "did not act on this one. For the next {per} I skip your commands over that limit "
        "without answering each; send again then whatever still needs doing."
    ),
    "flood.room": (
        "Too many commands in this room at once: I take at most {count} in {per} from one "
        "room, so I did not act on this one. For the next {per} I skip your commands over "
        "that limit without answering each; send again then whatever still needs doing."
    ),
    "flood.case.user": (
        "Too many messages on cases at once: I pass on at most {count} in {per} from one "
        "person, so this one was not passed on. For the next {per} I do not pass on your "
        "replies, attachments and edits over that limit, nor answer each; send again then "
        "whatever still needs to reach the other post."
    ),
    "flood.case.room": (
        "Too many messages on cases from this room at once: I pass on at most {count} in "
        "{per} from one room, so this one was not passed on. For the next {per} I do not "
        "pass on replies, attachments and edits over that limit, nor answer each; send "
        "again then whatever still needs to reach the other post."
    ),
    # the shell's own answers (bot.events, bot.undecryptable, bot.devicewatch)
    "bot.unencrypted_warning": (
        "This room is not end-to-end encrypted, so Liaison will not act on anything said here "
        "and will not send anything here. Turn on encryption in the room settings and ask again."
    ),
    "bot.untrusted_device": (
        "I did not act on this: it was sent from a device that is not cross-signed by its "
        "owner, and this Liaison accepts commands only from verified (cross-signed) devices. "
        "Verify this session from one of your other sessions, then send it again."
    ),
    "bot.unknown_room": (
        "I do not serve this room: it is no post's room, no supervisors' room and no direct "
        "room with a person in my configuration, so I act on nothing said here and will not "
        "answer again. Ask the operator to configure it, or to make me leave it."
    ),
    "bot.unknown_room_admins": (
        "I am in {room}, which is no post's room, no supervisors' room and no direct room "
        "with a configured person; {user} sent me a command there. I explained once and "
        "ignore it from now on. `liaison rooms` lists my rooms; `liaison rooms leave {room}` "
        "makes me leave it."
    ),
    "bot.incident": (
        "Sorry, something went wrong on my side and I could not do this. "
        "Incident {incident} is logged; the operator can look it up."
    ),
    "bot.undecryptable": (
        "I could not decrypt your message, so I did not act on it: your device did not share "
        "its key with me. Please send it again. If this keeps happening, check that this "
        "session is verified and that the bot is not excluded as an unverified device."
    ),
    "device.new": "{user} has signed in on a new device:",
    "device.unnamed": "unnamed",
    "device.warning": (
        "Messages in this room are now also encrypted to it. If this was not them, "
        "tell a supervisor at once and remove them from the room."
    ),
    # rendering
    "render.truncated": "[truncated]",
    # command descriptions for clients (commands.command_descriptions)
    "command.param.details": "key: value lines and text, below the first line",
    # case field keys (FIELD_KEYS), as each reader reads them
    "field.vehicle": "vehicle",
    "field.plate": "plate",
    "field.route": "route",
    "field.eta": "eta",
    "field.driver": "driver",
    "field.cargo": "cargo",
    "field.container": "container",
}
