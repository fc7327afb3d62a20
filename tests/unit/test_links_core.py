"""Links, the pure rules (commands.links): what a bot publishes, what it reads from a
partner and what it accepts; and the configuration's cross-checks of `links:`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from ruamel.yaml import YAML

from liaison.commands.links import (
    MAX_EVENT_BYTES,
    CaseEventContent,
    CaseEventKind,
    DirectoryContent,
    DirectoryPost,
    Link,
    LinkEventType,
    LinkRefusal,
    LinkView,
    OfferContent,
    ReceiptContent,
    RefusalReason,
    case_event_key,
    check_case_event,
    check_directory,
    check_offer,
    directory_digest,
    directory_key,
    directory_posts,
    directory_to_publish,
    may_cross,
    offer_key,
    oversized,
    parse_content,
    receipt_key,
)
from liaison.commands.model import Agency, Group, Post, Tlp
from liaison.config import ConfigError, ConfigProblem, parse_config

KEY = "x" * 43
EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def link(**changes: Any) -> Link:
    values: dict[str, Any] = {"name": "uz", "partner": "@liaison:uz.example",
                              "room": "!link:kz.example", "partner_master_key": KEY,
                              "countries": ("UZ",)}
    values.update(changes)
    return Link.model_validate(values)


def local(post_id: str, *, clearance: Tlp = Tlp.AMBER, language: str = "ru",
          neighbours: tuple[str, ...] = ()) -> Post:
    return Post(id=post_id, names={"en": post_id.title(), "ru": "Пост"},
                country=post_id[:2], agency=Agency.BORDER,
                room=f"!{post_id.lower()}:kz.example", language=language,
                timezone="Asia/Almaty", clearance=clearance, neighbours=neighbours,
                duty_officers=("@duty:kz.example",), supervisors=("@boss:kz.example",),
                supervisors_room="!bosses:kz.example")


ZHIBEK = local("KZ-ZHIBEK", neighbours=("KZ-ALMATY", "KZ-SECRET", "UZ-TERMEZ"))
ALMATY = local("KZ-ALMATY", clearance=Tlp.RED, language="en")
SECRET = local("KZ-SECRET", language="ar")
POSTS = (ZHIBEK, ALMATY, SECRET)
GROUPS = (Group(name="kz-uz-border", posts=("KZ-ZHIBEK", "KZ-SECRET")),
          Group(name="internal", posts=("KZ-ZHIBEK", "KZ-ALMATY")))


def partner_post(post_id: str = "UZ-TERMEZ", **changes: Any) -> DirectoryPost:
    values: dict[str, Any] = {"id": post_id, "names": {"en": "Termez", "ru": "Термез"},
                              "country": post_id[:2], "agency": "border", "language": "ru"}
    values.update(changes)
    return DirectoryPost.model_validate(values)


def partner_directory(*posts: DirectoryPost, version: int = 1) -> DirectoryContent:
    return DirectoryContent(id=directory_key(version), version=version,
                            posts=posts or (partner_post(),))


def offer(**changes: Any) -> OfferContent:
    values: dict[str, Any] = {
        "ref": "UZ-0001", "kind": "alert", "origin_post": "UZ-TERMEZ",
        "origin_sender": "@bekzod:uz.example", "target": "KZ-ZHIBEK",
        "targets": ("KZ-ZHIBEK",), "priority": "flash", "tlp": "AMBER",
        "fields": (("plate", "01A123BC"),), "text": "white Kamaz", "created_ms": 1}
    values.update(changes)
    values["id"] = offer_key(values["ref"], values["target"])
    return OfferContent.model_validate(values)


def as_content(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json")
    return dumped


# --- what this bot publishes ------------------------------------------------------------


def test_directory_publishes_only_exposed_posts_without_rooms_or_people() -> None:
    posts = directory_posts(link(expose=("KZ-ZHIBEK", "KZ-ALMATY"),
                                 expose_groups=("kz-uz-border",)), POSTS, GROUPS)

    assert [post.id for post in posts] == ["KZ-ZHIBEK", "KZ-ALMATY"]
    zhibek, almaty = posts
    assert zhibek.names == {"en": "Kz-Zhibek", "ru": "Пост"}
    # only groups named in expose_groups; a neighbour not published stays unknown to the
    # partner, the partner's own post may be named
    assert zhibek.groups == ("kz-uz-border",)
    assert zhibek.neighbours == ("KZ-ALMATY", "UZ-TERMEZ")
    assert almaty.groups == ()
    # RED clearance is published as the most the link carries
    assert almaty.clearance is Tlp.AMBER
    assert (almaty.language, almaty.timezone, almaty.country) == ("en", "Asia/Almaty", "KZ")
    published = str([post.model_dump() for post in posts])
    for secret in ("!kz-zhibek", "@duty", "@boss", "!bosses", "KZ-SECRET"):
        assert secret not in published


def test_directory_without_expose_publishes_every_post() -> None:
    posts = directory_posts(link(max_tlp=Tlp.GREEN), POSTS, GROUPS)

    assert [post.id for post in posts] == ["KZ-ZHIBEK", "KZ-ALMATY", "KZ-SECRET"]
    assert [post.clearance for post in posts] == [Tlp.GREEN, Tlp.GREEN, Tlp.GREEN]
    assert posts[2].language == "ar"
    assert all(post.groups == () for post in posts)


def test_directory_digest_changes_with_what_is_published_only() -> None:
    exposed = link(expose=("KZ-ZHIBEK",))
    first = directory_digest(directory_posts(exposed, POSTS, GROUPS))
    officers_changed = (ZHIBEK.model_copy(update={"duty_officers": ("@new:kz.example",),
                                                  "room": "!moved:kz.example"}),
                        ALMATY, SECRET)
    renamed = (ZHIBEK.model_copy(update={"names": {"en": "Zhibek Zholy"}}), ALMATY, SECRET)

    assert directory_digest(directory_posts(exposed, officers_changed, GROUPS)) == first
    assert directory_digest(directory_posts(exposed, renamed, GROUPS)) != first
    assert directory_digest(()) != first
    assert len(first) == 64


def test_a_directory_is_published_again_only_when_it_changes() -> None:
    exposed = link(expose=("KZ-ZHIBEK",))
    first = directory_to_publish(exposed, POSTS, GROUPS, None)
    assert first is not None
    content, digest = first
    moved = (ZHIBEK.model_copy(update={"room": "!moved:kz.example"}), ALMATY, SECRET)
    renamed = (ZHIBEK.model_copy(update={"names": {"en": "Zhibek Zholy"}}), ALMATY, SECRET)
    again = directory_to_publish(exposed, renamed, GROUPS, (content.version, digest))

    assert (content.id, content.version) == ("directory:1", 1)
    assert [post.id for post in content.posts] == ["KZ-ZHIBEK"]
    assert directory_to_publish(exposed, moved, GROUPS, (1, digest)) is None
    assert again is not None
    assert (again[0].id, again[0].version, again[0].posts[0].names["en"]) == (
        "directory:2", 2, "Zhibek Zholy")
    # what is published reads back as the partner's parser reads it
    assert parse_content(LinkEventType.DIRECTORY, as_content(again[0])) == again[0]
    assert check_directory(link(name="kz", countries=("KZ",)), again[0]) is None


# --- reading a partner's events ---------------------------------------------------------


def test_each_event_type_parses_to_its_content() -> None:
    directory = partner_directory(version=3)
    receipt = ReceiptContent(id=receipt_key("KZ-0001", "UZ-TERMEZ"), ref="KZ-0001",
                             target="UZ-TERMEZ", accepted=False, reason=RefusalReason.TLP,
                             detail="no")
    ack = CaseEventContent(id=case_event_key("KZ-0001", CaseEventKind.ACK, "UZ-TERMEZ", ""),
                           ref="KZ-0001", event=CaseEventKind.ACK, post="UZ-TERMEZ", ms=5)

    assert parse_content(LinkEventType.DIRECTORY, as_content(directory)) == directory
    assert parse_content(LinkEventType.OFFER, as_content(offer())) == offer()
    assert parse_content(LinkEventType.RECEIPT, as_content(receipt)) == receipt
    assert parse_content("org.liaison.link.case", as_content(ack)) == ack


def test_the_spec_examples_parse() -> None:
    """The JSON examples of docs/links.md are valid events."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "links.md").read_text("utf-8")
    blocks = [block.split("```", 1)[0] for block in docs.split("```json\n")[1:]]
    examples = [json.loads(block.replace("…", "x")) for block in blocks]
    types = [LinkEventType.DIRECTORY, LinkEventType.OFFER, LinkEventType.RECEIPT,
             LinkEventType.CASE]
    assert len(examples) == len(types)
    for event_type, example in zip(types, examples, strict=True):
        parsed = parse_content(event_type, example)
        assert not isinstance(parsed, LinkRefusal), (event_type, parsed)


