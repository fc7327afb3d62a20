"""Routing over partner posts: a partner bot's directory resolves like local posts, and
what may not cross a link is refused with the reason."""

from __future__ import annotations

from typing import Any

import pytest

from liaison.commands.links import (
    DirectoryContent,
    DirectoryPost,
    Link,
    LinkView,
    directory_key,
)
from liaison.commands.model import Agency, Group, Post, Tlp
from liaison.commands.routing import Directory, RefusalReason, RoutingDecision, route, still_reaches

UZ_ROOM = "!link-uz:kz.example"
TJ_ROOM = "!link-tj:kz.example"
KEY = "x" * 43


def local(post_id: str, *, neighbours: tuple[str, ...] = (),
          clearance: Tlp = Tlp.AMBER) -> Post:
    return Post(id=post_id, names={"en": post_id.title()}, country=post_id[:2],
                agency=Agency.BORDER, room=f"!{post_id.lower()}:kz.example",
                clearance=clearance, neighbours=neighbours)


def published(post_id: str, **changes: Any) -> DirectoryPost:
    values: dict[str, Any] = {"id": post_id, "names": {"en": post_id.title(), "ru": "Пост"},
                              "country": post_id[:2], "agency": "border", "language": "ru",
                              "timezone": "Asia/Tashkent"}
    values.update(changes)
    return DirectoryPost.model_validate(values)


def link(name: str, room: str, countries: tuple[str, ...], **changes: Any) -> Link:
    return Link.model_validate({"name": name, "partner": f"@liaison:{name}.example",
                                "room": room, "partner_master_key": KEY,
                                "countries": countries, **changes})


def directory_of(*posts: DirectoryPost, version: int = 1) -> DirectoryContent:
    return DirectoryContent(id=directory_key(version), version=version, posts=posts)


ZHIBEK = local("KZ-ZHIBEK", neighbours=("KZ-ALMATY", "UZ-TERMEZ", "UZ-GONE"))
ALMATY = local("KZ-ALMATY", clearance=Tlp.AMBER_STRICT)
UZ = link("uz", UZ_ROOM, ("UZ",))
TJ = link("tj", TJ_ROOM, ("TJ",), max_tlp=Tlp.GREEN)
UZ_DIRECTORY = directory_of(
    published("UZ-TERMEZ", groups=("amu-darya", "kz-uz-border"), clearance="AMBER"),
    published("UZ-CUSTOMS", agency="customs", clearance="GREEN"),
    published("UZ-FIU", agency="fiu", clearance="RED", groups=("fiu",)),
)
TJ_DIRECTORY = directory_of(published("TJ-PANJ", groups=("amu-darya",)),
                            # a post of a country the link does not serve: never routed
                            published("UZ-TERMEZ", names={"en": "Impostor"}))
LINKS = LinkView(links=(UZ, TJ), directories={"uz": UZ_DIRECTORY, "tj": TJ_DIRECTORY})
ROOMS = frozenset({ZHIBEK.room, ALMATY.room, UZ_ROOM, TJ_ROOM})


def directory(links: LinkView = LINKS, *, joined: frozenset[str] = ROOMS,
              encrypted: frozenset[str] = ROOMS) -> Directory:
    return Directory(posts={post.id: post for post in (ZHIBEK, ALMATY)},
                     groups={"kz-uz-border": Group(name="kz-uz-border",
                                                   posts=("KZ-ZHIBEK", "KZ-ALMATY"))},
                     category_rules=(), joined_rooms=joined, encrypted_rooms=encrypted,
                     links=links)


def decide(targets: list[str], tlp: Tlp = Tlp.GREEN, *,
           within: Directory | None = None) -> RoutingDecision:
    return route(origin=ZHIBEK, targets=targets, tlp=tlp, category=None,
                 directory=within or directory())


def outcome(decision: RoutingDecision) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    return decision.deliveries, [(r.target, r.reason.value) for r in decision.refusals]


