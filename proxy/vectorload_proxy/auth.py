"""Milvus tokens, checked against the credentials file (a mounted Secret).

What clients send: pymilvus and the other SDKs put base64(`user:password`) — or base64 of an API
key — in the gRPC metadata `authorization` (MilvusClient(token="root:Milvus") sends exactly that);
REST clients send `Authorization: Bearer root:Milvus` (or `Basic base64(user:password)`).

The file holds one credential per line: `user:password`, or an API key (a line without `:`);
blank lines and `#` comments are ignored. It is re-read when it changes (a Secret volume is
updated in place), checked at most once a second; a file that cannot be read keeps the last good
credentials (and is logged). Every comparison is constant-time (`hmac.compare_digest` over
SHA-256 digests, so neither the length nor the position of a mismatch shows) and goes over every
entry. Tokens and passwords are never logged — only the user name of a failed password check,
and only when it is a configured user's (a client that sends an API key followed by a colon would
otherwise put the key in the log).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import AUTH_BAD_API_KEY, AUTH_BAD_FORMAT, AUTH_BAD_PASSWORD, AUTH_MISSING, echo

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
MAX_TOKEN_CHARS = 8192
HTTP_WHITESPACE = b" \t"  # what HTTP (and gRPC metadata) allows around a value
HTTP_WHITESPACE_TEXT = " \t"


@dataclass(frozen=True)
class Credentials:
    passwords: tuple[bytes, ...]  # sha256 of "user:password"
    api_keys: tuple[bytes, ...]  # sha256 of the key
    users: frozenset[str] = frozenset()  # the user names (a failed check logs only these)

    @classmethod
    def parse(cls, text: str) -> Credentials:
        passwords: list[bytes] = []
        keys: list[bytes] = []
        users: set[str] = set()
        for line in text.splitlines():
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            (passwords if ":" in entry else keys).append(_digest(entry))
            if ":" in entry:
                users.add(entry.split(":", 1)[0])
        return cls(tuple(passwords), tuple(keys), frozenset(users))

    @property
    def empty(self) -> bool:
        return not self.passwords and not self.api_keys


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def _matches(candidate: bytes, entries: tuple[bytes, ...]) -> bool:
    found = False
    for entry in entries:  # every entry, whatever matched: constant work per check
        found |= hmac.compare_digest(candidate, entry)
    return found


class AuthError(Exception):
    """A refused token; `message` is Milvus' text for the gRPC status."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Authenticator:
    """Checks tokens; `enabled` False (`--no-auth`) accepts everything."""

    def __init__(
        self,
        path: Path | None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.enabled = enabled
        self._clock = clock
        self._lock = threading.Lock()
        self._creds = Credentials((), ())
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        if enabled:
            if path is None:
                raise ValueError("authentication needs a credentials file (--credentials-file) or --no-auth")
            self._reload(force=True)
            if self._creds.empty:
                raise ValueError(f"credentials file {path} holds no credential")

    def _reload(self, force: bool = False) -> None:
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if not force and stamp == self._stamp:
                return
            creds = Credentials.parse(self.path.read_text(encoding="utf-8", errors="surrogateescape"))
        except OSError as exc:
            if force:
                raise ValueError(f"credentials file {self.path} cannot be read: {exc.strerror}") from exc
            log.warning(
                "credentials file %s cannot be read (%s); keeping the last credentials",
                self.path,
                exc.strerror,
            )
            return
        if creds.empty and not force:
            log.warning(
                "credentials file %s holds no credential now; keeping the last credentials", self.path
            )
            return
        with self._lock:
            self._creds = creds
            self._stamp = stamp
        if not force:
            log.info(
                "credentials file %s re-read (%d passwords, %d API keys)",
                self.path,
                len(creds.passwords),
                len(creds.api_keys),
            )

    def _current(self) -> Credentials:
        now = self._clock()
        if now - self._checked >= CHECK_INTERVAL:
            self._checked = now
            self._reload()
        return self._creds

    def check_raw(self, token: str) -> str:
        """Check a decoded token (`user:password` or an API key); the user name when it is
        valid, else AuthError with Milvus' message."""
        if not self.enabled:
            return "root"
        creds = self._current()
        if ":" in token:
            user = token.split(":", 1)[0]
            if _matches(_digest(token), creds.passwords):
                return user
            if user in creds.users:
                log.warning("authentication failed for user %s", echo(user, 64))
            else:  # what stands before the colon may be anything, a secret too (an API key + ":")
                log.warning("authentication failed for a user name the credentials file does not hold")
            raise AuthError(AUTH_BAD_PASSWORD)
        if _matches(_digest(token), creds.api_keys):
            return "api-key"
        log.warning("authentication failed: API key not valid")
        raise AuthError(AUTH_BAD_API_KEY)

    def check_grpc(self, metadata: dict[str, str | bytes]) -> str:
        """Check gRPC metadata (`authorization`: base64 of the token)."""
        if not self.enabled:
            return "root"
        value = metadata.get("authorization")
        if value is None:
            raise AuthError(AUTH_MISSING)
        raw = value.encode("latin-1", "replace") if isinstance(value, str) else bytes(value)
        if len(raw) > MAX_TOKEN_CHARS:
            raise AuthError(AUTH_BAD_FORMAT)
        return self.check_raw(_decode_b64(raw.strip(HTTP_WHITESPACE)))

    def check_http(self, header: str | None) -> str:
        """Check an HTTP `Authorization` header (`Bearer <token>` or `Basic base64(user:password)`)."""
        if not self.enabled:
            return "root"
        text = header.strip(HTTP_WHITESPACE_TEXT) if header is not None else ""
        if not text:
            raise AuthError(AUTH_MISSING)
        if len(header or "") > MAX_TOKEN_CHARS:
            raise AuthError(AUTH_BAD_FORMAT)
        # only the spaces and tabs HTTP allows around a value are removed: str.strip() would also
        # remove NBSP, vertical tabs, U+3000 ..., so a token with them around it would pass
        scheme, _, value = text.partition(" ")
        value = value.strip(HTTP_WHITESPACE_TEXT)
        if scheme.lower() == "bearer" and value:
            return self.check_raw(value)
        if scheme.lower() == "basic" and value:
            return self.check_raw(_decode_b64(value.encode("latin-1", "replace")))
        raise AuthError(AUTH_BAD_FORMAT)


def _decode_b64(raw: bytes) -> str:
    """The UTF-8 text of a standard base64 value, which must be the canonical encoding (padded,
    no stray bits before the padding): `cm9vdDpNaWx2dXN=` decodes to the same bytes as
    `cm9vdDpNaWx2dXM=` but is not what any client sends, so it is not the configured token."""
    try:
        decoded = base64.b64decode(raw, validate=True)
        token = decoded.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise AuthError(AUTH_BAD_FORMAT) from None
    if base64.b64encode(decoded) != raw:
        raise AuthError(AUTH_BAD_FORMAT)
    return token