@pytest.mark.parametrize(("event_type", "content", "reason", "detail"), [
    ("org.liaison.link.hello", {"v": 1, "id": "x"}, RefusalReason.SCHEMA, "unknown event type"),
    (LinkEventType.OFFER, {**as_content(offer()), "v": 2}, RefusalReason.UNKNOWN_VERSION,
     "protocol version"),
    (LinkEventType.OFFER, {**as_content(offer()), "v": True}, RefusalReason.UNKNOWN_VERSION,
     "protocol version"),
    (LinkEventType.OFFER, {key: value for key, value in as_content(offer()).items()
                           if key != "v"}, RefusalReason.UNKNOWN_VERSION, "protocol version"),
    (LinkEventType.OFFER, {**as_content(offer()), "room": "!kz:kz.example"},
     RefusalReason.SCHEMA, "room"),
    (LinkEventType.OFFER, {**as_content(offer()), "tlp": "PURPLE"}, RefusalReason.SCHEMA,
     "tlp"),
    (LinkEventType.OFFER, {**as_content(offer()), "id": "offer:UZ-0001:KZ-ALMATY"},
     RefusalReason.SCHEMA, "should be 'offer:UZ-0001:KZ-ZHIBEK'"),
    (LinkEventType.DIRECTORY, {**as_content(partner_directory(version=3)), "id": "directory:2"},
     RefusalReason.SCHEMA, "should be 'directory:3'"),
    (LinkEventType.DIRECTORY, {**as_content(partner_directory()),
                               "posts": [{**as_content(partner_post()),
                                          "room": "!uz-termez:uz.example"}]},
     RefusalReason.SCHEMA, "posts.0.room"),
    (LinkEventType.CASE, {"v": 1, "id": "case:KZ-0001:ack:UZ-OTHER", "ref": "KZ-0001",
                          "event": "ack", "post": "UZ-TERMEZ", "ms": 1},
     RefusalReason.SCHEMA, "should start with 'case:KZ-0001:ack:UZ-TERMEZ'"),
    (LinkEventType.CASE, {"v": 1, "id": "case:KZ-0001:attachment:UZ-TERMEZ:$e",
                          "ref": "KZ-0001", "event": "attachment", "post": "UZ-TERMEZ",
                          "ms": 1}, RefusalReason.SCHEMA, "without its attachment"),
    (LinkEventType.CASE, {"v": 1, "id": "case:KZ-0001:shrug:-", "ref": "KZ-0001",
                          "event": "shrug", "ms": 1}, RefusalReason.SCHEMA, "event"),
])
def test_a_content_that_is_not_the_protocol_is_refused(
        event_type: str, content: dict[str, Any], reason: RefusalReason, detail: str) -> None:
    refused = parse_content(event_type, content)

    assert isinstance(refused, LinkRefusal), refused
    assert refused.reason is reason
    assert detail in refused.detail


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300)
@given(event_type=st.sampled_from([*LinkEventType, "org.liaison.link.x"]),
       content=st.dictionaries(st.sampled_from(["v", "id", "ref", "version", "posts",
                                                "target", "event", "tlp", "ms"]) | st.text(),
                               JSON, max_size=8))