@pytest.mark.parametrize(("targets", "tlp", "deliveries", "refusals"), [
    # a partner post by id, in any case as typed
    (["UZ-TERMEZ"], Tlp.AMBER, ("UZ-TERMEZ",), []),
    (["uz-termez"], Tlp.GREEN, ("UZ-TERMEZ",), []),
    # a partner's country
    (["UZ"], Tlp.GREEN, ("UZ-TERMEZ", "UZ-CUSTOMS", "UZ-FIU"), []),
    (["UZ"], Tlp.AMBER, (), [("UZ", "tlp_amber_fanout")]),
    # a group only partners publish, across two links
    (["amu-darya"], Tlp.GREEN, ("UZ-TERMEZ", "TJ-PANJ"), []),
    # a local group the partner's post joined
    (["kz-uz-border"], Tlp.GREEN, ("KZ-ALMATY", "UZ-TERMEZ"), []),
    # neighbours naming a partner post (one not published is refused as unknown)
    (["neighbours"], Tlp.GREEN, ("KZ-ALMATY", "UZ-TERMEZ"), [("UZ-GONE", "unknown_target")]),
    # AMBER+STRICT and RED never cross; AMBER+STRICT stays allowed for local posts
    (["UZ-TERMEZ"], Tlp.AMBER_STRICT, (), [("UZ-TERMEZ", "link_tlp")]),
    (["UZ-FIU", "KZ-ALMATY"], Tlp.AMBER_STRICT, ("KZ-ALMATY",), [("UZ-FIU", "link_tlp")]),
    (["UZ-TERMEZ"], Tlp.RED, (), [("UZ-TERMEZ", "tlp_red_room")]),
    # above the link's max_tlp, even if the post is cleared for it
    (["TJ-PANJ"], Tlp.AMBER, (), [("TJ-PANJ", "link_tlp")]),
    (["TJ-PANJ"], Tlp.GREEN, ("TJ-PANJ",), []),
    # a partner post's clearance is the published one
    (["UZ-CUSTOMS"], Tlp.AMBER, (), [("UZ-CUSTOMS", "clearance")]),
    # a post the link does not serve is not routed to, whoever publishes it
    (["TJ"], Tlp.GREEN, ("TJ-PANJ",), []),
])
def test_partner_posts_are_routed_like_local_ones(targets: list[str], tlp: Tlp,
                                                  deliveries: tuple[str, ...],
                                                  refusals: list[tuple[str, str]]) -> None:
    assert outcome(decide(targets, tlp)) == (deliveries, refusals)


def test_a_link_tlp_refusal_says_why_in_its_detail() -> None:
    (strict,) = decide(["UZ-TERMEZ"], Tlp.AMBER_STRICT).refusals
    (above,) = decide(["TJ-PANJ"], Tlp.AMBER).refusals

    assert "AMBER+STRICT and RED never cross a link" in strict.detail
    assert "the link tj" in above.detail and "at most TLP:GREEN" in above.detail


def test_a_partner_post_behind_an_unjoined_or_unencrypted_link_room_is_refused() -> None:
    unjoined = directory(joined=ROOMS - {UZ_ROOM})
    clear = directory(encrypted=ROOMS - {UZ_ROOM})

    assert outcome(decide(["UZ-TERMEZ"], within=unjoined)) == (
        (), [("UZ-TERMEZ", "not_joined")])
    assert outcome(decide(["UZ-TERMEZ"], within=clear)) == (
        (), [("UZ-TERMEZ", "not_encrypted")])


def test_without_a_directory_a_partner_post_is_unknown_and_suggested_once_published() -> None:
    before = LinkView(links=(UZ, TJ), directories={})
    (refusal,) = decide(["UZ-TERMEZ"], within=directory(before)).refusals
    (typo,) = decide(["UZ-TERMZ"]).refusals

    assert refusal.reason is RefusalReason.UNKNOWN_TARGET
    assert typo.reason is RefusalReason.UNKNOWN_TARGET
    assert typo.suggestions[0] == "UZ-TERMEZ"


