"""Declared commands: aliases, generated help, the built-ins, and splitting a message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from liaison.commands.builtin import register_builtins
from liaison.commands.errors import CommandError
from liaison.commands.registry import (
    CommandRegistry,
    CommandSpec,
    Invocation,
    Reply,
    Role,
    split_command,
)
from liaison.commands.render import render_notice
from liaison.handlers import default_registry

SENT = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


async def answer(invocation: Invocation) -> Reply:
    return render_notice(invocation.command.name)


def registry_with_case_commands() -> CommandRegistry:
    registry = CommandRegistry()
    register_builtins(registry)
    registry.register(CommandSpec.declare("alert", answer))
    registry.register(CommandSpec.declare("request", answer))
    registry.register(CommandSpec.declare("ack", answer))
    registry.register(CommandSpec.declare("report", answer, role=Role.SUPERVISOR))
    return registry


def invocation(registry: CommandRegistry, word: str, args: str = "", *,
               sent_at: datetime = SENT, now: datetime = SENT) -> Invocation:
    return Invocation(
        command=registry.resolve(word), args=args, lines=(), room_id="!room:example.org",
        sender="@officer:example.org", event_id="$event", sent_at=sent_at, now=now,
        post=None, audience=None, language="en", bot_device_id="ABCDEFG", services=None,
    )


@pytest.mark.parametrize(
    ("word", "name"),
    [
        ("alert", "alert"), ("ALERT", "alert"), ("!Alert", "alert"), ("！alert", "alert"),
        ("тревога", "alert"), ("ТРЕВОГА", "alert"), ("ориентировка", "alert"),
        ("تنبيه", "alert"), ("request", "request"), ("запрос", "request"), ("طلب", "request"),
        ("ack", "ack"), ("принято", "ack"), ("تم", "ack"), ("help", "help"),
        ("помощь", "help"), ("مساعدة", "help"), ("ping", "ping"), ("пинг", "ping"),
        ("فحص", "ping"), ("отчёт", "report"), ("отчет", "report"), ("تقرير", "report"),
        ("al\u200bert", "alert"),
    ],
)
def test_resolve_finds_names_and_aliases_in_any_case(word: str, name: str) -> None:
    assert registry_with_case_commands().resolve(word).name == name


def test_unknown_word_suggests_the_nearest_commands() -> None:
    with pytest.raises(CommandError) as caught:
        registry_with_case_commands().resolve("alret")
    assert caught.value.message == "I do not know the command !alret."
    assert caught.value.suggestions == ("!alert",)
    with pytest.raises(CommandError) as caught:
        registry_with_case_commands().resolve("запрс")
    assert caught.value.suggestions == ("!request",)
    with pytest.raises(CommandError) as caught:
        registry_with_case_commands().resolve("xyzzy")
    assert caught.value.suggestions == ()


def test_a_word_can_belong_to_one_command_only() -> None:
    registry = default_registry()
    with pytest.raises(ValueError, match="'пинг' is already used by ping"):
        registry.register(CommandSpec("probe", answer, aliases=("пинг",), usage_id="command.ping"
                                      ".usage", summary_id="command.ping.summary",
                                      help_id="command.ping.help"))
    with pytest.raises(ValueError, match="'ping' is already used by ping"):
        registry.register(CommandSpec.declare("ping", answer))
    with pytest.raises(ValueError, match="'ping' is already used by ping"):
        CommandRegistry().register(CommandSpec.declare("ping", answer, aliases=("Ping",)))


def test_every_text_a_command_declares_must_exist() -> None:
    with pytest.raises(ValueError, match=r"no message 'command\.frobnicate\.usage'"):
        CommandRegistry().register(CommandSpec("frobnicate", answer))


def test_decorator_form_registers_with_catalogue_aliases() -> None:
    registry = CommandRegistry()

    @registry.command("status")
    async def status(invocation: Invocation) -> Reply:
        return render_notice("ok")

    spec = registry.resolve("статус")
    assert (spec.name, spec.handler, spec.aliases, spec.role) == (
        "status", status, ("статус", "حالة"), Role.OFFICER)
    assert spec.usage() == "!status CASE"


def test_default_registry_is_a_fresh_object_each_time() -> None:
    first, second = default_registry(), default_registry()
    first.register(CommandSpec(name="extra", handler=answer, role=Role.SUPERVISOR,
                               usage_id="command.ping.usage", summary_id="command.ping.summary",
                               help_id="command.ping.help"))
    assert "extra" in first and "extra" not in second
    assert [spec.name for spec in second] == ["help", "ping", "alert", "request", "ack",
                                              "update", "close", "cancel", "status", "pending",
                                              "snooze", "escalations", "report", "lang",
                                              "delay", "refuse", "permit",
                                              "check", "links", "unlink", "posts"]


def test_help_overview_is_generated_from_the_declarations() -> None:
    assert registry_with_case_commands().help_overview("en") == (
        "Commands:\n"
        "!help — List the commands, or explain one.\n"
        "!ping — Check that the bot is listening.\n"
        "!alert — Send an alert to other posts.\n"
        "!request — Ask other posts a question that needs an answer.\n"
        "!ack — Acknowledge a case sent to your post.\n"
        "!report — Response times per post (supervisors).\n"
        "Type !help COMMAND for details, e.g. !help alert."
    )


def test_help_for_one_command_shows_usage_help_aliases_and_role() -> None:
    registry = registry_with_case_commands()
    assert registry.help_for("тревога", "en") == (
        "Usage: !alert PRIORITY [to:TARGETS] [tlp:LEVEL] [cat:CATEGORY] [grade:XN] [ref:CASE] "
        "[h:CODE] [action:ACTION]\n"
        "Send an alert to other posts.\n"
        "PRIORITY is flash (minutes), urgent (hours) or routine (days).\n"
        "to: post ids, country codes, group names or neighbours (the default), separated by "
        "commas.\n"
        "tlp: clear, green, amber, amber+strict or red. AMBER goes only to posts named by id; "
        "RED never goes into a room.\n"
        "cat: a category such as drugs or financial; grade: source A, B, C or X and information "
        "1-4, e.g. B2; ref: a related case such as KZ-0042.\n"
        "Then, on the next lines, key: value details (vehicle: white Kamaz) and free text.\n"
        "h: handling code H0 (stated purpose only), H1 (not for court without permission), "
        "H2 (not passed on without permission) or H3 (a line h3: with the restriction); "
        "action: discreet-check, specific-check, stop, seize or inform-only.\n"
        "tlp:red to:@name:server,@other:server sends to named, cleared people by direct "
        "message only.\n"
        "Also: !тревога, !ориентировка, !تنبيه\n"
        "Who: officers of a post"
    )
    assert registry.help_for("report").endswith("Who: supervisors")
    assert registry.help_for_notice("ping").html == (
        "Usage: <code>!ping</code><br>Check that the bot is listening.<br>The answer names the "
        "bot&#x27;s device and the time from your message to the bot.<br>Also: !пинг, !فحص<br>"
        "Who: anyone"
    )


def test_a_command_error_gets_the_declared_usage_line() -> None:
    spec = registry_with_case_commands().resolve("ack")
    error = spec.usage_error(CommandError("Which case?"))
    assert (error.message, error.usage) == ("Which case?", "!ack CASE")
    assert spec.usage_error(CommandError("x", usage="kept")).usage == "kept"


def test_roles_include_the_lower_ones() -> None:
    assert Role.OFFICER.admits(Role.SUPERVISOR)
    assert Role.SUPERVISOR.admits(Role.ADMIN)
    assert Role.ANYONE.admits(Role.ANYONE)
    assert not Role.SUPERVISOR.admits(Role.OFFICER)
    assert not Role.ADMIN.admits(Role.SUPERVISOR)


# --- built-in handlers ------------------------------------------------------------------------


async def test_ping_names_the_device_and_the_round_trip() -> None:
    registry = default_registry()
    reply = await registry.resolve("ping").handler(
        invocation(registry, "пинг", now=SENT + timedelta(milliseconds=143)))
    assert reply.text == "pong — device ABCDEFG, 143 ms from your message to me"
    assert reply.html == reply.text
    assert reply.mentions == ()


async def test_ping_says_so_when_the_clocks_disagree() -> None:
    registry = default_registry()
    reply = await registry.resolve("ping").handler(
        invocation(registry, "ping", now=SENT - timedelta(milliseconds=20)))
    assert reply.text == ("pong — device ABCDEFG; your message is stamped 20 ms after my clock, "
                          "so one of the clocks is off")


async def test_help_handler_lists_or_explains() -> None:
    registry = registry_with_case_commands()
    overview = await registry.resolve("help").handler(invocation(registry, "help"))
    assert overview.text == registry.help_overview("en")
    assert "<code>!alert</code> — Send an alert to other posts." in overview.html
    one = await registry.resolve("help").handler(invocation(registry, "help", "!запрос"))
    assert one.text.startswith("Usage: !request PRIORITY")


async def test_help_for_an_unknown_command_suggests_and_gives_usage() -> None:
    registry = registry_with_case_commands()
    with pytest.raises(CommandError) as caught:
        await registry.resolve("help").handler(invocation(registry, "help", "alrt"))
    assert (caught.value.message, caught.value.suggestions, caught.value.usage) == (
        "I do not know the command !alrt.", ("!alert",), "!help [COMMAND]")


# --- split_command ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("!alert urgent to:X\nvehicle: Kamaz\ntext",
         ("alert", "urgent to:X", ("vehicle: Kamaz", "text"))),
        ("   \n  !ping", ("ping", "", ())),
        ("!alert urgent\r\nline one\r\nline two", ("alert", "urgent", ("line one", "line two"))),
        ("!alert\u00a0urgent\u00a0to:X", ("alert", "urgent to:X", ())),
        ("!alert\u202furgent", ("alert", "urgent", ())),
        ("！alert urgent", ("alert", "urgent", ())),
        ("\u200f!تنبيه عاجل", ("تنبيه", "عاجل", ())),
        ("> <@bob:example.org> the truck left\n> at noon\n\n!ack KZ-0042",
         ("ack", "KZ-0042", ())),
        ("!HELP alert", ("HELP", "alert", ())),
        ("!help  alert  ", ("help", "alert", ())),
    ],
)
def test_split_command_finds_commands(body: str, expected: tuple[object, ...]) -> None:
    assert split_command(body) == expected


@pytest.mark.parametrize(
    "body",
    ["hello", "", "   ", "!", "! alert urgent", "!!! look at this", "> quote\n!ack KZ-0042",
     "> <@bob:example.org> !ack KZ-0042\n\nthanks", "?alert", "x !alert"],
)
def test_split_command_ignores_other_messages(body: str) -> None:
    assert split_command(body) is None


def test_split_command_with_another_prefix() -> None:
    assert split_command("?ping", prefix="?") == ("ping", "", ())
    assert split_command("!ping", prefix="?") is None
