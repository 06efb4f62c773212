"""A Milvus server behind a proxy: each call bounded in time, reads as fresh as they need to
be, a collection the server dropped from memory loaded again, and a server that is down or
misaddressed told in one line that names the setting to fix."""

from __future__ import annotations

import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator

from petwatch.errors import PetwatchError, StoreUnavailable

log = logging.getLogger(__name__)

# Seconds one server call may take, retries included. An int: pymilvus bounds its retries only
# by an int timeout, else it makes 75 of them (3.5 min against a server that is down).
SERVER_TIMEOUT_S = 10
SERVER_DOWN_TIMEOUT_S = 2  # while it is known to be down: fail fast, the clock keeps asking
SERVER_LOAD_TIMEOUT_S = 300  # loading (or indexing) a large collection takes minutes
# Reads are Bounded (served from what the server has synced: no wait), except within
# SERVER_FRESH_S of a write of ours or of opening, when they are Strong (the server waits for
# its next sync tick, ~0.2 s, so that read sees every write made before it was sent). So a
# photo the daemon just stored, or a row it just deleted, shows in the next search, and a
# search with no write of ours in the last seconds does not wait: Strong on every search,
# petwatch's old level, cost p50 196 ms against 4.5 ms. Bounded sees everything older than
# the server's common.gracefulTime (5 s by default), hence twice that. (Session, pymilvus's
# own read-your-writes, was tried and is not enough on Milvus 2.3: its deletes by filter
# return no timestamp, and a search right after one still found the deleted rows.)
SERVER_FRESH_S = 10.0
_SERVER_READS = frozenset({"search", "query"})
_SERVER_WRITES = frozenset({"upsert", "delete"})
_SERVER_SLOW = frozenset({"load_collection", "create_collection", "create_index"})
_SERVER_RPCS = (
    _SERVER_READS
    | _SERVER_SLOW
    | {
        "has_collection",
        "describe_collection",
        "release_collection",
        "list_indexes",
        "describe_index",
        "drop_index",
        "drop_collection",
        "upsert",
        "delete",
        "query_iterator",
        "get_load_state",
        "get_server_version",
    }
)