def test_a_new_directory_version_takes_effect_at_once() -> None:
    """The partner adds a post: the next routing reaches it, no restart, no config edit."""
    newer = directory_of(*UZ_DIRECTORY.posts, published("UZ-SHAVAT"), version=2)
    grown = LinkView(links=(UZ, TJ), directories={"uz": newer, "tj": TJ_DIRECTORY})

    assert outcome(decide(["UZ-SHAVAT"])) == ((), [("UZ-SHAVAT", "unknown_target")])
    assert outcome(decide(["UZ-SHAVAT"], within=directory(grown))) == (("UZ-SHAVAT",), [])


def test_a_partner_post_never_shadows_a_local_one() -> None:
    shadowing = LinkView(links=(link("kz", UZ_ROOM, ("KZ",)),),
                         directories={"kz": directory_of(published("KZ-ALMATY"))})
    within = directory(shadowing)

    assert within.post("KZ-ALMATY") == ALMATY
    assert within.link_of(ALMATY) is None
    assert outcome(decide(["KZ-ALMATY"], Tlp.AMBER_STRICT, within=within)) == (
        ("KZ-ALMATY",), [])


def test_directory_lookups_cover_local_and_partner_posts() -> None:
    within = directory()
    termez = within.post("UZ-TERMEZ")

    assert termez is not None
    assert termez.room == UZ_ROOM
    assert (termez.duty_officers, termez.supervisors) == ((), ())
    assert within.link_of(termez) == UZ
    assert within.post("KZ-ZHIBEK") == ZHIBEK
    assert within.post("UZ-NOWHERE") is None
    assert set(within.all_posts()) == {"KZ-ZHIBEK", "KZ-ALMATY", "UZ-TERMEZ", "UZ-CUSTOMS",
                                       "UZ-FIU", "TJ-PANJ"}
    # the link's ceiling caps a published clearance
    fiu = within.post("UZ-FIU")
    assert fiu is not None and fiu.clearance is Tlp.AMBER


@pytest.mark.parametrize(("room", "tlp", "reason"), [
    (UZ_ROOM, Tlp.AMBER, None),
    (UZ_ROOM, Tlp.AMBER_STRICT, RefusalReason.LINK_TLP),
    (UZ_ROOM, Tlp.RED, RefusalReason.LINK_TLP),
    (TJ_ROOM, Tlp.AMBER, RefusalReason.LINK_TLP),
    (TJ_ROOM, Tlp.GREEN, None),
])
def test_still_reaches_applies_the_link_rule(room: str, tlp: Tlp,
                                             reason: RefusalReason | None) -> None:
    within = directory()
    post = within.post("UZ-TERMEZ" if room == UZ_ROOM else "TJ-PANJ")
    assert post is not None

    assert still_reaches(post, room, tlp, within) is reason


def test_still_reaches_a_partner_post_whose_link_room_was_left() -> None:
    within = directory(joined=ROOMS - {UZ_ROOM})
    post = directory().post("UZ-TERMEZ")
    assert post is not None

    assert still_reaches(post, UZ_ROOM, Tlp.GREEN, within) is RefusalReason.NOT_JOINED


def test_without_links_routing_is_unchanged() -> None:
    plain = Directory(posts={post.id: post for post in (ZHIBEK, ALMATY)}, groups={},
                      category_rules=(), joined_rooms=ROOMS, encrypted_rooms=ROOMS)

    assert plain.links == LinkView()
    assert outcome(route(origin=ZHIBEK, targets=["neighbours"], tlp=Tlp.GREEN, category=None,
                         directory=plain)) == (
        ("KZ-ALMATY",), [("UZ-TERMEZ", "unknown_target"), ("UZ-GONE", "unknown_target")])
