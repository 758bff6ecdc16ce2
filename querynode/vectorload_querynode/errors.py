"""The one error type handlers raise; the app turns it into `{"error": {"reason", "message"}}`."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered to the caller with an HTTP status, a CamelCase reason and a message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"reason": self.reason, "message": self.message}}
