"""The one error type handlers raise; the app answers it as the wire's `ErrorBody`."""

from __future__ import annotations

from vectorload.wire import querynode as wire


class ApiError(Exception):
    """An error answered to the caller with an HTTP status, a CamelCase reason and a message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, dict[str, str]]:
        """The error body as plain JSON values."""
        value = wire.ErrorBody(error=wire.ErrorDetail(reason=self.reason, message=self.message))
        return dict(wire.to_builtins(value))


ECHO_LIMIT = 200  # characters of client input an error message may show


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """Client input as shown in an error message: at most `limit` characters."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"
