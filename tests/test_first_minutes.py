"""What a new user meets in the first minutes, each against a real daemon, socket and Milvus Lite:
no warning on any command, a starting daemon seen as starting (and waited for), nothing left in
/tmp, Milvus Lite's logs kept bounded in petwatch's cache, and a non-UTF-8 file name as a query.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import DaemonProcess, daemon_holding_its_lock, run_cli, write_photos
from petwatch import locations
from petwatch import settings as settings_module

NON_UTF8 = b"caf\xe9 from an old FAT stick.jpg"  # Latin-1: not valid UTF-8


def _wait_for_socket(daemon: DaemonProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not locations.socket_path().exists():
        assert daemon.process.poll() is None, daemon.log.read_text()
        assert time.monotonic() < deadline, "the daemon never bound its socket"
        time.sleep(0.02)


def _start_daemon_process(env: dict | None = None) -> DaemonProcess:
    """A real daemon, not yet waited for (DaemonProcess.start waits until it serves)."""
    daemon = DaemonProcess(env)
    handle = open(daemon.log, "ab")
    daemon.process = subprocess.Popen(
        [sys.executable, "-m", "petwatch", "daemon"], env=daemon.env, stdout=handle, stderr=handle
    )
    return daemon


def test_no_command_warns_about_the_runtime_dir_and_config_shows_the_one_used():
    """Without XDG_RUNTIME_DIR (ssh, cron, a container) platformdirs warned on every command,
    naming a directory petwatch did not then use."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "PETWATCH_HOME")}
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"pw-xdg-{os.getpid()}"
    scratch.mkdir()
    try:
        for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
            env[name] = str(scratch / name.lower())
        env["TMPDIR"] = str(scratch)  # where the runtime dir falls back to, without /run/user/UID
        config = subprocess.run(
            [sys.executable, "-m", "petwatch", "config"], capture_output=True, text=True, env=env, timeout=120
        )
        assert config.returncode == 0, config.stderr
        assert "Warning" not in config.stderr and "runtime" not in config.stderr, config.stderr
        paths = dict(line.split(None, 1) for line in config.stdout.split("\n\n")[0].splitlines()[1:])
        runtime = Path(paths["runtime_dir"])
        assert Path(paths["socket"]).parent == runtime
        if not os.path.isdir(f"/run/user/{os.getuid()}"):
            assert runtime == scratch / f"petwatch-{os.getuid()}"
        status = subprocess.run(
            [sys.executable, "-m", "petwatch", "status"], capture_output=True, text=True, env=env, timeout=120
        )
        assert status.returncode == 1
        assert status.stderr.count("\n") == 1, status.stderr  # one line, no warning before it
        assert f"no socket at {paths['socket']}" in status.stderr, status.stderr
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_a_starting_daemon_is_seen_as_starting_and_search_waits_for_it(home):
    album = home / "album"
    photos = write_photos(album, 4)
    settings_module.update_config_file(folders=[str(album)])
    first = DaemonProcess().start()  # index the album once, so the second start has photos to find
    first.wait_idle()
    first.stop()

    daemon = _start_daemon_process()
    try:
        _wait_for_socket(daemon)
        status = run_cli("status")
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith("state     starting (loading the model)…"), status.stdout
        assert f"pid {daemon.process.pid}" in status.stdout
        as_json = json.loads(run_cli("status", "--json").stdout)
        assert as_json["state"] in ("starting", "idle", "indexing")  # it may have loaded meanwhile
        assert as_json["pid"] == daemon.process.pid

        search = run_cli("search", str(photos[0]))  # sent while it loads: waits, then answers
        assert search.returncode == 0, search.stderr
        assert search.stdout.split()[2] == str(photos[0]), search.stdout
        assert "waiting for it" in search.stderr, search.stderr
        assert "not running" not in search.stderr
        assert run_cli("status").stdout.startswith("state     idle")
    finally:
        daemon.stop()


def test_a_daemon_that_holds_its_lock_but_has_no_socket_yet_is_starting_not_gone(home, tmp_path):
    """The socket is bound only after the interpreter and the settings load; the instance lock
    is held from the daemon's first moment. A command run in between said "not running"."""
    album = home / "album"
    photos = write_photos(album, 2)
    settings_module.update_config_file(folders=[str(album)])
    held, go = tmp_path / "held", tmp_path / "go"
    daemon = daemon_holding_its_lock(held, go)
    try:
        assert not locations.socket_path().exists()
        status = run_cli("status")
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith("state     starting (loading the model)…"), status.stdout
        assert f"pid {daemon.process.pid}" in status.stdout
        assert json.loads(run_cli("status", "--json").stdout)["state"] == "starting"

        errors = tmp_path / "search.err"
        with open(errors, "w") as handle:
            search = subprocess.Popen(
                [sys.executable, "-m", "petwatch", "search", str(photos[0])],
                stdout=subprocess.PIPE,
                stderr=handle,
                text=True,
            )
        deadline = time.monotonic() + 60
        while "waiting for it" not in errors.read_text():
            assert search.poll() is None, errors.read_text()
            assert time.monotonic() < deadline, "the search did not wait for the starting daemon"
            time.sleep(0.05)
        assert not locations.socket_path().exists()  # it waited before there was a socket at all
        go.touch()  # the daemon goes on: binds its socket, loads, serves
        out, _ = search.communicate(timeout=180)
        assert search.returncode == 0, errors.read_text()
        assert "not running" not in errors.read_text()
        assert run_cli("status").stdout.startswith("state     "), "the daemon serves"
    finally:
        go.touch()
        daemon.stop()


