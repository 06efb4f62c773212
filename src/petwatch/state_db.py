"""The state SQLite (locations.state_db): what must outlive a reindex, kept by content hash or
path (failures, stacks, pet profiles, pets found for you), opened one way for all of them."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

# The state DB has several writers (the daemon's features, a CLI's walk): a writer waits this
# long for another's turn rather than fail.
BUSY_TIMEOUT_S = 30


class StateTables:
    """One owner's tables in the state SQLite: a connection of its own (WAL, so readers never
    wait on a writer; autocommit, BEGIN where a change spans statements) and the lock its
    callers, on several threads, take around each use of it."""

    def __init__(self, path: Path, schema: str, *, reentrant: bool = False, durable: bool = True) -> None:
        """``schema``: the owner's ``CREATE TABLE IF NOT EXISTS`` statements. ``durable=False``
        skips the fsync per commit, for tables rebuilt by themselves after a power cut."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        if not durable:
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(schema)
        self.lock: threading.Lock | threading.RLock = threading.RLock() if reentrant else threading.Lock()

    def close(self) -> None:
        self.db.close()
