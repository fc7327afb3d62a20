"""Cross-checks: posts, groups, category rules and links against each other, and settings
that load but are unsafe or look wrong together."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from liaison.commands.chase_policy import escalation_target_problems
from liaison.commands.model import Agency
from liaison.commands.notify import quiet_post_problems
from liaison.commands.report_schedule import report_problems
from liaison.config.errors import Finding, Loc
from liaison.config.model import Config

SAME_COUNTRY_PREFIX = "same-country:"
# Target words a group name must not shadow (`to:neighbours`).
RESERVED_TARGET_WORDS = frozenset({"neighbours", "neighbors"})


def _insecure_homeserver(data: Mapping[str, Any]) -> list[Finding]:
    """`homeserver.url` with http:// to a host other than this machine, unless the operator
    said `allow_insecure_http: true`: the access token would cross the network in clear."""
    section = data.get("homeserver")
    if not isinstance(section, dict) or section.get("allow_insecure_http") is True:
        return []
    url = section.get("url")
    if not isinstance(url, str):
        return []
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or _is_loopback(parts.hostname):
        return []
    return [(("homeserver", "url"),
             f"http:// to {parts.hostname} sends the bot's access token and every message "
             "unencrypted over the network; use https://, or set "
             "homeserver.allow_insecure_http: true if this network is trusted")]


def _is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (`127.0.0.1`, `::1`, `localhost`)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _metrics_warnings(config: Config) -> list[Finding]:
    """An enabled listener reachable from other machines, or a stall limit that the
    sync long-poll alone reaches."""
    metrics = config.metrics
    if not metrics.enabled:
        return []
    warnings: list[Finding] = []
    if not _is_loopback(metrics.host):
        warnings.append((("metrics", "host"),
                         f"{metrics.host} is not a loopback address: /metrics and /healthz "
                         "(no authentication) are reachable from other machines; firewall "
                         "the port or use 127.0.0.1"))
    if metrics.sync_stalled_after <= config.sync.timeout:
        warnings.append((("metrics", "sync_stalled_after"),
                         "sync_stalled_after is not longer than sync.timeout: /healthz will "
                         "fail between quiet syncs"))
    return warnings


def _cross_check(data: dict[str, Any]) -> tuple[list[Finding], list[Finding]]:
    """Check posts, groups and category rules against each other on the raw data.

    This runs even when some entries failed validation, so that one run of
    `liaison check-config` shows everything. Returns (problems, warnings).
    """
    posts = _mappings(data.get("posts"))
    groups = _mappings(data.get("groups"))
    rules = _mappings(data.get("category_rules"))
    links = _mappings(data.get("links"))
    partner_countries = _link_countries(links)
    problems: list[Finding] = []
    warnings: list[Finding] = []

    first_by: dict[str, dict[str, int]] = {"id": {}, "room": {}}
    for index, post in posts:
        for field, first_index in first_by.items():
            value = post.get(field)
            if not isinstance(value, str):
                continue
            if value in first_index:
                problems.append((("posts", index, field),
                                 _taken(field, value, first_index[value], posts)))
            else:
                first_index[value] = index
    first_by_id = first_by["id"]
    post_at = dict(posts)
    neighbours_of = {post_id: set(_strings(post_at[first].get("neighbours")))
                     for post_id, first in first_by_id.items()}
    known_ids = list(first_by_id)

    for index, post in posts:
        post_id = post.get("id")
        for position, neighbour in _indexed_strings(post.get("neighbours")):
            loc: Loc = ("posts", index, "neighbours", position)
            if neighbour == post_id:
                problems.append((loc, "a post cannot be its own neighbour"))
            elif neighbour not in first_by_id and neighbour[:2] in partner_countries:
                continue  # a partner's post: its directory decides whether it exists
            elif neighbour not in first_by_id:
                problems.append((loc, _unknown_post(neighbour, known_ids, extra=(
                    " or a post of a country a link serves" if links else ""))))
            elif isinstance(post_id, str) and post_id not in neighbours_of[neighbour]:
                warnings.append(
                    (
                        loc,
                        f"{post_id} lists {neighbour} as a neighbour but {neighbour} "
                        f"does not list {post_id}; alerts to neighbours will flow one way",
                    )
                )

    problems.extend(_check_groups(groups, posts, known_ids))
    problems.extend(_check_rules(rules, known_ids))
    link_problems, link_warnings = _check_links(data, links, posts, groups, known_ids)
    problems.extend(link_problems)
    warnings.extend(link_warnings)
    problems.extend(escalation_target_problems(data))
    problems.extend(quiet_post_problems(data))
    problems.extend(_insecure_homeserver(data))
    problems.extend(report_problems(data))
    return problems, warnings


def _check_groups(
    groups: list[tuple[int, dict[str, Any]]],
    posts: list[tuple[int, dict[str, Any]]],
    known_ids: list[str],
) -> list[Finding]:
    problems: list[Finding] = []
    countries = {post["country"] for _, post in posts if isinstance(post.get("country"), str)}
    upper_ids = {post_id.upper() for post_id in known_ids}
    first_by_name: dict[str, int] = {}
    for index, group in groups:
        name = group.get("name")
        if isinstance(name, str):
            loc: Loc = ("groups", index, "name")
            if name in first_by_name:
                problems.append(
                    (
                        loc,
                        f"duplicate group name {name}; "
                        f"already used by groups[{first_by_name[name]}]",
                    )
                )
            else:
                first_by_name[name] = index
            if name.upper() in upper_ids:
                problems.append((loc, f"group name {name} is also a post id; rename the group"))
            elif name.upper() in countries or len(name) == 2:
                problems.append(
                    (loc, f"group name {name} could be read as a country code; rename the group")
                )
            elif name.lower() in RESERVED_TARGET_WORDS:
                problems.append((loc, f"group name {name} is a reserved target word"))
        for position, post_id in _indexed_strings(group.get("posts")):
            if post_id not in known_ids:
                problems.append(
                    (("groups", index, "posts", position), _unknown_post(post_id, known_ids))
                )
    return problems


def _check_rules(rules: list[tuple[int, dict[str, Any]]], known_ids: list[str]) -> list[Finding]:
    problems: list[Finding] = []
    agencies = [agency.value for agency in Agency]
    for index, rule in rules:
        for position, target in _indexed_strings(rule.get("add")):
            loc: Loc = ("category_rules", index, "add", position)
            if target.startswith(SAME_COUNTRY_PREFIX):
                agency = target.removeprefix(SAME_COUNTRY_PREFIX)
                if agency not in agencies:
                    close = difflib.get_close_matches(agency, agencies, n=1)
                    hint = f"did you mean {close[0]}?" if close else f"one of {', '.join(agencies)}"
                    problems.append((loc, f"unknown agency {agency!r} in {target!r}; {hint}"))
            elif target not in known_ids:
                problems.append(
                    (
                        loc,
                        _unknown_post(target, known_ids, extra=f" or {SAME_COUNTRY_PREFIX}AGENCY"),
                    )
                )
    return problems


def _link_countries(links: list[tuple[int, dict[str, Any]]]) -> set[str]:
    """The countries some link serves: a post of one may be named as a neighbour."""
    return {country for _, link in links for country in _strings(link.get("countries"))}


def _check_links(
    data: Mapping[str, Any],
    links: list[tuple[int, dict[str, Any]]],
    posts: list[tuple[int, dict[str, Any]]],
    groups: list[tuple[int, dict[str, Any]]],
    known_ids: list[str],
) -> tuple[list[Finding], list[Finding]]:
    """Each link's name and room once; its room none of the bot's other rooms; its
    `expose` and `expose_groups` configured posts and groups; its partner not the bot
    itself. Warns when two links serve one country (a partner post id offered by both
    is taken from the first)."""
    problems: list[Finding] = []
    warnings: list[Finding] = []
    other_rooms = _configured_rooms(data, posts)
    members_of = {name: _strings(group.get("posts")) for _, group in groups
                  if isinstance(name := group.get("name"), str)}
    group_names = list(members_of)
    bot = data.get("bot")
    own_user = bot.get("user_id") if isinstance(bot, dict) else None
    first_name: dict[str, int] = {}
    first_room: dict[str, int] = {}
    first_country: dict[str, int] = {}
    for index, link in links:
        name, room, partner = link.get("name"), link.get("room"), link.get("partner")
        label = f"{name} (links[{index}])" if isinstance(name, str) else f"links[{index}]"
        if isinstance(name, str):
            if name in first_name:
                problems.append((("links", index, "name"),
                                 f"duplicate link name {name}; already used by "
                                 f"links[{first_name[name]}]"))
            else:
                first_name[name] = index
        if isinstance(room, str):
            if room in first_room:
                problems.append((("links", index, "room"),
                                 f"room {room} is already the room of links"
                                 f"[{first_room[room]}]; each link needs its own room"))
            else:
                first_room[room] = index
            if room in other_rooms:
                problems.append((("links", index, "room"),
                                 f"room {room} is already {other_rooms[room]}; a link "
                                 "room holds only the two bots and their protocol"))
        if isinstance(partner, str) and partner == own_user:
            problems.append((("links", index, "partner"),
                             "the partner is this bot's own user id; name the other "
                             "side's bot"))
        for position, post_id in _indexed_strings(link.get("expose")):
            if post_id not in known_ids:
                problems.append((("links", index, "expose", position),
                                 _unknown_post(post_id, known_ids)))
        expose = link.get("expose")
        exposed = set(known_ids) if expose is None else set(_strings(expose))
        for position, group in _indexed_strings(link.get("expose_groups")):
            if group not in group_names:
                problems.append((("links", index, "expose_groups", position),
                                 _unknown_group(group, group_names)))
            elif not exposed.intersection(members_of[group]):
                warnings.append((("links", index, "expose_groups", position),
                                 f"no post of group {group} is exposed to {label}, so the "
                                 "partner learns nothing of it; add its posts to expose"))
        for position, country in _indexed_strings(link.get("countries")):
            if country in first_country and first_country[country] != index:
                warnings.append((("links", index, "countries", position),
                                 f"{country} is also served by links[{first_country[country]}]"
                                 f" ({label} too); a post id both partners publish is "
                                 "taken from the first link"))
            else:
                first_country.setdefault(country, index)
    return problems, warnings


def _configured_rooms(data: Mapping[str, Any],
                      posts: list[tuple[int, dict[str, Any]]]) -> dict[str, str]:
    """Room id → what the configuration already uses it for (posts' rooms and their
    supervisors' rooms, the admins' room, weekly report rooms)."""
    rooms: dict[str, str] = {}
    for index, post in posts:
        room, supervisors = post.get("room"), post.get("supervisors_room")
        if isinstance(room, str):
            rooms.setdefault(room, f"the room of {_post_label(posts, index)}")
        if isinstance(supervisors, str):
            rooms.setdefault(supervisors,
                             f"the supervisors' room of {_post_label(posts, index)}")
    access = data.get("access")
    admins_room = access.get("admins_room") if isinstance(access, dict) else None
    if isinstance(admins_room, str):
        rooms.setdefault(admins_room, "access.admins_room")
    reports = data.get("reports")
    weekly = reports.get("weekly") if isinstance(reports, dict) else None
    for index, entry in _mappings(weekly):
        if isinstance(room := entry.get("room"), str):
            rooms.setdefault(room, f"the room of reports.weekly[{index}]")
    return rooms


def _unknown_group(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name.lower(), known, n=1)
    if close:
        return f"unknown group {name!r}; did you mean {close[0]}?"
    return f"unknown group {name!r}; expected a configured group name"


def _unknown_post(post_id: str, known_ids: list[str], *, extra: str = "") -> str:
    by_upper = {known.upper(): known for known in known_ids}
    close = difflib.get_close_matches(post_id.upper(), list(by_upper), n=1)
    if close:
        return f"unknown post id {post_id!r}; did you mean {by_upper[close[0]]}?"
    return f"unknown post id {post_id!r}; expected a configured post id{extra}"


def _taken(field: str, value: str, first: int, posts: list[tuple[int, dict[str, Any]]]
           ) -> str:
    """Why a post's `id` or `room` may not be `value`: posts[`first`] has it already."""
    if field == "id":
        return f"duplicate post id {value}; already used by posts[{first}]"
    return (f"room {value} is already the room of {_post_label(posts, first)}; "
            "each post needs its own room")


def _post_label(posts: list[tuple[int, dict[str, Any]]], index: int) -> str:
    post = dict(posts)[index]
    post_id = post.get("id")
    return f"{post_id} (posts[{index}])" if isinstance(post_id, str) else f"posts[{index}]"


def _mappings(value: Any) -> list[tuple[int, dict[str, Any]]]:
    if not isinstance(value, list):
        return []
    return [(index, item) for index, item in enumerate(value) if isinstance(item, dict)]


def _strings(value: Any) -> list[str]:
    return [item for _, item in _indexed_strings(value)]


def _indexed_strings(value: Any) -> list[tuple[int, str]]:
    if not isinstance(value, list):
        return []
    return [(index, item) for index, item in enumerate(value) if isinstance(item, str)]
