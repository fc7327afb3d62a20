"""Routing: which posts get a case, and why the others do not."""

from __future__ import annotations

import itertools

import pytest

from liaison.commands.model import Agency, CategoryRule, Group, Post, Tlp
from liaison.commands.routing import Directory, Refusal, RefusalReason, RoutingDecision, route


def post(post_id: str, *, agency: Agency = Agency.BORDER, clearance: Tlp = Tlp.AMBER,
         neighbours: tuple[str, ...] = ()) -> Post:
    return Post(id=post_id, names={"en": post_id.title()}, country=post_id[:2], agency=agency,
                room=f"!{post_id.lower()}:example.org", clearance=clearance,
                neighbours=neighbours)


TERMEZ = post("UZ-TERMEZ", neighbours=("TJ-PANJ", "AF-HAIRATAN", "UZ-CUSTOMS"))
POSTS = {
    p.id: p
    for p in (
        TERMEZ,
        post("TJ-PANJ", clearance=Tlp.AMBER_STRICT),
        post("AF-HAIRATAN", clearance=Tlp.GREEN),
        post("UZ-CUSTOMS", agency=Agency.CUSTOMS),
        post("UZ-FIU", agency=Agency.FIU, clearance=Tlp.RED),
        post("KZ-FIU", agency=Agency.FIU),
        post("KZ-ALMATY", agency=Agency.REGIONAL_CENTRE, clearance=Tlp.RED),
        post("TM-FARAP"),
    )
}
DIRECTORY = Directory(
    posts=POSTS,
    groups={
        "caricc": Group(name="caricc", posts=("KZ-ALMATY", "UZ-TERMEZ", "TJ-PANJ")),
        "ghost": Group(name="ghost", posts=("TJ-PANJ", "XX-GONE")),
    },
    category_rules=[
        CategoryRule(category="financial", add=("same-country:fiu",)),
        CategoryRule(category="drugs", add=("KZ-ALMATY",)),
    ],
    joined_rooms=frozenset(p.room for p in POSTS.values() if p.id != "KZ-ALMATY"),
    encrypted_rooms=frozenset(p.room for p in POSTS.values() if p.id != "TM-FARAP"),
)


def decide(targets: list[str], tlp: Tlp = Tlp.GREEN, category: str | None = None,
           origin: Post = TERMEZ, directory: Directory = DIRECTORY) -> RoutingDecision:
    return route(origin=origin, targets=targets, tlp=tlp, category=category, directory=directory)


def outcome(decision: RoutingDecision) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    return decision.deliveries, [(r.target, r.reason.value) for r in decision.refusals]


