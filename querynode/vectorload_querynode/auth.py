"""Bearer-token checks (constant-time); a failure answers 401 with no details.

The header is never logged or echoed, whatever it holds: aiohttp hands over a header that is not
valid UTF-8 as text with surrogate escapes, which compares (as the bytes it was) and fails like any
other wrong token instead of raising.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from .errors import ApiError

UNAUTHORIZED = ApiError(401, "Unauthorized", "unauthorized")


def _unauthorized() -> ApiError:
    return ApiError(UNAUTHORIZED.status, UNAUTHORIZED.reason, UNAUTHORIZED.message)


# the only whitespace HTTP allows around a header value and between scheme and credentials
# (RFC 9110 OWS); str.strip() would also drop NBSP, U+3000, \x0b, \x1c-\x1f, U+0085, U+2028 —
# and accept "<token>\u00a0" as the token (found by tests/fuzz)
HTTP_WHITESPACE = " \t"


def bearer_token(header: str | None) -> str | None:
    """The credentials of `Bearer <token>` (the scheme in any case, RFC 7235), stripped of
    spaces and tabs only; None for anything else."""
    if not header:
        return None
    scheme, _, value = header.strip(HTTP_WHITESPACE).partition(" ")
    value = value.strip(HTTP_WHITESPACE)
    if scheme.lower() != "bearer" or not value:
        return None
    return value


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def check_any(accepted: Iterable[str], header: str | None) -> None:
    """Raise 401 unless `header` carries one of the `accepted` tokens (each compared in constant
    time, all of them compared every time)."""
    given = bearer_token(header)
    if given is None:
        raise _unauthorized()
    try:
        raw = _bytes(given)
    except UnicodeEncodeError:
        raise _unauthorized() from None
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(raw, _bytes(token))
    if not matched:
        raise _unauthorized()


def check(expected: str | None, header: str | None) -> None:
    """Raise 401 unless `header` carries `expected` (no token configured = open)."""
    if expected is None:
        return
    check_any((expected,), header)
