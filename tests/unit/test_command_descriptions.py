"""Command descriptions for clients (MSC4391, MSC4332), from the same declarations as !help."""

from __future__ import annotations

import base64
import hashlib

from liaison.commands.command_descriptions import (
    command_text,
    msc4332_commands,
    msc4391_descriptions,
    parameters,
    published_digest,
    state_key,
)
from liaison.handlers import default_registry

BOT = "@liaison:liaison.example"
REGISTRY = default_registry()


def test_every_command_is_described_with_its_help_summary_in_the_rooms_language_first() -> None:
    described = msc4391_descriptions(REGISTRY, BOT, "ru")
    assert sorted(content["command"] for content in described.values()) == sorted(
        spec.name for spec in REGISTRY)
    for spec in REGISTRY:
        content = described[state_key(spec.name, BOT)]
        bodies = content["description"]["m.text"]
        assert bodies[0] == {"body": spec.summary("ru"), "lang": "ru"}
        assert {"body": spec.summary("en"), "lang": "en"} in bodies
        assert {"body": spec.summary("ar"), "lang": "ar"} in bodies
        assert len({parameter["key"] for parameter in content["parameters"]}) == len(
            content["parameters"]), "duplicate parameter keys make clients hide a command"


def test_parameters_come_from_the_usage_line() -> None:
    alert = next(spec for spec in REGISTRY if spec.name == "alert")
    assert [(p.key, p.required, p.option) for p in parameters(alert)] == [
        ("priority", True, False), ("to", False, True), ("tlp", False, True),
        ("cat", False, True), ("grade", False, True), ("ref", False, True),
        ("h", False, True), ("action", False, True), ("details", False, False)]
    lang = next(spec for spec in REGISTRY if spec.name == "lang")
    [language] = parameters(lang)
    assert (language.key, language.required, language.choices) == (
        "language", True, ("en", "ru", "ar"))
    content = msc4391_descriptions(REGISTRY, BOT, "en")[state_key("alert", BOT)]
    to = content["parameters"][1]
    assert to["description"]["m.text"][0] == {"body": "to:TARGETS", "lang": "en"}
    assert {"body": "to:КОМУ", "lang": "ru"} in to["description"]["m.text"]


def test_the_state_key_is_the_msc4391_digest() -> None:
    expected = base64.b64encode(hashlib.sha256(b"alert" + BOT.encode()).digest()).decode()
    assert state_key("alert", BOT) == expected


def test_msc4332_syntax_carries_the_required_parameters_only() -> None:
    syntaxes = [command["syntax"] for command in msc4332_commands(REGISTRY, "en")["commands"]]
    assert "alert {priority}" in syntaxes
    assert "update {case} {text}" in syntaxes
    assert "lang {language}" in syntaxes
    assert "help" in syntaxes


def test_an_msc4391_invocation_becomes_the_line_an_officer_would_type() -> None:
    assert command_text(REGISTRY, {"command": "alert", "arguments": {
        "priority": "flash", "to": "UZ-TERMEZ", "tlp": "amber",
        "details": "vehicle: grey Hilux\nCrossing now."}}) == (
        "!alert flash to:UZ-TERMEZ tlp:amber\nvehicle: grey Hilux\nCrossing now.")
    assert command_text(REGISTRY, {"command": "ping"}) == "!ping"
    assert command_text(REGISTRY, {"command": "close", "arguments": {
        "case": "KZ-0042", "outcome": "40 kg seized"}}) == "!close KZ-0042 40 kg seized"
    for odd in ({"command": "rm -rf"}, {"command": "ack", "arguments": {"case": ["x"]}},
                {"command": "ack", "arguments": {"case": "KZ-1\n!close KZ-1"}}, "ping", None):
        assert command_text(REGISTRY, odd) is None


def test_the_digest_changes_with_the_language_and_only_then() -> None:
    def digest(language: str) -> str:
        return published_digest([("t", key, content) for key, content in
                                 msc4391_descriptions(REGISTRY, BOT, language).items()])
    assert digest("en") == digest("en")
    assert digest("en") != digest("ar")
