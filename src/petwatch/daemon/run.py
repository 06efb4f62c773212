"""``petwatch daemon``: single instance, load, serve the socket, notify systemd, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import platformdirs

from petwatch import locations
from petwatch import settings as settings_module
from petwatch.daemon import systemd
from petwatch.daemon.unix_socket import bind_socket, peer_uid
from petwatch.errors import PetwatchError

log = logging.getLogger("petwatch.daemon")

# journald reads a "<N>" syslog priority prefix on each line.
_JOURNAL_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_JOURNAL_PRIORITY.get(record.levelname, 6)}>{record.name}: {super().format(record)}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if systemd.under_journald():
        handler.setFormatter(_JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("pymilvus", "uvicorn.access", "httpx", "watchdog", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "DEBUG" else logging.INFO)
    logging.getLogger("pymilvus").setLevel(logging.ERROR)


LOCK_PROBE_SECONDS = 0.5  # a front end holds the lock shared for microseconds to see a daemon starting


def acquire_instance_lock() -> int:
    """Hold an exclusive lock on the data dir for the daemon's lifetime (taken first, before the
    settings load: front ends read a held lock and no socket as a daemon starting)."""
    path = locations.daemon_lock()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + LOCK_PROBE_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if time.monotonic() < deadline:  # a front end's probe (client.starting_daemon): an instant
                time.sleep(0.01)
                continue
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise PetwatchError(
            f"another petwatch daemon (pid {pid}) is already running on {locations.data_dir()}; see `petwatch status`"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class StartingAnswers:
    """The API socket, bound at once, answers while the daemon loads its model and index
    (seconds): every request gets 503 ``{"error": ..., "state": "starting"}``, so clients see
    a daemon that is starting rather than none (``petwatch status`` says so, ``search`` waits,
    the TUI shows it). ``stop()`` hands the listening socket over to the real server; requests
    made meanwhile wait in its backlog."""

    MAX_HEAD = 16384  # the requests are small; a bigger one is answered unread

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.since = time.monotonic()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="starting-answers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                if not select.select([self.sock], [], [], 0.1)[0]:
                    continue
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                continue  # another accept got it first, or a signal
            except OSError:
                return  # the socket was closed under us: the daemon is stopping
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(1.0)
            if peer_uid(conn) != os.getuid():
                return
            data = b""
            while b"\r\n\r\n" not in data and len(data) < self.MAX_HEAD:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            # Read a short body too: closing with unread bytes would reset the connection and
            # the client would see that instead of the answer.
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")[1:]
                    if line.lower().startswith(b"content-length:") and line.split(b":", 1)[1].strip().isdigit()
                ),
                0,
            )
            while len(body) < min(length, self.MAX_HEAD) and (chunk := conn.recv(4096)):
                body += chunk
            answer = json.dumps(
                {
                    "error": "the petwatch daemon is starting (loading the model): try again in a few seconds",
                    "state": "starting",
                    "pid": os.getpid(),
                    "uptime_s": round(time.monotonic() - self.since, 1),
                }
            ).encode()
            conn.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                b"Retry-After: 1\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
            )
        except (OSError, ValueError):
            pass  # a client that hung up or sent junk: nothing to answer


def _first_run_folders(settings) -> None:
    """No folders configured ever: start with the user's Pictures folder, if there is one."""
    if settings.folders or locations.config_file().exists() or os.environ.get("PETWATCH_FOLDERS"):
        return
    pictures = Path(platformdirs.user_pictures_dir())
    if pictures.is_dir():
        settings_module.update_config_file(folders=[str(pictures)])
        settings.folders = [pictures]
        log.info("first run: watching %s (change with `petwatch folders add/remove`)", pictures)
    else:
        log.info("no folders to watch yet: add one with `petwatch folders add PATH`")


class _StopRequested(BaseException):
    """SIGTERM while loading: unwind, clean up, exit 0. A BaseException, like KeyboardInterrupt,
    so that the libraries' ``except Exception`` (pymilvus wraps connection errors) cannot
    swallow it and carry on loading."""


def _stop_while_loading(signum, frame) -> None:
    raise _StopRequested


def main() -> int:
    lock = acquire_instance_lock()
    try:
        settings = settings_module.load()
    except BaseException:
        os.close(lock)
        raise
    setup_logging(settings.log_level)
    # Until the server takes over the stop signals (below), SIGTERM unwinds the load.
    signal.signal(signal.SIGTERM, _stop_while_loading)
    daemon = sock = starting = None
    try:
        _first_run_folders(settings)
        sock = bind_socket(locations.socket_path())
        starting = StartingAnswers(sock)  # "starting", not "not running", while we load
        import uvicorn  # heavy imports only once we know we are the one daemon

        from petwatch.daemon.api import OwnerOnlyH11, create_app
        from petwatch.daemon.core import Daemon

        systemd.notify("STATUS=loading the model and the index")
        if settings.uses_milvus_lite and locations.milvus_lite_db().exists():
            from petwatch.milvus_lite import prewarm_lite

            prewarm_lite(locations.milvus_lite_db(), settings.collection)  # while the model loads
        daemon = Daemon(settings)
        daemon.started = starting.since  # its uptime counts the load, as the "starting" answers did
        starting.stop()
        config = uvicorn.Config(
            create_app(daemon),
            http=OwnerOnlyH11,
            lifespan="off",
            log_level="warning",
            timeout_keep_alive=5,
            limit_concurrency=512,
            timeout_graceful_shutdown=3,
            h11_max_incomplete_event_size=64 * 1024,
        )
        _serve(daemon, sock, _server_class(uvicorn, daemon.bus.close)(config))
    except _StopRequested:
        log.info("stopped while loading")
    finally:
        if starting is not None:
            starting.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        systemd.notify("STOPPING=1")
        if daemon is not None:
            log.info("stopping: finishing the batch in flight")
            daemon.stop()
        if sock is not None:
            sock.close()
            locations.socket_path().unlink(missing_ok=True)
        os.close(lock)
        log.info("stopped")
    return 0


def _server_class(uvicorn, on_shutdown):
    class Server(uvicorn.Server):
        """uvicorn's server, except that a stop signal is not re-raised once it has shut down
        (uvicorn's default, which kills the process by the signal before our cleanup runs):
        SIGTERM and SIGINT stop the daemon cleanly, with exit status 0. Event streams are
        ended first, so open ones do not hold the shutdown up."""

        async def shutdown(self, sockets=None) -> None:
            on_shutdown()
            await super().shutdown(sockets=sockets)

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    return Server


def _serve(daemon, sock: socket.socket, server) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        daemon.bus.attach(loop)
        daemon.start()
        pinger = asyncio.create_task(_watchdog_pings())
        systemd.notify("READY=1\nSTATUS=watching " + ", ".join(daemon.folders or ["no folders"]))
        log.info("petwatch daemon ready: %d photos, socket %s", daemon.library.photo_count, locations.socket_path())
        try:
            await server.serve(sockets=[sock])
        finally:
            pinger.cancel()

    asyncio.run(serve())


async def _watchdog_pings() -> None:
    interval = systemd.watchdog_interval()
    if not interval:
        return
    while True:  # pings come from the event loop: a wedged loop stops them and systemd restarts us
        systemd.notify("WATCHDOG=1")
        await asyncio.sleep(interval)
