"""List, then watch from the list's resourceVersion; on 410 Gone or a broken stream, list again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import aiohttp

from vectorload_dev.kubelet.api import ApiClient, ApiError, Json

log = logging.getLogger("vectorload.kubelet.informer")

OnList = Callable[[list[Json]], Awaitable[None]]
OnEvent = Callable[[str, Json], Awaitable[None]]


async def list_watch(
    api: ApiClient, path: str, params: Mapping[str, str], on_list: OnList, on_event: OnEvent, *, name: str
) -> None:
    """Runs until cancelled. `on_list` gets the full set after every (re)list, `on_event` each
    ADDED / MODIFIED / DELETED event in between."""
    delay = 0.5
    while True:
        try:
            listing = await api.get(path, params)
            version = str(listing["metadata"]["resourceVersion"])
            await on_list(list(listing.get("items") or []))
            delay = 0.5
            while True:
                query = {**params, "resourceVersion": version, "timeoutSeconds": "290"}
                async for event in api.watch(path, query):
                    obj: Json = event["object"]
                    version = str(obj["metadata"]["resourceVersion"])
                    if event["type"] != "BOOKMARK":
                        await on_event(str(event["type"]), obj)
        except ApiError as exc:
            if exc.status == 410:
                log.info("%s watch expired (410 Gone): listing again", name)
                continue
            log.warning("%s watch failed: %s", name, exc)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
            log.warning("%s watch broke: %s", name, exc or type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
