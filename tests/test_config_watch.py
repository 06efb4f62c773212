"""A running daemon notices its config file changing: what is safe is applied at once, the rest
is reported as needing a restart, a broken file is reported instead of ignored (status, log,
and a note on the commands that go through the daemon)."""

from __future__ import annotations

import threading
import time

from tests.conftest import run_cli, write_photos

from petwatch import locations


def _wait(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout}s")


def test_the_daemon_applies_reports_or_refuses_an_edited_config_file(home, start_daemon):
    album, second = home / "album", home / "second"
    photos = write_photos(album, 6)
    write_photos(second, 2)
    config = locations.config_file()
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'folders = ["{album}"]\n')
    daemon = start_daemon()
    daemon.wait_idle()
    with daemon.client() as client:
        assert len(client.search(image=str(photos[0]))["hits"]) == 6

        # Safe to apply live: the default number of hits, and the folders. A front end following
        # the events is told the new setting (the TUI's fields show it) without asking.
        pushed: list[dict] = []

        def follow() -> None:
            with daemon.client() as listener:
                pushed.extend(data for kind, data in listener.events() if kind == "status")

        threading.Thread(target=follow, daemon=True).start()
        time.sleep(0.5)  # subscribed
        config.write_text(f'folders = ["{album}", "{second}"]\ntop_k = 3\n')
        _wait(lambda: len(client.search(image=str(photos[0]))["hits"]) == 3, "top_k applied")
        _wait(lambda: any(status["top_k"] == 3 for status in pushed), "the setting pushed with the status")
        _wait(lambda: client.status()["indexed"] == 8, "the added folder indexed")
        assert client.status()["config_problem"] is None

        # A typo: reported, with the setting meant, and the daemon goes on as it was.
        config.write_text(f'folders = ["{album}", "{second}"]\ntop_kk = 5\n')
        problem = _wait(lambda: client.status()["config_problem"], "the typo reported")
        assert "unknown setting top_kk" in problem and "did you mean top_k?" in problem
        assert len(client.search(image=str(photos[0]))["hits"]) == 3
        status = run_cli("status")
        assert "did you mean top_k?" in status.stdout
        search = run_cli("search", str(photos[0]))
        assert search.returncode == 0 and "did you mean top_k?" in search.stderr

        # Needs a restart: said so, by name.
        config.write_text(f'folders = ["{album}", "{second}"]\ntop_k = 3\nbatch_size = 6\n')
        problem = _wait(lambda: (client.status()["config_problem"] or "").startswith("batch_size"), "the restart note")
        assert "restart the daemon to apply" in client.status()["config_problem"]
        assert "restart the daemon to apply" in daemon.log.read_text()
