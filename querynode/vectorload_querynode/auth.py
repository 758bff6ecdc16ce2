"""Bearer-token checks (constant-time); a failure answers 401 with no details."""

from __future__ import annotations

import hmac

from .errors import ApiError

UNAUTHORIZED = ApiError(401, "Unauthorized", "unauthorized")


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def check(expected: str | None, header: str | None) -> None:
    """Raise 401 unless `header` carries `expected` (no token configured = open)."""
    if expected is None:
        return
    given = bearer_token(header)
    if given is None or not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise ApiError(UNAUTHORIZED.status, UNAUTHORIZED.reason, UNAUTHORIZED.message)
