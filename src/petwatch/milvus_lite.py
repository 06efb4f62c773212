"""Milvus Lite's housekeeping: pymilvus imported quietly, the Lite server's logs in petwatch's
cache dir (bounded and pruned), its socket in petwatch's runtime dir, and a DB prewarmed on a
thread while the daemon loads its model."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

LITE_LOG_FILES = 24  # Milvus Lite log files kept (each open starts one to three: INFO, WARNING, ERROR)
LITE_LOG_MEGABYTES = 8  # past this size its logger starts a new file
_PRUNED: set[Path] = set()  # log folders pruned by this process


def _lite_logs_in_cache() -> None:
    """Milvus Lite's server, a child process, logs with glog: by default a few new files in /tmp
    on every open, which nothing removes. glog reads its flags from GLOG_* variables, which the
    child inherits: its logs go to petwatch's cache dir instead, each file bounded, and only the
    newest LITE_LOG_FILES are kept (older ones pruned here, on each open)."""
    from petwatch import locations

    folder = locations.milvus_lite_log_dir()
    # Set on every open, not once: one process (a test run) may open stores of several homes.
    os.environ["GLOG_log_dir"] = str(folder)
    os.environ["GLOG_max_log_size"] = str(LITE_LOG_MEGABYTES)
    if folder in _PRUNED:  # once per process and folder: a later open's new logs are this run's
        return
    _PRUNED.add(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        logs = [entry for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)]
        logs.sort(key=lambda entry: entry.stat().st_mtime_ns, reverse=True)
        for entry in logs[LITE_LOG_FILES:]:
            os.unlink(entry.path)
        for entry in os.scandir(folder):  # glog's "milvus.INFO" links to the newest file
            if entry.is_symlink() and not os.path.exists(entry.path):
                os.unlink(entry.path)
    except OSError as error:  # logs are not worth failing an open for
        log.debug("pruning Milvus Lite's logs in %s: %s", folder, error)


def _lite_socket_in_runtime_dir() -> None:
    """milvus-lite 2.5.1 (pinned) names its server's socket with tempfile.mktemp(), in /tmp, and
    pymilvus never stops the server, so each process that opened a DB left one there. Its
    module's ``tempfile`` is pointed at petwatch's runtime dir instead, where the sockets earlier
    processes left (no server answers on them any more) are removed on each open."""
    import socket
    import tempfile
    import types

    import milvus_lite.server as lite_server

    from petwatch import locations

    folder = locations.runtime_dir()
    if len(os.fsencode(folder)) + 40 > locations.MAX_SOCKET_PATH:  # its name would not fit
        return
    try:
        locations.ensure_private_dir(folder)
        for stale in folder.glob("tmp*_*.sock"):
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(stale))
                except ConnectionRefusedError:  # no server: left by a process that is gone
                    stale.unlink(missing_ok=True)
                except OSError:
                    pass
    except OSError as error:  # then /tmp it is, as before
        log.debug("Milvus Lite's socket stays in the temp dir: %s", error)
        return
    lite_server.tempfile = types.SimpleNamespace(mktemp=lambda: tempfile.mktemp(dir=folder))


def milvus_client_class():
    """pymilvus's MilvusClient, imported quietly: a slow import, so only where a store is opened;
    milvus-lite 2.5 imports the deprecated pkg_resources (a UserWarning), and pymilvus logs
    routine iterator notes as warnings (its real errors are kept). Milvus Lite's logs and
    socket go to petwatch's own dirs, not /tmp."""
    _lite_logs_in_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import milvus_lite.server_manager  # noqa: F401 - what warns; pymilvus imports it on a local open
        from pymilvus import MilvusClient
    _lite_socket_in_runtime_dir()
    logging.getLogger("pymilvus").setLevel(logging.ERROR)
    return MilvusClient


def prewarm_lite(db: Path, collection: str) -> None:
    """Start Milvus Lite on ``db`` and load ``collection`` (and the collections named after it,
    one per embedding recipe: library.collection_name) on a thread, for a Store opened a
    little later (the daemon loads its model meanwhile: those two are most of a start, seconds
    each with tens of thousands of photos, and need nothing from each other). The Store reuses
    the server started here (pymilvus keeps one Milvus Lite server per DB file) and finds the
    collection loaded. Best effort: any problem is met again, and reported, by the Store."""
    client_class = milvus_client_class()  # imported here, not raced on the thread

    def warm() -> None:
        try:
            # Not closed: pymilvus shares one connection per URI, and the Store uses it next.
            client = client_class(uri=str(db))
            for name in client.list_collections():
                if name == collection or name.startswith(collection + "_"):
                    client.load_collection(name)
        except Exception as error:  # noqa: BLE001 - the Store reports it properly
            log.debug("prewarming Milvus Lite failed: %s", error)

    threading.Thread(target=warm, name="prewarm-store", daemon=True).start()
