"""Who is told what of a hit (`commands.hits`): the visibility table (TLP × delivered ×
origin/target/other post × role), which pairs are matched at all, and the notices."""

from __future__ import annotations

import pytest

from liaison.commands.audience import Audience, AudienceKind, CaseParties, Detail, case_detail
from liaison.commands.entities import Entity, EntityKind
from liaison.commands.hits import (
    HitRole,
    HitView,
    Match,
    hit_view,
    may_match,
    render_check,
    render_hit,
)
from liaison.commands.model import Post, Tlp

POSTS = {post_id: Post(id=post_id, names={"en": post_id.split("-")[1].title()},
                       country=post_id[:2], agency="border", room=f"!{post_id.lower()}:x")
         for post_id in ("KZ-ZHIBEK", "UZ-TERMEZ", "TJ-PANJ")}
L, R, P, N = HitView.LINKED, HitView.REFERENCE, HitView.POINTER, HitView.NONE
OWNER, NEWCOMER = HitRole.OWNER, HitRole.NEWCOMER


def seen_by(reader: str, tlp: Tlp, *, delivered: bool) -> Detail:
    """What `reader`'s room may see of KZ-ZHIBEK's case (sent to UZ-TERMEZ if delivered)."""
    parties = CaseParties(ref="KZ-0001", tlp=tlp, origin="KZ-ZHIBEK",
                          targets=frozenset({"UZ-TERMEZ"} if delivered else ()))
    audience = Audience(POSTS[reader].room, AudienceKind.POST, post=reader)
    return case_detail(audience, parties, POSTS)


# reader of the other case: its origin (KZ), its target (UZ, if delivered), another (TJ)
TABLE = [
    # tlp,             delivered, reader,      owner-view, newcomer-view
    (Tlp.CLEAR,        True,  "KZ-ZHIBEK", L, L),
    (Tlp.CLEAR,        True,  "UZ-TERMEZ", L, L),
    (Tlp.CLEAR,        True,  "TJ-PANJ",   R, P),
    (Tlp.GREEN,        True,  "UZ-TERMEZ", L, L),
    (Tlp.GREEN,        False, "UZ-TERMEZ", R, P),
    (Tlp.GREEN,        True,  "TJ-PANJ",   R, P),
    (Tlp.AMBER,        True,  "KZ-ZHIBEK", L, L),
    (Tlp.AMBER,        True,  "UZ-TERMEZ", L, L),
    (Tlp.AMBER,        False, "UZ-TERMEZ", P, P),
    (Tlp.AMBER,        True,  "TJ-PANJ",   P, P),
    (Tlp.AMBER_STRICT, True,  "UZ-TERMEZ", L, L),
    (Tlp.AMBER_STRICT, True,  "TJ-PANJ",   P, P),
    (Tlp.RED,          True,  "KZ-ZHIBEK", N, N),
    (Tlp.RED,          True,  "UZ-TERMEZ", N, N),
    (Tlp.RED,          False, "TJ-PANJ",   N, N),
]


@pytest.mark.parametrize(("tlp", "delivered", "reader", "as_owner", "as_newcomer"), TABLE)
def test_what_a_reader_is_told_of_the_other_case(tlp: Tlp, delivered: bool, reader: str,
                                                 as_owner: HitView,
                                                 as_newcomer: HitView) -> None:
    seen = seen_by(reader, tlp, delivered=delivered)
    assert hit_view(seen, tlp, OWNER) is as_owner
    assert hit_view(seen, tlp, NEWCOMER) is as_newcomer


def parties(tlp: Tlp, origin: str) -> CaseParties:
    return CaseParties(ref="X-1", tlp=tlp, origin=origin, targets=frozenset())


@pytest.mark.parametrize(("a", "b", "matched"), [
    (parties(Tlp.GREEN, "KZ-ZHIBEK"), parties(Tlp.AMBER, "TJ-PANJ"), True),
    (parties(Tlp.RED, "KZ-ZHIBEK"), parties(Tlp.GREEN, "KZ-ZHIBEK"), False),
    (parties(Tlp.GREEN, "KZ-ZHIBEK"), parties(Tlp.RED, "TJ-PANJ"), False),
    (parties(Tlp.AMBER_STRICT, "KZ-ZHIBEK"), parties(Tlp.GREEN, "TJ-PANJ"), False),
    (parties(Tlp.AMBER_STRICT, "KZ-ZHIBEK"), parties(Tlp.AMBER, "KZ-ZHIBEK"), True),
    (parties(Tlp.CLEAR, "UZ-TERMEZ"), parties(Tlp.AMBER_STRICT, "KZ-ZHIBEK"), False),
])
def test_which_pairs_are_matched(a: CaseParties, b: CaseParties, matched: bool) -> None:
    assert may_match(a, b) is matched and may_match(b, a) is matched


PLATE = Entity(EntityKind.PLATE, "01A123BC")


def test_a_pointer_names_the_post_and_how_to_ask_and_nothing_of_its_case() -> None:
    notice = render_hit(Match(PLATE, "KZ-0001", "KZ-ZHIBEK"), P, own_ref="TJ-0001",
                        posts=POSTS, language="en")
    assert notice.text == ("Hit: Zhibek (KZ-ZHIBEK) holds information related to plate "
                           "01A123BC in TJ-0001.\n"
                           "To ask it: !request to:KZ-ZHIBEK ref:TJ-0001")
    assert "KZ-0001" not in notice.text


def test_a_linked_hit_names_the_other_case_in_the_readers_language() -> None:
    notice = render_hit(Match(PLATE, "TJ-0001", "TJ-PANJ"), L, own_ref="KZ-0001",
                        posts=POSTS, language="ru")
    assert notice.text == ("Совпадение: номер 01A123BC из KZ-0001 есть и в TJ-0001 поста "
                           "Panj (TJ-PANJ).")
    person = Entity(EntityKind.NAME, "Мухаммад Абдулла")
    possible = render_hit(Match(person, "UZ-0002", "UZ-TERMEZ", score=93), P,
                          own_ref="KZ-0001", posts=POSTS, language="ar")
    assert "93" in possible.text and "UZ-0002" not in possible.text


def test_check_answers_hit_or_no_hit() -> None:
    assert render_check(EntityKind.PLATE, "01A123BC", [], posts=POSTS,
                        language="en").text == "No hit for plate 01A123BC."
    found = [(Match(PLATE, "KZ-0001", "KZ-ZHIBEK"), L), (Match(PLATE, "UZ-0003", "UZ-TERMEZ"), P)]
    assert render_check(EntityKind.PLATE, "01A123BC", found, posts=POSTS,
                        language="en").text == (
        "Hit for plate 01A123BC:\n• KZ-0001 of Zhibek (KZ-ZHIBEK)\n"
        "• Termez (UZ-TERMEZ) holds related information — !request to:UZ-TERMEZ")
