"""Small pure pieces: byte quantities, memory limit detection, auth, settings, request parsing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vectorload.wire import querynode as wire
from vectorload_querynode import auth
from vectorload_querynode.errors import ApiError
from vectorload_querynode.memory import auto_memory_limit, cgroup_memory_limit, parse_bytes, resident_bytes
from vectorload_querynode.requests import LoadRequest, ReleaseRequest, SearchRequest, decode_body
from vectorload_querynode.settings import SettingsError, parse_settings


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1024", 1024),
        ("512Mi", 512 * 2**20),
        ("1Gi", 2**30),
        ("2G", 2 * 10**9),
        ("300MB", 300 * 10**6),
        ("1.5Ki", 1536),
    ],
)
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-1", "0", "1Xi", "1 2"])
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_memory_limit_from_cgroup_and_env(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_memory_limit(tmp_path) is None
    assert auto_memory_limit({"VECTORLOAD_MEMORY_LIMIT": "1Gi"}, tmp_path) == 2**30
    (tmp_path / "memory.max").write_text("536870912\n")
    assert auto_memory_limit({}, tmp_path) == 512 * 2**20
    assert auto_memory_limit({"VECTORLOAD_MEMORY_LIMIT": "256Mi"}, tmp_path) == 256 * 2**20
    assert auto_memory_limit({}, tmp_path / "missing") > 0  # total RAM


def test_resident_bytes_of_this_process() -> None:
    assert resident_bytes() > 10 * 2**20


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic c2VjcmV0",
        "Bearer secreT",
        "Bearer secret2",
        "secret",
        "Bearer  \u00e9",
    ],
)
def test_auth_rejects_without_details(header: str | None) -> None:
    with pytest.raises(ApiError) as info:
        auth.check("secret", header)
    assert info.value.status == 401
    assert info.value.body() == {"error": {"reason": "Unauthorized", "message": "unauthorized"}}


def test_auth_accepts_and_open_mode() -> None:
    auth.check("secret", "Bearer secret")
    auth.check("secret", "bearer secret")
    auth.check(None, None)


def test_settings_refuse_to_start_without_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VECTORLOAD_TOKEN", raising=False)
    monkeypatch.delenv("VECTORLOAD_DATA_TOKEN", raising=False)
    with pytest.raises(SettingsError, match="token"):
        parse_settings(["--root", str(tmp_path), "--memory-limit", "1Gi"])
    # an open control API still leaves the data API closed unless it is opened explicitly
    with pytest.raises(SettingsError, match=r"data API would accept no token.*--open-data-api"):
        parse_settings(["--root", str(tmp_path), "--memory-limit", "1Gi", "--insecure-no-auth"])
    insecure = ["--root", str(tmp_path), "--memory-limit", "1Gi", "--insecure-no-auth", "--open-data-api"]
    assert parse_settings(insecure).token is None
    assert parse_settings(insecure).open_data_api
    monkeypatch.setenv("VECTORLOAD_TOKEN", "from-env")
    assert parse_settings(["--root", str(tmp_path), "--memory-limit", "1Gi"]).token == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert parse_settings(["--root", str(tmp_path), "--token-file", str(token_file)]).token == "from-file"
    token_file.write_text("")
    with pytest.raises(SettingsError, match="empty"):
        parse_settings(["--root", str(tmp_path), "--token-file", str(token_file)])
    with pytest.raises(SettingsError, match="threshold"):
        parse_settings(["--root", str(tmp_path), "--threshold", "1.5"])


@pytest.mark.parametrize(
    "body",
    [
        {"collection": "../etc", "partition": "p", "segments": []},
        {"collection": "a/b", "partition": "p", "segments": []},
        {"collection": "a\x00b", "partition": "p", "segments": []},
        {"collection": "book", "partition": "..", "segments": []},
        {"collection": "book", "partition": "p", "segments": ["../../x"]},
        {"collection": "book", "partition": "p", "segments": ["a/b"]},
        {"collection": "book", "partition": "p", "segments": [], "fields": ["x/y"]},
        {"collection": 5, "partition": "p", "segments": []},
    ],
)
def test_invalid_names(body: dict[str, object]) -> None:
    with pytest.raises(ApiError) as info:
        LoadRequest.parse(body)
    assert (info.value.status, info.value.reason) == (400, "InvalidName")


def test_release_request_shapes() -> None:
    assert ReleaseRequest.parse({"collection": "c", "segments": None}).targets is None
    req = ReleaseRequest.parse({"collection": "c", "segments": [{"partition": "p", "segment": "s-1"}]})
    assert req.targets == [("p", "s-1")]
    with pytest.raises(ApiError):
        ReleaseRequest.parse({"collection": "c", "segments": ["s-1"]})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"collection": "c", "vectors": []}, "InvalidRequest"),
        ({"collection": "c", "vectors": [[1, 2], [1]]}, "InvalidVectors"),
        ({"collection": "c", "vectors": [[1, "a"]]}, "InvalidVectors"),
        ({"collection": "c", "vectors": [[1, True]]}, "InvalidVectors"),
        ({"collection": "c", "vectors": [[1e39]]}, "InvalidVectors"),
        ({"collection": "c", "vectors": [[1, None]]}, "InvalidVectors"),
        ({"collection": "c", "vectors": [[1, {"x": 1}]]}, "InvalidVectors"),
        ({"collection": "c", "vectors": [[1, [2]]]}, "InvalidVectors"),
        ({"collection": "c", "vectors": [[1, float("nan")]]}, "InvalidVectors"),
        ({"collection": "c", "vectors": [[float("-inf")]]}, "InvalidVectors"),
        ({"collection": "c", "vectors": [[10**400]]}, "InvalidVectors"),
        ({"collection": "c", "vectors": [[1]], "topK": 0}, "InvalidRequest"),
        ({"collection": "c", "vectors": [[1]], "topK": 16385}, "InvalidRequest"),
        ({"collection": "c", "vectors": [[1]], "topK": "5"}, "InvalidRequest"),
        ({"collection": "c", "vectors": [[1]], "ef": 0}, "InvalidRequest"),
        ({"collection": "c", "vectors": [[1]], "filter": 3}, "InvalidFilter"),
        ({"collection": "c", "vectors": [[1]], "outputFields": "a"}, "InvalidRequest"),
    ],
)
def test_search_request_validation(body: dict[str, object], reason: str) -> None:
    with pytest.raises(ApiError) as info:
        SearchRequest.parse(body)
    assert (info.value.status, info.value.reason) == (400, reason)


def test_search_request_keeps_vector_values() -> None:
    req = SearchRequest.parse({"collection": "c", "vectors": [[1, -2.5, 3e-3], [0, 0.5, 7]]})
    assert req.vectors.tolist() == np.array([[1, -2.5, 3e-3], [0, 0.5, 7]], dtype=np.float32).tolist()


def test_search_request_accepts_one_bare_vector() -> None:
    req = SearchRequest.parse({"collection": "c", "vectors": [1, 2, 3]})
    assert req.vectors.shape == (1, 3) and req.vectors.dtype == np.float32 and req.top_k == 10


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b"[1]", b"nul"])
def test_parse_json_errors(raw: bytes) -> None:
    with pytest.raises(ApiError) as info:
        decode_body(raw, wire.SearchRequest)
    assert info.value.status == 400
    assert info.value.reason in {"InvalidJSON", "InvalidRequest"}
    assert info.value.message
    json.dumps(info.value.body())