def test_any_json_from_a_partner_parses_or_is_refused_never_raises(
        event_type: str, content: dict[str, Any]) -> None:
    parsed = parse_content(event_type, content)

    assert isinstance(parsed, LinkRefusal | DirectoryContent | OfferContent | ReceiptContent
                      | CaseEventContent)


@settings(max_examples=200)
@given(field=st.sampled_from(sorted(as_content(offer()))), value=JSON)
def test_an_offer_with_one_field_changed_parses_only_to_a_valid_offer(
        field: str, value: Any) -> None:
    changed = {**as_content(offer()), field: value}
    parsed = parse_content(LinkEventType.OFFER, changed)

    if not isinstance(parsed, LinkRefusal):
        assert isinstance(parsed, OfferContent)
        assert parsed.id == offer_key(parsed.ref, parsed.target)
        assert parsed.v == 1


def test_a_content_nested_too_deep_is_refused() -> None:
    deep: list[Any] = []
    innermost = deep
    for _ in range(5000):
        innermost.append([])
        innermost = innermost[0]

    refused = parse_content(LinkEventType.OFFER, {"v": 1, "id": "x", "fields": deep})

    assert refused == LinkRefusal(RefusalReason.SCHEMA,
                                  "the content is nested deeper than 16 levels")
    shallow = parse_content(LinkEventType.OFFER, {"v": 1, "id": "x", "fields": [[[[]]]]})
    assert isinstance(shallow, LinkRefusal) and "nested" not in shallow.detail


