"""The state SQLite, shared by failures, stacks, pets and pets found for you: each owner's
tables opened one way, so a write waits for another writer's turn instead of failing."""

from __future__ import annotations

import sqlite3
import threading
import time

from petwatch.discovery import GroupBook
from petwatch.index import FailureLog
from petwatch.pets import PetBook


def test_an_owner_waits_for_another_writer_rather_than_losing_its_write(tmp_path):
    """A CLI walk or another feature holding the write lock for longer than SQLite's default
    5 s: the user's decision (a new group) is kept once the lock is free, not refused."""
    path = tmp_path / "state.sqlite"
    book, failures, pets = GroupBook(path), FailureLog(path), PetBook(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the write lock, as a long write holds it
    threading.Timer(6.0, lambda: other.execute("COMMIT")).start()
    started = time.monotonic()
    group = book.new_group()
    assert time.monotonic() - started > 5.5  # it waited past the default, and got its turn
    assert book.groups()[group][0] == "open"
    pets.create("Cola")  # every owner's tables live in the one file
    assert pets.names() == ["Cola"] and failures.count() == 0
    for owner in (book, failures, pets):
        owner.close()
    other.close()
