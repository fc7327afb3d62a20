"""When to try sending a message again, and when to give up: the sender's decision,
kept apart from the sending so it can be read and tested on its own.
"""

from __future__ import annotations

PERMANENT_AFTER_ATTEMPTS = 5
"""An error no retry can fix (the room is gone, the bot may not write there) is still
tried this many times in all, in case the room comes back."""
MIN_RETRY_AFTER_MS = 100
"""A homeserver's `retry_after_ms` is honoured, but never below this."""


def retry_delay_ms(attempts: int, *, permanent: bool, retry_after_ms: int | None,
                   backoff_initial_ms: int, backoff_max_ms: int,
                   max_attempts: int | None) -> int | None:
    """After the `attempts`-th failed try: how long to wait before the next one, or None
    to give up (an error no retry can fix, tried `PERMANENT_AFTER_ATTEMPTS` times; or
    the configured `max_attempts` reached). The wait is the homeserver's `retry_after_ms`
    when it gave one, else an exponential backoff capped at `backoff_max_ms`."""
    if (permanent and attempts >= PERMANENT_AFTER_ATTEMPTS) or (
            max_attempts is not None and attempts >= max_attempts):
        return None
    if retry_after_ms is not None:
        return max(retry_after_ms, MIN_RETRY_AFTER_MS)
    backoff: int = backoff_initial_ms * 2 ** min(attempts - 1, 16)
    return min(backoff, backoff_max_ms)