def test_an_oversized_event_is_refused_before_it_is_read() -> None:
    big = {**as_content(offer()), "fields": [["note", "ж" * 10_000]] * 4}
    refused = parse_content(LinkEventType.OFFER, big)

    assert isinstance(refused, LinkRefusal)
    assert refused.reason is RefusalReason.TOO_LARGE
    assert f"more than {MAX_EVENT_BYTES}" in refused.detail
    # each Cyrillic letter is two bytes: 40,000 characters fit a 60,000-character limit
    # but not 60,000 bytes
    assert sum(len(value) for _, value in big["fields"]) < MAX_EVENT_BYTES


def test_the_largest_event_still_fits_in_a_matrix_event_once_encrypted() -> None:
    """Synapse refuses an event over 65,536 bytes (the whole PDU); Megolm's ciphertext is
    base64, a third larger than the event it encrypts."""
    vodozemac = pytest.importorskip("vodozemac")
    content = {"v": 1, "id": "x", "text": "x" * (MAX_EVENT_BYTES - 30)}
    assert len(json.dumps(content, separators=(",", ":"))) <= MAX_EVENT_BYTES
    plaintext = json.dumps({"type": LinkEventType.OFFER.value, "content": content,
                            "room_id": "!" + "r" * 40 + ":kz.example"},
                           separators=(",", ":")).encode()
    ciphertext = vodozemac.GroupSession().encrypt(plaintext).to_base64()
    encrypted = json.dumps({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": ciphertext,
                            "sender_key": "k" * 43, "session_id": "s" * 43,
                            "device_id": "D" * 10}, separators=(",", ":"))
    pdu_fields = 2_500  # sender, room, ids, prev/auth events, hashes, signatures, depth, ts

    assert len(encrypted) + pdu_fields < 65_536


def test_a_content_too_large_to_send_is_found_before_it_is_queued() -> None:
    """A maximal local draft (8,000 characters and 40 fields of 1,000) in Cyrillic."""
    longest = offer(text="ж" * 8000,
                    fields=tuple((f"field{number}", "ж" * 1000) for number in range(40)))
    refused = oversized(longest)

    assert refused is not None and refused.reason is RefusalReason.TOO_LARGE
    assert parse_content(LinkEventType.OFFER, as_content(longest)) == refused
    assert oversized(offer()) is None


def test_the_idempotency_keys_are_those_of_the_spec() -> None:
    assert offer_key("KZ-0001", "UZ-TERMEZ") == "offer:KZ-0001:UZ-TERMEZ"
    assert receipt_key("KZ-0001", "UZ-TERMEZ") == "receipt:KZ-0001:UZ-TERMEZ"
    assert directory_key(7) == "directory:7"
    assert case_event_key("KZ-0001", CaseEventKind.ACK, "UZ-TERMEZ", "") == (
        "case:KZ-0001:ack:UZ-TERMEZ")
    assert case_event_key("KZ-0001", CaseEventKind.REPLY, "UZ-TERMEZ", "$reply") == (
        "case:KZ-0001:reply:UZ-TERMEZ:$reply")
    assert case_event_key("KZ-0001", CaseEventKind.CLOSE, None, "") == "case:KZ-0001:close:-"


