"""What starting work costs, as a user sees it: the progress rate counts the work, not the model
load; the daemon's log times the real work and says when a walk changed nothing; a search
without a daemon says once, on a terminal, how to make searches fast."""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys
import time

from tests.conftest import run_cli, write_photos
from tests.finding import search_reply

from petwatch import locations


def test_the_progress_rate_counts_the_work_not_the_model_load(home):
    album = home / "album"
    write_photos(album, 20)
    result = run_cli("index", str(album))  # stderr piped: plain progress lines
    assert result.returncode == 0, result.stderr
    rates = re.findall(r"indexing: 20/20 \(100%\) ([\d.]+)/s", result.stderr)
    seconds = float(re.search(r"indexed 20, .* in ([\d.]+)s", result.stdout).group(1))
    assert rates, result.stderr
    # Before, the rate's clock started before the model was loaded (seconds more than the work):
    # 2.6/s printed beside "indexed 20 ... in 2.0s" (10/s).
    assert float(rates[-1]) > 0.7 * 20 / seconds, (rates, seconds)


def test_the_daemon_log_times_a_hinted_photo_and_notes_a_walk_that_changed_nothing(home, start_daemon):
    album = home / "album"
    photos = write_photos(album, 3)
    daemon = start_daemon(PETWATCH_FOLDERS=f'["{album}"]')
    daemon.wait_idle()
    shutil.copyfile(photos[0], album / "new.jpg")
    deadline = time.monotonic() + 60
    while "indexed 0, reused 1" not in daemon.log.read_text():  # a copy: its vector is reused
        assert time.monotonic() < deadline, daemon.log.read_text()
        time.sleep(0.2)
    write_photos(home / "more", 4)[1].rename(album / "fresh.jpg")  # bytes not in the album yet
    while not re.search(r"indexed 1, reused 0, removed 0, unchanged \d+ in ", daemon.log.read_text()):
        assert time.monotonic() < deadline, daemon.log.read_text()
        time.sleep(0.2)
    took = re.search(r"indexed 1, reused 0, removed 0, unchanged \d+ in ([\d.]+)s", daemon.log.read_text())
    assert took and float(took.group(1)) > 0  # it said "in 0.0s" for a real embed
    assert run_cli("rescan").returncode == 0
    while "nothing changed (5 photos unchanged)" not in daemon.log.read_text():  # it said nothing
        assert time.monotonic() < deadline, daemon.log.read_text()
        time.sleep(0.2)


def _search_on_a_terminal(query: str, *extra: str) -> str:
    """``petwatch search`` with stdout and stderr on a terminal; what the user saw."""
    terminal, user_side = pty.openpty()
    try:
        subprocess.run(
            [sys.executable, "-m", "petwatch", "search", query, *extra],
            stdin=subprocess.DEVNULL,
            stdout=user_side,
            stderr=user_side,
            timeout=300,
            check=True,
        )
        os.close(user_side)
        seen = b""
        while True:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # the other side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
        return seen.decode(errors="replace")
    finally:
        os.close(terminal)


def test_a_search_without_a_daemon_says_once_on_a_terminal_how_to_make_it_fast(home):
    query = str(write_photos(home / "album", 1)[0])
    hint = "no daemon runs"
    assert hint not in _search_on_a_terminal(query, "--json")  # scripts are not told
    piped = run_cli("search", query)
    assert piped.returncode == 0 and hint not in piped.stderr
    told = _search_on_a_terminal(query)
    assert hint in told and "petwatch daemon" in told and "petwatch service install" in told
    assert locations.daemon_hint_shown().exists()
    assert hint not in _search_on_a_terminal(query)  # once


def test_without_a_daemon_the_model_is_loaded_only_when_something_needs_embedding(home):
    from petwatch import settings as settings_module
    from petwatch.library import LazyModel, Library

    album = home / "album"
    photos = write_photos(album, 6)
    outsider = home / "outsider.jpg"
    photos[5].rename(outsider)  # a query that is not indexed
    settings = settings_module.load()
    library = Library(settings)
    try:
        library.reconcile([str(album)])
        expected = {
            str(query): search_reply(library, str(query), 5, -1.0, None)["hits"] for query in (photos[0], outsider)
        }
    finally:
        library.close()

    library = Library(settings_module.load(), lazy_model=True)  # as `petwatch search` opens it
    try:
        model = library.embedder
        assert isinstance(model, LazyModel) and library.model == settings.model and library.dim > 0
        assert library.reconcile([str(album)]).unchanged == 5  # nothing new: nothing to embed
        assert search_reply(library, str(photos[0]), 5, -1.0, None)["hits"] == expected[str(photos[0])]
        assert model._model is None  # an indexed query is its stored vector: no model needed
        assert search_reply(library, str(outsider), 5, -1.0, None)["hits"] == expected[str(outsider)]
        assert model._model is not None  # a new photo needs the model: loaded then
    finally:
        library.close()
