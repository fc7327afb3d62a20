"""Reaction keys and message relations: what counts as an acknowledgement, and which
events a reply, thread message or edit points at."""

from __future__ import annotations

import pytest

from liaison.commands.relations import (
    Relation,
    acknowledges,
    edited_body,
    normalise_reaction_key,
    relation_of,
    reply_text,
)

SKIN_TONES = [chr(code) for code in range(0x1F3FB, 0x1F400)]


@pytest.mark.parametrize("key", [
    "✅", "👍", "👍\ufe0f", "✔\ufe0f", "✔", "☑\ufe0f", "☑", "✓", " 👍 ",
    *(f"👍{tone}" for tone in SKIN_TONES), "👍🏽\ufe0f",
    ":+1:", ":thumbsup:", ":White_Check_Mark:", ":heavy_check_mark:",
])
def test_check_marks_and_thumbs_up_in_any_form_acknowledge(key: str) -> None:
    assert acknowledges(key)


@pytest.mark.parametrize("key", [
    "👎", "👎🏽", "❤️", "😀", "👀", "ok", "", "\ufe0f", "🏽", "👍👍", "✅ seen", ":-1:",
])
def test_other_reactions_do_not_acknowledge(key: str) -> None:
    assert not acknowledges(key)


def test_normalising_drops_skin_tones_and_variation_selectors_only() -> None:
    assert normalise_reaction_key("👍🏿") == "👍"
    assert normalise_reaction_key("✔️") == "✔"
    assert normalise_reaction_key("👎🏻") == "👎"


def test_a_thread_message_points_at_its_root_first() -> None:
    content = {"body": "Seen", "m.relates_to": {
        "rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$latest"}}}
    relation = relation_of(content)
    assert relation == Relation(thread_root="$root", reply_to="$latest")
    assert relation.candidates == ("$root", "$latest")


def test_a_reply_points_at_the_event_replied_to() -> None:
    relation = relation_of({"m.relates_to": {"m.in_reply_to": {"event_id": "$case"}}})
    assert relation == Relation(reply_to="$case")
    assert relation.candidates == ("$case",)


def test_a_thread_fallback_to_its_own_root_is_one_candidate() -> None:
    relation = relation_of({"m.relates_to": {"rel_type": "m.thread", "event_id": "$r",
                                             "m.in_reply_to": {"event_id": "$r"}}})
    assert relation.candidates == ("$r",)


def test_an_edit_names_the_event_it_replaces_and_nothing_else() -> None:
    content = {"body": "* !alert urgent", "m.new_content": {"body": "!alert urgent\nx"},
               "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}}
    relation = relation_of(content)
    assert relation == Relation(replaces="$orig")
    assert relation.candidates == ()
    assert edited_body(content) == "!alert urgent\nx"


@pytest.mark.parametrize("content", [
    {}, {"m.relates_to": "x"}, {"m.relates_to": {"m.in_reply_to": "x"}},
    {"m.relates_to": {"m.in_reply_to": {"event_id": 7}}},
    {"m.relates_to": {"m.in_reply_to": {"event_id": "not-an-event-id"}}},
    {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}},
])
def test_malformed_or_other_relations_relate_to_nothing(content: dict[str, object]) -> None:
    assert relation_of(content).candidates == ()


def test_edited_body_needs_new_content_with_a_body() -> None:
    assert edited_body({"m.new_content": {"msgtype": "m.text"}}) is None
    assert edited_body({"body": "x"}) is None


def test_reply_text_drops_the_quoted_fallback() -> None:
    body = "> <@kz:example.org> TLP:AMBER Urgent alert KZ-0001\n> more\n\nSeen at 18:40 \n"
    assert reply_text(body) == "Seen at 18:40"
    assert reply_text("> a quote without a blank line\nis kept") == (
        "> a quote without a blank line\nis kept")
    assert reply_text("  \n") == ""
