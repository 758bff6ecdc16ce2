"""Operator configuration: one frozen object built from the command line and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vectorload_operator.core.model import NewDataSettings
from vectorload_operator.selectors import LabelSelector

DEFAULT_QUERYNODE_SELECTOR = "app.kubernetes.io/component=querynode"
TOKEN_ENV = "VECTORLOAD_TOKEN"  # noqa: S105 (the variable name, not a secret)
# loads queued or in progress per querynode (see executor.py for why 16 is safe)
DEFAULT_MAX_TASKS_PER_NODE = 16
FINALIZER = "vectorload.io/release"
CRD_GROUP = "vectorload.io"
CRD_VERSION = "v1alpha1"
CRD_PLURAL = "collectionloads"
CRD_KIND = "CollectionLoad"


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    querynode_selector: LabelSelector = field(
        default_factory=lambda: LabelSelector.parse(DEFAULT_QUERYNODE_SELECTOR)
    )
    token_file: Path | None = None
    metrics_port: int = 8080
    health_port: int = 8081
    bind_address: str = "0.0.0.0"
    max_tasks_per_node: int = DEFAULT_MAX_TASKS_PER_NODE
    dist_pull_interval: float = 0.5
    status_interval: float = 0.4
    catalog_interval: float = 0.2
    request_timeout: float = 2.0
    new_data: NewDataSettings = field(default_factory=NewDataSettings)
    delete_timeout: float = 120.0
    watch_server_timeout: int = 60
    watch_client_timeout: int = 75
    watch_connect_timeout: int = 10


class TokenSource:
    """The querynode control-API token: re-read from the mounted Secret file when it changes
    (Secret volumes are updated in place), else taken from the environment."""

    def __init__(self, path: Path | None, env: str | None = None) -> None:
        self._path = path
        self._env = env if env is not None else os.environ.get(TOKEN_ENV)
        self._mtime: float | None = None
        self._cached: str | None = None

    def get(self) -> str | None:
        if self._path is None:
            return self._env or None
        try:
            mtime = self._path.stat().st_mtime
        except OSError:
            return self._cached if self._cached is not None else (self._env or None)
        if mtime != self._mtime:
            self._cached = self._path.read_text(encoding="utf-8").strip() or None
            self._mtime = mtime
        return self._cached