@pytest.mark.parametrize(
    ("targets", "tlp", "category", "deliveries", "refusals"),
    [
        (["TJ-PANJ"], Tlp.GREEN, None, ("TJ-PANJ",), []),
        (["neighbours"], Tlp.GREEN, None, ("TJ-PANJ", "AF-HAIRATAN", "UZ-CUSTOMS"), []),
        (["UZ"], Tlp.GREEN, None, ("UZ-CUSTOMS", "UZ-FIU"), []),
        (["caricc"], Tlp.GREEN, None, ("TJ-PANJ",), [("KZ-ALMATY", "not_joined")]),
        (["TM-FARAP"], Tlp.GREEN, None, (), [("TM-FARAP", "not_encrypted")]),
        (["KZ-ALMATY"], Tlp.GREEN, None, (), [("KZ-ALMATY", "not_joined")]),
        (["AF-HAIRATAN"], Tlp.CLEAR, None, ("AF-HAIRATAN",), []),
        (["AF-HAIRATAN"], Tlp.AMBER, None, (), [("AF-HAIRATAN", "clearance")]),
        (["TJ-PANJ", "UZ-CUSTOMS"], Tlp.AMBER, None, ("TJ-PANJ", "UZ-CUSTOMS"), []),
        (["neighbours"], Tlp.AMBER, None, (), [("neighbours", "tlp_amber_fanout")]),
        (["caricc"], Tlp.AMBER, None, (), [("caricc", "tlp_amber_fanout")]),
        (["UZ"], Tlp.AMBER_STRICT, None, (), [("UZ", "tlp_amber_fanout")]),
        (["TJ-PANJ", "caricc"], Tlp.AMBER, None, ("TJ-PANJ",),
         [("caricc", "tlp_amber_fanout")]),
        (["TJ-PANJ"], Tlp.AMBER_STRICT, None, ("TJ-PANJ",), []),
        (["UZ-CUSTOMS"], Tlp.AMBER_STRICT, None, (), [("UZ-CUSTOMS", "clearance")]),
        (["TJ-PANJ"], Tlp.RED, None, (), [("TJ-PANJ", "tlp_red_room")]),
        (["neighbours", "KZ-ALMATY"], Tlp.RED, "financial", (),
         [("neighbours", "tlp_red_room"), ("KZ-ALMATY", "tlp_red_room")]),
        (["UZ-TERMEZ"], Tlp.GREEN, None, (), [("UZ-TERMEZ", "self")]),
        (["uz-termez", "TJ-PANJ"], Tlp.GREEN, None, ("TJ-PANJ",), [("UZ-TERMEZ", "self")]),
        (["TJ-PANZ"], Tlp.GREEN, None, (), [("TJ-PANZ", "unknown_target")]),
        (["tj-panj", "neighbours", "TJ-PANJ"], Tlp.GREEN, None,
         ("TJ-PANJ", "AF-HAIRATAN", "UZ-CUSTOMS"), []),
        (["TJ-PANJ"], Tlp.GREEN, "financial", ("TJ-PANJ", "UZ-FIU"), []),
        (["TJ-PANJ"], Tlp.GREEN, "Financial", ("TJ-PANJ", "UZ-FIU"), []),
        (["TJ-PANJ"], Tlp.AMBER, "financial", ("TJ-PANJ", "UZ-FIU"), []),
        (["TJ-PANJ"], Tlp.AMBER_STRICT, "financial", ("TJ-PANJ",),
         [("UZ-FIU", "tlp_strict_rule")]),
        (["TJ-PANJ", "UZ-FIU"], Tlp.AMBER_STRICT, "financial", ("TJ-PANJ", "UZ-FIU"), []),
        (["AF-HAIRATAN"], Tlp.AMBER, "financial", ("UZ-FIU",), [("AF-HAIRATAN", "clearance")]),
        (["TJ-PANJ"], Tlp.GREEN, "drugs", ("TJ-PANJ",), [("KZ-ALMATY", "not_joined")]),
        (["TJ-PANJ"], Tlp.GREEN, "weapons", ("TJ-PANJ",), []),
        (["ghost"], Tlp.GREEN, None, ("TJ-PANJ",), [("XX-GONE", "unknown_target")]),
        ([], Tlp.GREEN, None, (), []),
    ],
)
def test_routing_table(targets: list[str], tlp: Tlp, category: str | None,
                       deliveries: tuple[str, ...], refusals: list[tuple[str, str]]) -> None:
    assert outcome(decide(targets, tlp, category)) == (deliveries, refusals)


def test_category_rule_adds_the_fiu_of_the_origin_country_only() -> None:
    almaty_origin = post("KZ-SHYMKENT")
    posts = {**POSTS, almaty_origin.id: almaty_origin}
    directory = Directory(posts=posts, groups={}, category_rules=DIRECTORY.category_rules,
                          joined_rooms=frozenset(p.room for p in posts.values()),
                          encrypted_rooms=frozenset(p.room for p in posts.values()))
    decision = decide(["UZ-CUSTOMS"], Tlp.GREEN, "financial", origin=almaty_origin,
                      directory=directory)
    assert outcome(decision) == (("UZ-CUSTOMS", "KZ-FIU"), [])


def test_the_fiu_sending_a_financial_case_does_not_get_it_back() -> None:
    decision = decide(["TJ-PANJ"], Tlp.GREEN, "financial", origin=POSTS["UZ-FIU"])
    assert outcome(decision) == (("TJ-PANJ",), [])


def test_unknown_targets_get_the_nearest_valid_names() -> None:
    refusals = decide(["TJ-PANZ", "carric", "neigbours", "UZ-TERMZ", "QQ-NOWHERE"]).refusals
    assert [(r.target, r.suggestions) for r in refusals] == [
        ("TJ-PANZ", ("TJ-PANJ",)),
        ("carric", ("caricc",)),
        ("neigbours", ("neighbours",)),
        ("UZ-TERMZ", ()),  # the origin itself is never suggested
        ("QQ-NOWHERE", ()),
    ]
    assert refusals[0].detail == "not a post id, group, country code or neighbours"


