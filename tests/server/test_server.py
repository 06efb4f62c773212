"""petwatch on a real Milvus server, as a user meets it: a photo just indexed is found by the
next search, on both engines; and the faults: a server restart, a server gone mid-run, and
each wrong setting, answered in one line that names the setting to fix."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time

import pytest
from tests.test_daemon import (  # noqa: F401 - albums, small_jpegs: fixtures
    Events,
    _start_backfill,
    albums,
    all_hits,
    configure_folders,
    small_jpegs,
    wait_until,
)

from conftest import TEST_MODEL, run_cli, write_photos
from petwatch import settings
from petwatch.embed import PET_FOCUS_RECIPE, Embedder
from petwatch.errors import PetwatchError
from petwatch.library import Library, collection_name
from petwatch.milvus_remote import SERVER_FRESH_S
from petwatch.store import Store

pytestmark = pytest.mark.server  # the Milvus server tier: -m server

RESTART_WITHIN = 120.0  # seconds for a restarted server to serve searches again (~25 s here)


def _cli_json(*args: str) -> object:
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _status(daemon) -> dict:
    with daemon.client() as client:
        return client.status()


def _one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    return lines[0]


def _stored_rows(collection: str, server) -> list[str]:
    """Every whole-image row's path in the collection, read straight from the server."""
    from petwatch.milvus_lite import milvus_client_class

    client = milvus_client_class()(uri=server.uri, token=server.token)
    try:
        rows = client.query(
            collection, filter="view == 0", output_fields=["path"], limit=16384, consistency_level="Strong", timeout=60
        )
    finally:
        client.close()
    return [row["path"] for row in rows]


# --- both engines ------------------------------------------------------------------------------
def test_photo_just_indexed_is_found_by_the_next_search_without_waiting_for_a_tick(milvus_backend, home, tmp_path):
    """Read-your-writes: each photo, the moment its write returns, is the next search's top hit
    (a Strong read on a server, right after a write), and a photo just dropped is gone from
    it; and searches with no recent write do not wait for the server's sync tick (Bounded;
    Strong on every search cost p50 196 ms at 20k photos)."""
    photos = write_photos(tmp_path / "album", 10)
    library = Library(settings.load())
    try:
        for photo in photos:
            report = library.indexer.index_files([library.indexer.stat(str(photo))])
            assert report.indexed == 1, report.to_dict()
            hits = library.store.search(library.store.get(str(photo)).vector, top_k=1)
            assert hits and hits[0].path == str(photo), f"{photo.name} not found right after indexing"
        gone = str(photos[-1])
        assert library.indexer.remove([gone]) == 1
        assert gone not in {hit.path for hit in library.store.search(library.query_vector(gone), top_k=20)}
        query = library.store.get(str(photos[0])).vector
        if milvus_backend == "server":
            time.sleep(SERVER_FRESH_S + 0.5)  # no write of ours for a while: reads stop waiting
        took = []
        for _ in range(15):
            started = time.perf_counter()
            library.store.search(query, top_k=20)
            took.append(time.perf_counter() - started)
        assert statistics.median(took) < 0.1, f"{milvus_backend}: search p50 {statistics.median(took) * 1e3:.0f} ms"
    finally:
        library.close()


# --- the server: the CLI end to end, and each wrong setting ------------------------------------
def test_cli_index_search_stats_on_the_server(home, server, tmp_path):
    album = tmp_path / "album"
    photos = write_photos(album, 6)
    assert _cli_json("index", str(album))["indexed"] == 6
    hits = _cli_json("search", "--top-k", "3", str(photos[2]))
    assert hits[0]["path"] == str(photos[2]) and hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    stats = _cli_json("stats")
    assert (stats["photos"], stats["db"], stats["db_bytes"]) == (6, server.uri, None)


