"""Bare names and hub ids: typos fail at once listing the names, bare hub ids (``gpt2``) still load.

No test reaches the network: the hub endpoint is a closed local port, or a small local server that
answers the one model look-up the way the hub does.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from langchain_toolprm.components import load_prm
from langchain_toolprm.models import ModelLoadError, load_causal_lm, resolve_model


def _record_downloads(monkeypatch: pytest.MonkeyPatch, snapshot: Path | None = None) -> list[str]:
    """Record the hub downloads asked for; each gives ``snapshot`` (a model folder), when there is one."""
    import huggingface_hub

    calls: list[str] = []

    def download(repo_id: str, **kwargs: object) -> str:
        calls.append(repo_id)
        if snapshot is None:
            raise OSError("no download in this test")
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    return calls


def _online(monkeypatch: pytest.MonkeyPatch, endpoint: str, hub_cache: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))


@pytest.fixture
def closed_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A hub endpoint on a local port that nothing listens on, and an empty hub cache."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    _online(monkeypatch, endpoint, tmp_path / "hub")
    return endpoint


class _Hub(http.server.BaseHTTPRequestHandler):
    """Answers ``GET /api/models/ID`` as the hub does: the model's info, or ``RepoNotFound``."""

    models: ClassVar[frozenset[str]] = frozenset({"gpt2"})
    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        repo_id = self.path.split("?")[0].removeprefix("/api/models/")
        self.asked.append(repo_id)
        found = repo_id in self.models
        body = json.dumps({"id": repo_id} if found else {"error": "Repository not found"}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        if not found:
            self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A local server in the hub's place that knows one bare model, ``gpt2``; yields the ids asked for."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _online(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "hub")
    _Hub.asked = []
    yield _Hub.asked
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("ref", "meant"), [("qwen2.5-coder", "qwen2.5-coder-0.5b"), ("smollm", "smollm2"),
                                            ("gpt-17", None)])
def test_unknown_short_name_fails_at_once_listing_the_names(ref: str, meant: str | None, tmp_path: Path,
                                                            closed_hub: str, monkeypatch: pytest.MonkeyPatch) -> None:
    downloads = _record_downloads(monkeypatch)
    with pytest.raises(ModelLoadError) as info:
        resolve_model(ref, cache_dir=tmp_path)
    message = str(info.value)
    assert repr(ref) in message and "'qwen2.5-coder-0.5b-instruct'" in message and "'smollm2-135m-instruct'" in message
    assert (f"Did you mean {meant!r}?" in message) if meant else "Did you mean" not in message
    assert f"Looking it up on the hub: the Hugging Face hub at {closed_hub} cannot be reached" in message
    assert "owner/name" in message and downloads == []


def test_a_bare_hub_id_loads_and_a_typo_is_refused(tmp_path: Path, local_hub: list[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"")
    downloads = _record_downloads(monkeypatch, snapshot)
    assert resolve_model("gpt2", cache_dir=tmp_path) == snapshot
    assert downloads == ["gpt2"]
    with pytest.raises(ModelLoadError, match=r"'smollm3' is not a packaged model name .*Did you mean 'smollm2'\?"
                       r".*Looking it up on the hub: the Hugging Face hub has no model of that id\."):
        resolve_model("smollm3", cache_dir=tmp_path)
    assert local_hub == ["gpt2", "smollm3"] and downloads == ["gpt2"]


def test_a_bare_hub_id_in_the_local_hub_cache_needs_no_hub(tmp_path: Path, closed_hub: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    commit = "0" * 40
    repo = Path(constants.HF_HUB_CACHE) / "models--gpt2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"")
    assert resolve_model("gpt2", cache_dir=tmp_path) == snapshot
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("gpt2", cache_dir=tmp_path) == snapshot


def test_offline_hub_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downloads = _record_downloads(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        resolve_model("SomeOrg/not-cached-model", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        load_causal_lm("SomeOrg/not-cached-model", cache_dir=tmp_path, device="cpu")
    with pytest.raises(ModelLoadError, match=r"'gpt-17' is not a packaged model name.*HF_HUB_OFFLINE is set"):
        resolve_model("gpt-17", cache_dir=tmp_path)
    assert downloads == []


def test_unreachable_hub_fails_at_once(tmp_path: Path, closed_hub: str, monkeypatch: pytest.MonkeyPatch) -> None:
    downloads = _record_downloads(monkeypatch)
    with pytest.raises(ModelLoadError, match=rf"hub at {closed_hub} cannot be reached"):
        resolve_model("SomeOrg/some-model", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match=rf"hub at {closed_hub} cannot be reached"):
        load_causal_lm("SomeOrg/some-model", cache_dir=tmp_path, device="cpu")
    with pytest.raises(ModelLoadError, match=rf"'rulez' is not a PRM name .*hub at {closed_hub} cannot be reached"):
        load_prm("rulez")
    assert downloads == []


def test_prm_typo_fails_at_once(local_hub: list[str]) -> None:
    with pytest.raises(ModelLoadError, match=r"'rulez' is not a PRM name .*Did you mean 'rules'\?"
                       r".*the Hugging Face hub has no model of that id"):
        load_prm("rulez")
    assert load_prm("rules") is not None and local_hub == ["rulez"]
