"""The one exception the command language raises for bad input.

A CommandError carries a message meant for the officer who typed the command.
The shell answers it in the sender's thread (see `commands.render.render_command_error`);
anything else that escapes a handler is a bug, logged with an incident id.
"""

from __future__ import annotations

from collections.abc import Mapping

from liaison.commands.texts import text


class CommandError(Exception):
    """Bad input, explained for a person: what is wrong, the usage line, near matches.

    `msg_id` and `params` record which catalogue message produced `message` (English),
    and `usage_id` which usage line, so the shell renders both again in the sender's
    language (`message_in`, `usage_in`).
    """

    def __init__(
        self,
        message: str,
        *,
        usage: str | None = None,
        suggestions: tuple[str, ...] = (),
        msg_id: str | None = None,
        params: Mapping[str, object] | None = None,
        usage_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage
        self.suggestions = suggestions
        self.msg_id = msg_id
        self.params: Mapping[str, object] = dict(params or {})
        self.usage_id = usage_id

    @classmethod
    def of(
        cls,
        msg_id: str,
        *,
        usage: str | None = None,
        suggestions: tuple[str, ...] = (),
        **params: object,
    ) -> CommandError:
        """Build the error from a message id in `commands.texts`; `message` is English."""
        return cls(
            text(msg_id, **params),
            usage=usage,
            suggestions=suggestions,
            msg_id=msg_id,
            params=params,
        )

    def with_usage(self, usage: str, usage_id: str | None = None) -> CommandError:
        """The same error with a usage line (`usage_id`: its message id), unless it
        already names one."""
        if self.usage is not None:
            return self
        return CommandError(
            self.message,
            usage=usage,
            suggestions=self.suggestions,
            msg_id=self.msg_id,
            params=self.params,
            usage_id=usage_id,
        )

    def message_in(self, language: str) -> str:
        """The message in `language` (as built, when it did not come from the catalogue)."""
        return text(self.msg_id, language, **self.params) if self.msg_id else self.message

    def usage_in(self, language: str) -> str | None:
        return text(self.usage_id, language) if self.usage_id else self.usage

    def __str__(self) -> str:
        return self.message