# --- directories ------------------------------------------------------------------------


def test_a_directory_of_served_posts_is_accepted() -> None:
    served = partner_directory(partner_post(), partner_post("UZ-CUSTOMS", agency="customs"))

    assert check_directory(link(), served) is None
    assert check_directory(link(agencies=(Agency.BORDER, Agency.CUSTOMS)), served) is None


def test_a_directory_with_a_post_of_another_country_is_refused_whole() -> None:
    claimed = partner_directory(partner_post(), partner_post("KZ-ZHIBEK"),
                                partner_post("TJ-PANJ"))
    refused = check_directory(link(), claimed)

    assert refused is not None
    assert refused.reason is RefusalReason.COUNTRY
    assert refused.detail.endswith("KZ-ZHIBEK, TJ-PANJ")


def test_a_directory_with_a_post_of_another_agency_is_refused() -> None:
    customs = partner_directory(partner_post("UZ-CUSTOMS", agency="customs"))
    refused = check_directory(link(agencies=(Agency.BORDER,)), customs)

    assert refused is not None and refused.reason is RefusalReason.COUNTRY
    assert "UZ-CUSTOMS" in refused.detail


def test_a_directory_post_without_an_english_name_is_refused() -> None:
    """Every post has an English name to fall back on; a partner's must too."""
    refused = check_directory(link(), partner_directory(partner_post(names={"ru": "Термез"})))

    assert refused == LinkRefusal(RefusalReason.SCHEMA, "post UZ-TERMEZ has no English name")


def test_a_directory_naming_a_post_twice_is_refused() -> None:
    refused = check_directory(link(), partner_directory(partner_post(), partner_post()))

    assert refused == LinkRefusal(RefusalReason.SCHEMA, "post UZ-TERMEZ is listed twice")


# --- TLP ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_tlp", "tlp", "crosses"), [
    (Tlp.AMBER, Tlp.CLEAR, True),
    (Tlp.AMBER, Tlp.GREEN, True),
    (Tlp.AMBER, Tlp.AMBER, True),
    (Tlp.AMBER, Tlp.AMBER_STRICT, False),
    (Tlp.AMBER, Tlp.RED, False),
    (Tlp.GREEN, Tlp.AMBER, False),
    (Tlp.GREEN, Tlp.GREEN, True),
    (Tlp.CLEAR, Tlp.GREEN, False),
])
def test_what_may_cross_a_link(max_tlp: Tlp, tlp: Tlp, crosses: bool) -> None:
    assert may_cross(link(max_tlp=max_tlp), tlp) is crosses


def test_a_link_cannot_be_configured_to_carry_amber_strict() -> None:
    with pytest.raises(ValidationError, match="never cross a link"):
        link(max_tlp=Tlp.AMBER_STRICT)


# --- offers -------------------------------------------------------------------------------


def test_an_offer_to_an_exposed_cleared_post_from_a_published_post_is_accepted() -> None:
    assert check_offer(link(expose=("KZ-ZHIBEK",)), offer(), ZHIBEK,
                       partner_directory=partner_directory()) is None


@pytest.mark.parametrize(("changes", "the_link", "target", "reason", "detail"), [
    ({"tlp": "AMBER+STRICT"}, link(), ZHIBEK, RefusalReason.TLP, "never do"),
    ({"tlp": "RED"}, link(), ZHIBEK, RefusalReason.TLP, "does not cross the link uz"),
    ({"tlp": "AMBER"}, link(max_tlp=Tlp.GREEN), ZHIBEK, RefusalReason.TLP,
     "at most TLP:GREEN"),
    ({}, link(), None, RefusalReason.UNKNOWN_POST, "no post KZ-ZHIBEK here"),
    ({"target": "KZ-SECRET", "targets": ("KZ-SECRET",)}, link(expose=("KZ-ZHIBEK",)), SECRET,
     RefusalReason.NOT_EXPOSED, "KZ-SECRET is not offered to the link uz"),
    ({}, link(), ZHIBEK.model_copy(update={"clearance": Tlp.GREEN}), RefusalReason.CLEARANCE,
     "cleared up to TLP:GREEN"),
    ({"origin_post": "UZ-GHOST"}, link(), ZHIBEK, RefusalReason.UNKNOWN_POST,
     "origin post UZ-GHOST is not in the partner's directory"),
    ({"targets": ("KZ-ALMATY",)}, link(), ZHIBEK, RefusalReason.SCHEMA, "not in targets"),
    ({}, link(), ALMATY, RefusalReason.UNKNOWN_POST, "no post KZ-ZHIBEK"),
])
def test_an_offer_is_refused_with_the_reason(changes: dict[str, Any], the_link: Link,
                                             target: Post | None, reason: RefusalReason,
                                             detail: str) -> None:
    refused = check_offer(the_link, offer(**changes), target,
                          partner_directory=partner_directory())

    assert refused is not None
    assert refused.reason is reason
    assert detail in refused.detail


