"""aiohttp servers' own errors, logged without what the client sent.

aiohttp logs the requests it refuses before any handler runs (a malformed request line or header,
a broken body) with a traceback whose text quotes the offending bytes — an `Authorization` header
among them. The querynode and the proxy both serve aiohttp, so both install this one filter:
such a record becomes one warning naming the error class only.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

# what a client can make aiohttp raise with what it sends (and a connection it drops)
CLIENT_ERRORS: tuple[type[BaseException], ...] = (HttpProcessingError, RequestPayloadError, ConnectionError)


class RedactClientErrors(logging.Filter):
    """Turn aiohttp's tracebacks for malformed requests into a one-line warning without their text."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, CLIENT_ERRORS) or isinstance(exc and exc.__cause__, CLIENT_ERRORS):
            record.msg = "refused a malformed request (%s)"
            record.args = (type(exc).__name__,)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def redacted_logger(name: str) -> logging.Logger:
    """The logger `name` with the filter installed (once), for aiohttp's `AppRunner(logger=...)`."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactClientErrors) for f in logger.filters):
        logger.addFilter(RedactClientErrors())
    return logger
