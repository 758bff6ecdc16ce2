"""Fixtures for the storage tests: a small schema, matching segment inputs, a writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vectorload.storage.api import CollectionSchema
from vectorload.storage.writer import CollectionWriter
from vectorload_dev.testing.storage import segment_inputs, small_schema, writer_with_collection

MakeSchema = Callable[..., CollectionSchema]
MakeInputs = Callable[..., dict[str, Any]]


@pytest.fixture
def make_schema() -> MakeSchema:
    return small_schema


@pytest.fixture
def make_inputs() -> MakeInputs:
    return segment_inputs


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def writer(root: Path) -> CollectionWriter:
    return writer_with_collection(root)