def test_an_offer_before_any_directory_is_refused() -> None:
    refused = check_offer(link(), offer(), ZHIBEK, partner_directory=None)

    assert refused is not None and refused.reason is RefusalReason.UNKNOWN_POST


def test_an_offer_from_a_post_the_link_no_longer_serves_is_refused() -> None:
    """The operator narrowed the link's agencies after the directory was accepted."""
    refused = check_offer(link(agencies=(Agency.CUSTOMS,)), offer(), ZHIBEK,
                          partner_directory=partner_directory())

    assert refused is not None and refused.reason is RefusalReason.COUNTRY


# --- case events ------------------------------------------------------------------------


def event(kind: CaseEventKind, post: str | None = "UZ-TERMEZ") -> CaseEventContent:
    return CaseEventContent(id=case_event_key("KZ-0001", kind, post, "u"), ref="KZ-0001",
                            event=kind, post=post, ms=1)


@pytest.mark.parametrize("kind", sorted(CaseEventKind))
def test_the_origin_accepts_only_what_the_target_side_sends(kind: CaseEventKind) -> None:
    refused = check_case_event(event(kind), we_are_origin=True,
                               offered_posts=frozenset({"UZ-TERMEZ"}))
    from_target = kind in {CaseEventKind.SEEN, CaseEventKind.ACK, CaseEventKind.ANSWERED,
                           CaseEventKind.REMINDED, CaseEventKind.ESCALATED,
                           CaseEventKind.DELAYED, CaseEventKind.DECLINED,
                           CaseEventKind.REPLY, CaseEventKind.ATTACHMENT}
    assert (refused is None) is from_target
    if refused is not None:
        assert refused.reason is RefusalReason.SCHEMA
        assert "does not come from the origin's side" in refused.detail


@pytest.mark.parametrize("kind", sorted(CaseEventKind))
def test_the_target_accepts_only_what_the_origin_side_sends(kind: CaseEventKind) -> None:
    refused = check_case_event(event(kind, "KZ-ZHIBEK"), we_are_origin=False,
                               offered_posts=frozenset({"KZ-ZHIBEK"}))
    from_origin = kind in {CaseEventKind.REPLY, CaseEventKind.ATTACHMENT,
                           CaseEventKind.UPDATE, CaseEventKind.CLOSE, CaseEventKind.CANCEL}
    assert (refused is None) is from_origin


def test_an_ack_for_a_post_the_case_was_not_offered_to_is_refused() -> None:
    refused = check_case_event(event(CaseEventKind.ACK, "UZ-CUSTOMS"), we_are_origin=True,
                               offered_posts=frozenset({"UZ-TERMEZ"}))

    assert refused == LinkRefusal(RefusalReason.NOT_TARGET,
                                  "KZ-0001 was not offered to UZ-CUSTOMS")


def test_an_ack_must_name_its_post_but_a_close_may_be_about_the_whole_case() -> None:
    anonymous_ack = check_case_event(event(CaseEventKind.ACK, None), we_are_origin=True,
                                     offered_posts=frozenset({"UZ-TERMEZ"}))
    close = check_case_event(event(CaseEventKind.CLOSE, None), we_are_origin=False,
                             offered_posts=frozenset({"KZ-ZHIBEK"}))

    assert anonymous_ack is not None and anonymous_ack.reason is RefusalReason.NOT_TARGET
    assert close is None


