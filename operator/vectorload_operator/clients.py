"""Querynode clients for the operator: one `vectorload.client.QuerynodeClient` per querynode URL,
all over one shared aiohttp session, each call carrying the current control-API token.

The session has the operator's `--request-timeout` (total) and a connect timeout of at most one
second, so a node that does not answer is found out within one pass. The token is read from the
`TokenSource` each time a client is handed out, so a rotated Secret is picked up at once.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from vectorload.client import QuerynodeClient, QuerynodeError

__all__ = ["ClientFor", "QuerynodeClients", "QuerynodeError"]

MAX_CACHED = 1024

ClientFor = Callable[[str], QuerynodeClient]
"""url → the client of that querynode (what the puller, the catalog cache and the executor take)."""


class QuerynodeClients:
    """`clients(url)` → the `QuerynodeClient` of that querynode, with the current token."""

    def __init__(self, token: Callable[[], str | None], timeout: float = 2.0) -> None:
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 1.0))
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[str, QuerynodeClient] = {}

    def _shared_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=0, limit_per_host=16)
            )
            self._clients.clear()  # clients hold the session they were made with
        return self._session

    def __call__(self, url: str) -> QuerynodeClient:
        session = self._shared_session()
        client = self._clients.get(url)
        if client is None:
            if len(self._clients) >= MAX_CACHED:  # pods come and go: start over (clients are light)
                self._clients.clear()
            client = self._clients[url] = QuerynodeClient(url, session=session)
        client.token = client.data_token = self._token()
        return client

    async def close(self) -> None:
        self._clients.clear()
        if self._session is not None:
            await self._session.close()
