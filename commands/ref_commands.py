"""Commands about one case (`!ack`, `!update`, `!close`, `!cancel`, `!status`):
`REF [text]`, or the case replied to."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from liaison.commands.case_draft import CaseLimits
from liaison.commands.errors import CommandError
from liaison.commands.identifiers import _ARABIC_DIGITS, parse_ref, strip_invisible
from liaison.commands.texts import text

_REF_LIKE_RE = re.compile(r"[^\W\d_]{1,4}-?\d{1,12}")


@dataclass(frozen=True)
class RefCommand:
    """A command about one case (`!close KZ-0042 seized 40 kg`): its reference and text."""

    ref: str
    text: str


TextRule = Literal["none", "optional", "required"]


def parse_ref_command(
    command: str,
    args: str,
    lines: Sequence[str],
    *,
    text_rule: TextRule,
    context_ref: str | None = None,
    max_chars: int = CaseLimits.max_chars,
) -> RefCommand:
    """Read `REF [text]` for `command`. Without a reference, `context_ref` (the case the
    message replies to, found by the shell) is used; a word that looks like a mistyped
    reference (`KZ-042`, a Cyrillic `К`) is an error, never silently replaced."""
    usage_id = f"command.{command}.usage"
    try:
        return _parse_ref_command(command, args, lines, text_rule=text_rule,
                                  context_ref=context_ref, max_chars=max_chars)
    except CommandError as error:
        raise error.with_usage(text(usage_id), usage_id) from None


def _parse_ref_command(
    command: str,
    args: str,
    lines: Sequence[str],
    *,
    text_rule: TextRule,
    context_ref: str | None,
    max_chars: int,
) -> RefCommand:
    length = len(args) + sum(len(line) + 1 for line in lines)
    if length > max_chars:
        raise CommandError.of("error.case_too_long", length=length, limit=max_chars)
    words = args.split(maxsplit=1)
    first = words[0] if words else ""
    cleaned = strip_invisible(first).translate(_ARABIC_DIGITS)
    if first and (_REF_LIKE_RE.fullmatch(cleaned) or context_ref is None):
        ref = parse_ref(first)
        remainder = [words[1] if len(words) > 1 else "", *lines]
    elif context_ref is not None:
        ref = parse_ref(context_ref)
        remainder = [args, *lines]
    else:
        raise CommandError.of("error.ref_missing")
    body = "\n".join(remainder).replace("\r\n", "\n").replace("\r", "\n").strip()
    if text_rule == "none" and body:
        raise CommandError.of("error.ref_extra", command="!" + command, extra=body.split()[0])
    if text_rule == "required" and not body:
        raise CommandError.of("error.update_empty")
    return RefCommand(ref=ref, text=body)


def parse_ack(args: str, lines: Sequence[str], *, context_ref: str | None = None) -> str:
    """`!ack REF` (or `!ack` in reply to a case, with `context_ref`)."""
    return parse_ref_command("ack", args, lines, text_rule="none", context_ref=context_ref).ref


def parse_cancel(args: str, lines: Sequence[str], *, context_ref: str | None = None) -> str:
    """`!cancel REF`."""
    return parse_ref_command("cancel", args, lines, text_rule="none",
                             context_ref=context_ref).ref


def parse_status(args: str, lines: Sequence[str], *, context_ref: str | None = None) -> str:
    """`!status REF`."""
    return parse_ref_command("status", args, lines, text_rule="none",
                             context_ref=context_ref).ref


def parse_close(
    args: str, lines: Sequence[str], *, context_ref: str | None = None
) -> RefCommand:
    """`!close REF [outcome]`; the outcome may run over several lines."""
    return parse_ref_command("close", args, lines, text_rule="optional", context_ref=context_ref)


def parse_update(
    args: str, lines: Sequence[str], *, context_ref: str | None = None
) -> RefCommand:
    """`!update REF text`; the text is required."""
    return parse_ref_command("update", args, lines, text_rule="required",
                             context_ref=context_ref)