class ServerClient:
    """MilvusClient for a server: each call bounded in time, reads as fresh as they need to be,
    a collection the server has not loaded (as after its restart) loaded and the call retried
    once, and a server that does not answer raised as StoreUnavailable, in one line.
    gRPC reconnects by itself once the server is back."""

    def __init__(self, client, uri: str) -> None:
        self._client = client
        self.uri = uri
        self.down: str | None = None  # why the last call found the server gone, until one succeeds
        # Opening counts as a write: another process (`petwatch index`) may have just written.
        self._wrote_at = time.monotonic()

    @classmethod
    def connect(cls, client_class, uri: str, token: str | None) -> ServerClient:
        problem = _probe(uri)
        if problem:
            raise PetwatchError(problem)
        # Every failure reaches us and is reported once, in one line: pymilvus's own ERROR
        # lines for it (several per failed call, on stderr) would only repeat it. pymilvus gives
        # its milvus_client logger a level of its own, so that one is set too.
        for name in ("pymilvus", "pymilvus.milvus_client"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        try:
            client = client_class(uri=uri, token=token or "", timeout=SERVER_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - pymilvus wraps errors inconsistently
            raise PetwatchError(_connect_error(uri, error)) from None
        return cls(client, uri)

    def __getattr__(self, name: str):
        method = getattr(self._client, name)
        if name not in _SERVER_RPCS:
            return method

        def call(*args, **kwargs):
            kwargs.setdefault(
                "timeout",
                SERVER_LOAD_TIMEOUT_S
                if name in _SERVER_SLOW
                else SERVER_DOWN_TIMEOUT_S
                if self.down
                else SERVER_TIMEOUT_S,
            )
            if name in _SERVER_READS:
                kwargs.setdefault("consistency_level", self._read_level())
            try:
                try:
                    result = method(*args, **kwargs)
                except Exception as error:
                    if name in _SERVER_SLOW or not _not_loaded(error):
                        raise
                    self._load(args[0] if args else kwargs["collection_name"])
                    result = method(*args, **kwargs)
            except Exception as error:
                if not _unreachable(error):
                    raise
                self.down = _down_message(self.uri, error)
                raise StoreUnavailable(self.down) from None
            finally:
                if name in _SERVER_WRITES:  # failed ones too: part of it may have been applied
                    self._wrote_at = time.monotonic()
            self.down = None
            return result

        return call

    def _read_level(self) -> str:
        return "Strong" if time.monotonic() - self._wrote_at < SERVER_FRESH_S else "Bounded"

    def _load(self, collection: str) -> None:
        log.info("Milvus at %s had not loaded %s (restarted?): loading it", self.uri, collection)
        self._client.load_collection(collection, timeout=SERVER_LOAD_TIMEOUT_S)

    def problem(self, collection: str) -> str | None:
        """None when the server answers with ``collection`` loaded (loaded here if it came
        back without it), else why not, in one line."""
        try:
            state = str(self._client.get_load_state(collection, timeout=SERVER_DOWN_TIMEOUT_S)["state"])
            if "Loaded" not in state:  # LoadState.Loading/NotLoad: the server restarted
                self._load(collection)
                # Then wait here, not in a user's search, until it serves reads again: a
                # restarted server replays its log first (23 s for a few rows, measured).
                self._client.query(
                    collection,
                    filter="pk != 0",
                    output_fields=["pk"],
                    limit=1,
                    consistency_level="Strong",
                    timeout=SERVER_LOAD_TIMEOUT_S,
                )
        except Exception as error:  # noqa: BLE001 - any failure is the answer
            self.down = (
                _down_message(self.uri, error)
                if _unreachable(error)
                else (f"Milvus at {self.uri} cannot serve {collection!r}: {_reason(error)}")
            )
            return self.down
        self.down = None
        return None


def _probe(uri: str) -> str | None:
    """Why no server can be talking at ``uri`` (bad URI, unknown host, nothing listening, TLS
    asked of a plain server), found in a second or less, in one line naming the setting to fix;
    else None. pymilvus takes 10 s to say only 'Fail connecting to server'."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        if parts.scheme in ("tcp", "grpc", "grpcs", "unix"):
            return None  # other forms pymilvus takes: left to it
        return (
            f"milvus_uri {uri!r} is not a Milvus server address: set it to http://HOST:19530 "
            f"(or the https:// address of Zilliz Cloud), or unset it for the local DB"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 19530)
    except ValueError:
        return f"milvus_uri {uri!r} has a bad port: set it to http://HOST:19530"
    where = f"{parts.hostname}:{port}"
    try:
        address = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)[0][4]
    except socket.gaierror as error:
        return f"cannot find the Milvus host {parts.hostname!r} ({error.strerror}): check milvus_uri ({uri})"
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(address)
            if parts.scheme == "https":
                context = ssl.create_default_context()
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # only: TLS at all?
                try:
                    context.wrap_socket(sock, server_hostname=parts.hostname).close()
                except (ssl.SSLError, ConnectionError) as error:
                    return (
                        f"Milvus at {where} does not speak TLS ({error.__class__.__name__}): "
                        f"use http:// in milvus_uri for a plain server ({uri})"
                    )
    except ConnectionRefusedError:
        return f"nothing listens at {where} (connection refused): start the Milvus server, or fix milvus_uri ({uri})"
    except TimeoutError:
        return f"no answer from {where} in 5 s: check milvus_uri ({uri}) and that the server is up"
    except OSError as error:
        return f"cannot reach {where} ({error.strerror or error}): check milvus_uri ({uri})"
    return None


def _errors(error: BaseException) -> Iterator[BaseException]:
    cause: BaseException | None = error
    seen = 0
    while cause is not None and seen < 8:
        yield cause
        cause, seen = cause.__cause__ or cause.__context__, seen + 1


def _grpc_code(error: BaseException) -> str | None:
    """The gRPC status (UNAVAILABLE, ...) behind a pymilvus error, if it came from one."""
    for cause in _errors(error):
        code = getattr(cause, "code", None)
        if callable(code):
            try:
                return code().name
            except Exception:  # noqa: BLE001 - not a grpc error after all
                continue
    return None


def _reason(error: BaseException) -> str:
    message = getattr(error, "message", None)
    details = getattr(error, "details", None)
    if message is None and callable(details):
        message = details()  # a grpc.RpcError
    return " ".join(str(message or error).split())[:300]


def _unreachable(error: BaseException) -> bool:
    return _grpc_code(error) in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def _not_loaded(error: BaseException) -> bool:
    return getattr(error, "code", None) == 101 or "collection not loaded" in str(error)


def _down_message(uri: str, error: BaseException) -> str:
    if _grpc_code(error) == "DEADLINE_EXCEEDED":
        return (
            f"the Milvus server at {uri} did not answer in time (starting, or catching up "
            f"after a restart?): try again in a little while; indexing resumes by itself"
        )
    text = " ".join(str(cause) for cause in _errors(error))
    why = "connection refused" if "refused" in text else "unavailable"
    return (
        f"the Milvus server at {uri} does not answer ({why}): indexing waits and resumes by "
        f"itself once it is back; if it moved, fix milvus_uri"
    )


def _connect_error(uri: str, error: BaseException) -> str:
    if _grpc_code(error) == "UNAUTHENTICATED":
        return (
            f"Milvus at {uri} refused the credentials: set milvus_token (user:password for a "
            f"server, the API key for Zilliz Cloud)"
        )
    if error.__class__.__name__ == "ConnectionConfigException":
        return f"milvus_uri {uri!r} is not a Milvus server address: set it to http://HOST:19530"
    if "Fail connecting to server" in str(error):
        return (
            f"no Milvus answers at {uri} (something listens there, but does not speak Milvus's "
            f"gRPC): check milvus_uri; Milvus's own port is usually 19530"
        )
    return f"cannot open Milvus at {uri}: {_reason(error)}; check milvus_uri and milvus_token"