def test_amber_fanout_refusal_says_to_name_the_posts() -> None:
    (refusal,) = decide(["neighbours"], Tlp.AMBER).refusals
    assert refusal == Refusal(
        "neighbours", RefusalReason.TLP_AMBER_FANOUT, ("TJ-PANJ", "AF-HAIRATAN", "UZ-CUSTOMS"),
        "TLP:AMBER goes only to posts named by id, not to the neighbours of UZ-TERMEZ; "
        "name the posts explicitly",
    )


def test_red_refusal_explains_red_is_for_individuals() -> None:
    (refusal,) = decide(["TJ-PANJ"], Tlp.RED).refusals
    assert refusal.detail == "RED is only for named individuals, in direct messages"


def test_refusal_details_say_how_a_post_was_reached() -> None:
    (refusal,) = decide(["caricc"]).refusals
    assert refusal.detail == "the bot is not in !kz-almaty:example.org (via group caricc)"
    (refusal,) = decide(["TJ-PANJ"], category="drugs").refusals
    assert refusal.detail == ("the bot is not in !kz-almaty:example.org (added by the category "
                              "rule for drugs)")


def test_only_amber_strict_and_red_are_not_forwardable() -> None:
    forwardable = {tlp: decide(["TJ-PANJ"], tlp).forwardable for tlp in Tlp}
    assert forwardable == {Tlp.CLEAR: True, Tlp.GREEN: True, Tlp.AMBER: True,
                           Tlp.AMBER_STRICT: False, Tlp.RED: False}


def test_empty_fanout_is_reported_not_silent() -> None:
    lonely = post("AF-HAIRATAN", clearance=Tlp.GREEN)
    assert outcome(decide(["neighbours"], origin=lonely)) == ((), [("neighbours", "empty")])
    assert outcome(decide(["AF"], origin=lonely)) == ((), [("AF", "empty")])


# --- the full matrix: TLP x target kind x clearance x joined x encrypted -----------------------

KINDS = ("post", "group", "country", "neighbours")


def expected(tlp: Tlp, kind: str, clearance: Tlp, joined: bool, encrypted: bool) -> str:
    """The policy of PRODUCT.md, written out case by case."""
    if tlp is Tlp.RED:
        return "tlp_red_room"
    if tlp in (Tlp.AMBER, Tlp.AMBER_STRICT) and kind != "post":
        return "tlp_amber_fanout"
    if clearance.rank < tlp.rank:
        return "clearance"
    if not joined:
        return "not_joined"
    if not encrypted:
        return "not_encrypted"
    return "delivered"


@pytest.mark.parametrize(
    ("tlp", "kind", "clearance", "joined", "encrypted"),
    list(itertools.product(Tlp, KINDS, Tlp, (True, False), (True, False))),
)
def test_routing_matrix(tlp: Tlp, kind: str, clearance: Tlp, joined: bool,
                        encrypted: bool) -> None:
    origin = post("OO-ORIGIN", neighbours=("XX-TARGET",))
    target = post("XX-TARGET", clearance=clearance)
    directory = Directory(
        posts={origin.id: origin, target.id: target},
        groups={"team": Group(name="team", posts=("OO-ORIGIN", "XX-TARGET"))},
        category_rules=(),
        joined_rooms=frozenset({origin.room} | ({target.room} if joined else set())),
        encrypted_rooms=frozenset({origin.room} | ({target.room} if encrypted else set())),
    )
    token = {"post": "XX-TARGET", "group": "team", "country": "XX",
             "neighbours": "neighbours"}[kind]
    decision = decide([token], tlp, origin=origin, directory=directory)
    want = expected(tlp, kind, clearance, joined, encrypted)
    if want == "delivered":
        assert outcome(decision) == (("XX-TARGET",), [])
    else:
        refused = token if want in ("tlp_red_room", "tlp_amber_fanout") else "XX-TARGET"
        assert outcome(decision) == ((), [(refused, want)])
