"""The Milvus server tier (`pytest -m server tests/server`): a real Milvus standalone (the
`milvus` test extra, 2.3.5) for the session, in this run's loopback-only network namespace
(tests/conftest.py), data in a temp dir, stopped at the end.

Tests here run against it by overriding ``home``: the same home, with PETWATCH_MILVUS_URI,
PETWATCH_MILVUS_TOKEN and a collection of the test's own. The Lite side of a shared test is
the original in tests/; tests written for both take ``milvus_backend``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from tests.server import netns
from tests.server.standalone import MilvusStandalone


@pytest.fixture(scope="session")
def milvus_remote():
    """The running server (tests that stop it start it again; ``server`` checks)."""
    if netns.problem():
        pytest.skip(f"Milvus server tier: {netns.problem()}")
    try:
        import milvus  # noqa: F401
    except ImportError:
        pytest.skip("Milvus server tier: the `milvus` package is missing (pip install -e '.[test]')")
    base = Path(tempfile.mkdtemp(prefix="pw-milvus-", dir="/tmp"))
    server = MilvusStandalone(base)
    started = time.monotonic()
    server.start()
    print(f"Milvus standalone up in {time.monotonic() - started:.1f}s at {server.uri} ({base})")
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def server(milvus_remote):
    """The session's server, running now and again after the test (which may stop it)."""
    if not milvus_remote.running:
        milvus_remote.start()
    yield milvus_remote
    if not milvus_remote.running:
        milvus_remote.start()


def _use_server(monkeypatch, server: MilvusStandalone) -> str:
    collection = f"t_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("PETWATCH_MILVUS_URI", server.uri)
    monkeypatch.setenv("PETWATCH_MILVUS_TOKEN", server.token)
    monkeypatch.setenv("PETWATCH_COLLECTION", collection)
    return collection


def _drop(server: MilvusStandalone, collection: str) -> None:
    from petwatch.milvus_lite import milvus_client_class

    if not server.running:
        return
    client = milvus_client_class()(uri=server.uri, token=server.token)
    try:
        client.drop_collection(collection, timeout=30)
    finally:
        client.close()


@pytest.fixture
def home(home, request, monkeypatch):
    """tests/conftest.py's home, on the Milvus server with a collection of this test's own
    (on the local DB for a test's "lite" case of ``milvus_backend``)."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("milvus_backend") == "lite":
        yield home
        return
    server = request.getfixturevalue("server")
    collection = _use_server(monkeypatch, server)
    yield home
    _drop(server, collection)


@pytest.fixture(params=["lite", "server"])
def milvus_backend(request, home):
    """For tests written for both engines: "lite" (the local DB) or "server"."""
    return request.param