def test_a_daemon_start_and_stop_leave_tmp_as_they_found_it(home):
    """Milvus Lite wrote a few milvus.*.log.* files to /tmp on every open (422 after one test
    run). Other programs share /tmp, so what is new there is checked for our processes' pids;
    an in-process open with a private TMPDIR must leave that dir empty."""
    import psutil

    album = home / "album"
    write_photos(album, 3)
    settings_module.update_config_file(folders=[str(album)])
    before = set(os.listdir("/tmp"))
    daemon = DaemonProcess().start()
    daemon.wait_idle()
    children = psutil.Process(daemon.process.pid).children(recursive=True)
    lite = [child.cmdline() for child in children if child.name() == "milvus"]
    assert len(lite) == 1, "no Milvus Lite server under the daemon"
    lite_socket = Path(lite[0][2].removeprefix("unix:"))  # its args: binary, DB, socket, ...
    assert lite_socket.parent == locations.runtime_dir(), lite_socket
    pids = {str(daemon.process.pid)} | {str(child.pid) for child in children}
    assert daemon.stop() == 0
    # Others share /tmp: what is new there must not be named by our processes' pids (as glog
    # names its files) nor be our server's socket.
    new = set(os.listdir("/tmp")) - before
    ours = sorted(name for name in new if pids & set(name.split(".")) or name == lite_socket.name)
    assert ours == [], f"left in /tmp by the daemon: {ours}"
    logs = locations.milvus_lite_log_dir()
    assert any(".log." in name for name in os.listdir(logs)), "Milvus Lite's log is not in the cache dir"

    # A socket a killed process left (bound, nobody listening any more) is removed on the next open.
    stale = locations.runtime_dir() / "tmpkilled9_milvus.db.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(stale))
    private_tmp = home / "tmp"
    private_tmp.mkdir()
    result = run_cli("stats", env={"TMPDIR": str(private_tmp)})  # opens Milvus Lite in-process
    assert result.returncode == 0, result.stderr
    assert not os.path.lexists(stale)
    # torch itself makes one empty torchinductor_<user> dir on import, once per user (it is
    # reused, it does not pile up); anything else there would be petwatch's.
    assert [name for name in os.listdir(private_tmp) if not name.startswith("torchinductor_")] == []


def test_milvus_lite_logs_are_kept_to_a_bounded_number(home):
    from petwatch.milvus_lite import LITE_LOG_FILES

    logs = locations.milvus_lite_log_dir()
    logs.mkdir(parents=True)
    old = []
    for number in range(LITE_LOG_FILES + 16):  # what months of opens would leave
        path = logs / f"milvus.host.user.log.INFO.20250101-0000{number:02d}.{1000 + number}"
        path.write_text("old log\n")
        os.utime(path, (1_700_000_000 + number, 1_700_000_000 + number))
        old.append(path)
    os.symlink(old[0].name, logs / "milvus.ERROR")  # glog's link to its newest file, gone stale

    result = run_cli("stats")  # no daemon: the CLI opens Milvus Lite itself
    assert result.returncode == 0, result.stderr
    kept = [path for path in old if path.exists()]
    assert kept == old[-LITE_LOG_FILES:], "the newest old logs are kept, the oldest pruned"
    assert not os.path.lexists(logs / "milvus.ERROR")
    new = [name for name in os.listdir(logs) if ".log." in name and not name.startswith("milvus.host.")]
    assert new, "this open's log is written here"


def test_a_file_name_that_is_not_utf8_can_be_the_query(home, start_daemon):
    album = home / "album"
    photos = write_photos(album, 4)
    raw = os.path.join(os.fsencode(album), NON_UTF8)
    shutil.copyfile(photos[0], raw)
    settings_module.update_config_file(folders=[str(album)])
    daemon = start_daemon()
    daemon.wait_idle()
    name = os.fsdecode(raw)

    # As the user runs it: the name's own bytes on the command line and in the output.
    # --no-stacks: the copy and its original (the same bytes) are one stack, shown once by default.
    search = subprocess.run(
        [sys.executable, "-m", "petwatch", "search", raw, "--no-stacks"], capture_output=True, timeout=120
    )
    assert search.returncode == 0, search.stderr
    ranks = [line.split(None, 2) for line in search.stdout.splitlines()]
    assert {path for _rank, _score, path in ranks[:2]} == {raw, os.fsencode(photos[0])}  # the same bytes
    assert float(ranks[0][1]) > 0.999
    as_json = subprocess.run(
        [sys.executable, "-m", "petwatch", "search", raw, "--json", "--no-stacks"], capture_output=True, timeout=120
    )
    assert as_json.returncode == 0, as_json.stderr
    assert raw in [os.fsencode(hit["path"]) for hit in json.loads(as_json.stdout)]

    # What the TUI sends: search from the indexed photo, its details and its thumbnail.
    with daemon.client() as client:
        hits = client.search(photo=name, top_k=4, stacks=False)["hits"]
        assert hits[0]["score"] > 0.999 and name in [hit["path"] for hit in hits[:2]]
        assert client.photo(name)["path"] == name
        assert client.thumbnail(name, 128)[:3] == b"\xff\xd8\xff"
        # A name that itself starts with "b64:" is not mistaken for an encoded one.
        tricky = album / "b64:QUJD.jpg"
        shutil.copyfile(photos[1], tricky)
        deadline = time.monotonic() + 60
        while not any(
            h["path"] == str(tricky) for h in client.search(image=str(tricky), top_k=8, stacks=False)["hits"]
        ):
            assert time.monotonic() < deadline, "b64:QUJD.jpg never indexed"
            time.sleep(0.3)
        assert client.photo(str(tricky))["path"] == str(tricky)