def test_each_wrong_setting_is_one_line_naming_it(home, server, tmp_path):
    """What `petwatch` prints for each wrong setting (end to end for a bad token; the rest
    straight from the Store, whose message the CLI prints as is, without loading a model)."""
    album = tmp_path / "album"
    write_photos(album, 2)
    assert _cli_json("index", str(album))["indexed"] == 2  # the collection, made by TEST_MODEL
    line = _one_line(run_cli("stats", env={"PETWATCH_MILVUS_TOKEN": "root:wrong"}))
    assert line.startswith("petwatch: ") and "refused the credentials" in line and "milvus_token" in line, line

    opened = settings.load()
    recorded = Embedder(TEST_MODEL).identity
    cases = {
        "no token": ({"token": ""}, ["refused the credentials", "milvus_token"]),
        "refused": ({"uri": "http://127.0.0.1:19999"}, ["connection refused", "milvus_uri"]),
        "TLS to a plain server": ({"uri": server.uri.replace("http:", "https:")}, ["does not speak TLS", "milvus_uri"]),
        # The server's metrics port: HTTP/1, not Milvus's gRPC; pymilvus gives up after 10 s.
        "wrong port": ({"uri": "http://127.0.0.1:9091"}, ["no Milvus answers", "milvus_uri"]),
        "not a URI": ({"uri": "ftp://127.0.0.1:19530"}, ["not a Milvus server address", "milvus_uri"]),
        "another model": (
            {"identity": recorded.replace(TEST_MODEL, "efficientnet_lite1")},
            [f"made by model '{recorded}'", "set model back", "petwatch reindex"],
        ),
    }
    for name, (changes, words) in cases.items():
        made = collection_name(opened.collection, PET_FOCUS_RECIPE)  # the one `petwatch index` made
        args = {
            "uri": server.uri,
            "collection": made,
            "identity": recorded,
            "dim": 1280,
            "token": server.token,
            **changes,
        }
        with pytest.raises(PetwatchError) as raised:
            Store(**args)
        message = str(raised.value)
        assert "\n" not in message and all(w in message for w in words), f"{name}: {message}"


# --- the server: restart, and gone mid-run -----------------------------------------------------
def test_after_a_server_restart_search_reloads_and_indexing_goes_on(home, server, start_daemon, tmp_path, small_jpegs):
    album = tmp_path / "Pictures"
    photos = write_photos(album, 8)
    configure_folders(album)
    daemon = start_daemon()
    daemon.wait_idle()
    before = all_hits(daemon, photos[0])
    assert len(before) == 8

    server.restart()  # the collection comes back not loaded: petwatch loads it again
    found = wait_until(
        lambda: (
            (r := run_cli("search", "--json", "--top-k", "20", str(photos[0]))).returncode == 0 and json.loads(r.stdout)
        ),
        RESTART_WITHIN,
        "search working after the restart",
        interval=1,
    )
    assert {hit["path"] for hit in found} == set(before)
    assert daemon.process.poll() is None
    new = album / "after_restart.jpg"
    shutil.copyfile(small_jpegs[0], new)
    wait_until(lambda: str(new) in all_hits(daemon, new), 60, "a photo added after the restart found")
    assert _status(daemon)["write_error"] is None


def test_server_gone_mid_run_daemon_waits_and_resumes_nothing_lost_nothing_twice(
    home, server, start_daemon, albums, small_jpegs
):
    album, daemon, events = _start_backfill(start_daemon, albums, small_jpegs)
    wait_until(
        lambda: sum(len(e["paths"]) for e in events.of("indexed")) >= 8, 120, "some photos stored", interval=0.05
    )
    server.kill()  # gone at once, mid-backfill: a crash, a pulled cable

    problem = wait_until(lambda: _status(daemon)["write_error"], 60, "status showing the server gone")
    assert "does not answer" in problem and "milvus_uri" in problem, problem
    assert daemon.process.poll() is None, "the daemon went down with the server"
    line = _one_line(run_cli("search", str(album / small_jpegs[0].name)))
    assert "Milvus server" in line and "does not answer" in line, line
    status_text = run_cli("status")
    assert status_text.returncode == 0 and "error     the Milvus server" in status_text.stdout
    stored_before = _status(daemon)["indexed"]
    assert stored_before < len(small_jpegs), "the backfill finished before the server went"

    server.start()  # back: the daemon notices by itself and finishes the backfill
    wait_until(
        lambda: (
            (s := _status(daemon))["write_error"] is None and s["indexed"] == len(small_jpegs) and s["state"] == "idle"
        ),
        RESTART_WITHIN + 60,
        "indexing resumed and done",
    )
    rows = _stored_rows(collection_name(settings.load().collection, PET_FOCUS_RECIPE), server)
    assert len(rows) == len(set(rows)) == len(small_jpegs), "rows lost or stored twice"
    assert set(rows) == {str(album / p.name) for p in small_jpegs}
    hits = all_hits(daemon, album / small_jpegs[0].name)
    assert set(hits) == set(rows)
    events.close()