# --- configuration -----------------------------------------------------------------------

CONFIG = textwrap.dedent(
    """\
    homeserver:
      url: https://matrix.kz.example/
    bot:
      user_id: "@liaison:kz.example"
      password: {env: TEST_LIAISON_PASSWORD}
      pickle_key: {env: TEST_LIAISON_PICKLE_KEY}
    data_dir: data
    trust:
      policy: tofu
    access:
      admins_room: "!admins:kz.example"
    posts:
      - id: KZ-ZHIBEK
        names: {en: Zhibek Zholy}
        country: KZ
        agency: border
        room: "!kz-zhibek:kz.example"
        supervisors_room: "!bosses:kz.example"
        neighbours: [UZ-TERMEZ]
      - id: KZ-ALMATY
        names: {en: Almaty}
        country: KZ
        agency: police
        room: "!kz-almaty:kz.example"
    groups:
      - name: kz-uz-border
        posts: [KZ-ZHIBEK]
    links:
      - name: uz
        partner: "@liaison:uz.example"
        room: "!link-uz:kz.example"
        partner_master_key: "KEY"
        countries: [UZ]
        expose: [KZ-ZHIBEK]
        expose_groups: [kz-uz-border]
      - name: tj
        partner: "@liaison:tj.example"
        room: "!link-tj:kz.example"
        partner_master_key: "KEY"
        countries: [TJ]
    """
).replace("KEY", KEY)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    lines = [number for number, line in enumerate(text.splitlines(), 1) if needle in line]
    return lines[occurrence - 1]


def problems_of(text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="config.yaml")
    return caught.value.problems


def test_links_load_and_a_neighbour_may_be_a_partner_post() -> None:
    config = parse_config(CONFIG, source="config.yaml")

    assert [configured.name for configured in config.links] == ["uz", "tj"]
    assert config.links[0].expose == ("KZ-ZHIBEK",)
    assert config.post_by_id("KZ-ZHIBEK") is not None
    assert config.warnings == []


def test_a_neighbour_of_a_country_no_link_serves_is_unknown() -> None:
    text = CONFIG.replace("neighbours: [UZ-TERMEZ]", "neighbours: [UZ-TERMEZ, KG-DOSTUK]")

    assert problems_of(text) == [ConfigProblem(
        "posts[0].neighbours[1]", line_of(text, "KG-DOSTUK"),
        "unknown post id 'KG-DOSTUK'; expected a configured post id or a post of a country "
        "a link serves")]


def test_two_links_with_one_name_or_one_room_are_errors_at_the_second() -> None:
    text = CONFIG.replace("name: tj", "name: uz").replace("!link-tj:", "!link-uz:")

    assert problems_of(text) == [
        ConfigProblem("links[1].name", line_of(text, "name: uz", 2),
                      "duplicate link name uz; already used by links[0]"),
        ConfigProblem("links[1].room", line_of(text, '"!link-uz:kz.example"', 2),
                      "room !link-uz:kz.example is already the room of links[0]; each link "
                      "needs its own room"),
    ]


@pytest.mark.parametrize(("room", "what"), [
    ("!kz-almaty:kz.example", "the room of KZ-ALMATY (posts[1])"),
    ("!bosses:kz.example", "the supervisors' room of KZ-ZHIBEK (posts[0])"),
    ("!admins:kz.example", "access.admins_room"),
])
def test_a_link_room_is_no_other_room_of_the_bot(room: str, what: str) -> None:
    text = CONFIG.replace('room: "!link-tj:kz.example"', f'room: "{room}"')

    assert problems_of(text) == [ConfigProblem(
        "links[1].room", line_of(CONFIG, '"!link-tj:kz.example"'),
        f"room {room} is already {what}; a link room holds only the two bots and their "
        "protocol")]


def test_expose_names_configured_posts_and_groups() -> None:
    text = CONFIG.replace("expose: [KZ-ZHIBEK]", "expose: [KZ-ZHIBEK, KZ-ZHIBK]").replace(
        "expose_groups: [kz-uz-border]", "expose_groups: [kz-uz-bordr]")

    assert problems_of(text) == [
        ConfigProblem("links[0].expose[1]", line_of(text, "KZ-ZHIBK"),
                      "unknown post id 'KZ-ZHIBK'; did you mean KZ-ZHIBEK?"),
        ConfigProblem("links[0].expose_groups[0]", line_of(text, "kz-uz-bordr"),
                      "unknown group 'kz-uz-bordr'; did you mean kz-uz-border?"),
    ]


