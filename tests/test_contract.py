"""A daemon that answers another shape than this petwatch expects (another version) is named in
one line, with what to do, by the CLI and by both clients; the request models of the endpoint
table send what the daemon validates."""

from __future__ import annotations

import asyncio
import json
import os
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from tests.conftest import run_cli

from petwatch import __version__, endpoints, locations
from petwatch.client import AsyncDaemonClient, DaemonClient
from petwatch.endpoints import SearchRequest
from petwatch.errors import PetwatchError

OLD_DAEMON = "0.0.1"
NOT_UTF8 = os.fsdecode(b"/photos/caf\xe9.jpg")  # a Latin-1 name: a lone surrogate in a str


class _OtherDaemon(BaseHTTPRequestHandler):
    """An older daemon: its /status lacks fields this petwatch needs, its /stats a type."""

    protocol_version = "HTTP/1.1"
    replies = {
        endpoints.STATUS.path: {"state": "idle", "indexed": 3, "version": OLD_DAEMON},
        endpoints.STATS.path: {"photos": "many"},
        endpoints.FAILURES.path: [{"path": NOT_UTF8, "reason": "truncated", "size": 7}],  # as it should be
    }

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps(self.replies.get(self.path, {"error": "unknown"})).encode()
        self.send_response(200 if self.path in self.replies else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):  # http.server wants a (host, port) client address
        request, _ = super().get_request()
        return request, ("local", 0)


@pytest.fixture
def other_daemon(home) -> Iterator[Path]:
    socket = locations.socket_path()
    socket.parent.mkdir(parents=True, exist_ok=True)
    server = _UnixHTTPServer(str(socket), _OtherDaemon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield socket
    server.shutdown()
    server.server_close()
    os.unlink(socket)


def _says_what_to_do(message: str, endpoint: endpoints.Endpoint) -> None:
    assert "\n" not in message
    assert f"the daemon (petwatch {OLD_DAEMON}) and this petwatch ({__version__}) disagree" in message
    assert f"{endpoint.method} {endpoint.path}" in message
    assert "systemctl --user restart petwatch" in message and "petwatch daemon" in message


def test_a_reply_of_another_shape_names_both_versions_and_what_to_do(other_daemon):
    with DaemonClient(other_daemon) as client:
        with pytest.raises(PetwatchError) as status:
            client.status()
        _says_what_to_do(str(status.value), endpoints.STATUS)
        with pytest.raises(PetwatchError) as stats:
            client.stats()
        _says_what_to_do(str(stats.value), endpoints.STATS)
        assert "photos" in str(stats.value)  # the field that differs

    async def ask() -> str:
        client = AsyncDaemonClient(other_daemon)
        try:
            await client.stats()
        except PetwatchError as error:
            return str(error)
        finally:
            await client.aclose()
        return "no error"

    _says_what_to_do(asyncio.run(ask()), endpoints.STATS)


def test_a_reply_of_the_right_shape_comes_as_sent_file_names_that_are_not_utf8_too(other_daemon):
    """The daemon escapes such a name's surrogate (\\udce9): the check takes it, as json.loads does."""
    with DaemonClient(other_daemon) as client:
        assert client.failures() == [{"path": NOT_UTF8, "reason": "truncated", "size": 7}]


def test_the_cli_says_it_in_one_line(other_daemon):
    done = run_cli("status")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("petwatch: the daemon"), done.stderr
    _says_what_to_do(lines[0], endpoints.STATUS)


def test_a_body_is_sent_as_its_model_validates_it():
    """Paths go encoded and come back as given; a None is left out (the daemon decides)."""
    odd = NOT_UTF8  # sent as b64:
    body = endpoints.SEARCH.body(image=odd, top_k=None, min_score=0.2, species=["dog"], stacks=False)
    assert json.loads(json.dumps(body)) == body and body["image"].startswith("b64:") and "top_k" not in body
    request = SearchRequest.model_validate(body)
    assert (request.image, request.top_k, request.min_score, request.stacks) == (odd, None, 0.2, False)
    with pytest.raises(TypeError, match="colour"):
        endpoints.SEARCH.body(image=odd, colour="red")