def test_an_exposed_group_without_an_exposed_post_loads_with_a_warning() -> None:
    text = CONFIG.replace("expose: [KZ-ZHIBEK]", "expose: [KZ-ALMATY]")
    config = parse_config(text, source="config.yaml")

    assert config.warnings == [
        f"config.yaml:{line_of(text, 'expose_groups: [kz-uz-border]')}: "
        "links[0].expose_groups[0]: no post of group kz-uz-border is exposed to uz "
        "(links[0]), so the partner learns nothing of it; add its posts to expose"]


def test_a_link_to_the_bot_itself_is_an_error() -> None:
    text = CONFIG.replace('partner: "@liaison:tj.example"', 'partner: "@liaison:kz.example"')

    assert problems_of(text) == [ConfigProblem(
        "links[1].partner", line_of(text, 'partner: "@liaison:kz.example"'),
        "the partner is this bot's own user id; name the other side's bot")]


def test_two_links_serving_one_country_load_with_a_warning() -> None:
    text = CONFIG.replace("countries: [TJ]", "countries: [TJ, UZ]")
    config = parse_config(text, source="config.yaml")

    assert config.warnings == [
        f"config.yaml:{line_of(text, 'countries: [TJ, UZ]')}: links[1].countries[1]: UZ is "
        "also served by links[0] (tj (links[1]) too); a post id both partners publish is "
        "taken from the first link"]


def test_a_bad_partner_key_names_the_field_and_line() -> None:
    text = CONFIG.replace(f'"{KEY}"', '"not-a-key"', 1)
    (problem,) = problems_of(text)

    assert (problem.path, problem.line) == ("links[0].partner_master_key",
                                            line_of(text, "not-a-key"))
    assert "43 characters" in problem.message


def test_the_commented_links_example_loads_once_uncommented(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIAISON_PASSWORD", "x")
    monkeypatch.setenv("LIAISON_PICKLE_KEY", "y")
    example = EXAMPLE.read_text("utf-8")
    start, end = example.index("# links:\n"), example.index("# A post's `neighbours`")
    block = "\n".join(line[2:] if line.startswith("# ") else line[1:]
                      for line in example[start:end].splitlines())
    text = example[:start] + block.replace("REPLACE-with-the-43-character-key-of-partner",
                                           KEY) + "\n"
    data = YAML(typ="safe").load(block)
    config = parse_config(text, source="config.yaml")

    assert [configured.name for configured in config.links] == ["uz"]
    configured = config.links[0]
    # every knob of a link is shown
    assert set(data["links"][0]) == set(Link.model_fields)
    assert configured.expose is not None
    assert all(config.post_by_id(post_id) is not None for post_id in configured.expose)
    assert config.warnings == []


# --- the view of partners ----------------------------------------------------------------


def test_partner_posts_are_read_from_the_directories_and_never_shared() -> None:
    view = LinkView(links=(link(),), directories={"uz": partner_directory(
        partner_post(timezone="Mars/Olympus", clearance="AMBER"),
        partner_post("UZ-SHAVAT", names={"ru": "Шават"}, groups=("amu-darya",)),
        partner_post("TJ-PANJ"))})
    posts = view.partner_posts()
    posts.pop("UZ-TERMEZ")

    again = view.partner_posts()
    assert set(again) == {"UZ-TERMEZ", "UZ-SHAVAT"}  # TJ is not the link's
    assert again["UZ-TERMEZ"].timezone == "UTC"  # a zone this machine does not know
    assert again["UZ-SHAVAT"].name("en") == "UZ-SHAVAT"  # no English name published
    assert again["UZ-SHAVAT"].name("ru") == "Шават"
    assert view.partner_groups() == {"amu-darya": ("UZ-SHAVAT",)}
    assert view.link_for_post("UZ-SHAVAT") == link()
    assert view.link_for_post("TJ-PANJ") is None
