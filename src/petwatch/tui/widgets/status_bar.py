"""The bottom status line: daemon state, photos, queue, backfill progress, failures, a config
file the daemon could not take, selection."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.events import Click
from textual.widgets import ProgressBar, Static

from petwatch import format

if TYPE_CHECKING:
    from petwatch.tui.app import PetwatchApp


class StatusItem(Static):
    """One field of the status line; ``action`` (an app action) runs when it is clicked."""

    def __init__(self, *args, action: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.click_action = action

    @on(Click)
    async def _clicked(self, event: Click) -> None:
        if self.click_action:
            event.stop()
            await self.app.run_action(self.click_action)


class StatusBar(Horizontal):
    def __init__(self) -> None:
        super().__init__()
        self._state = StatusItem("◌ connecting…", id="status-state")
        self._indexed = StatusItem("", id="status-indexed")
        self._queue = StatusItem("", id="status-queue")
        self._bar = ProgressBar(total=None, show_eta=False, id="status-progress")
        self._rate = StatusItem("", id="status-rate")
        self._failures = StatusItem("", id="status-failures", action="app.failures")
        self._config = StatusItem("⚠ config file", id="status-config", action="app.config_problem")
        self._selection = StatusItem("", id="status-selection", action="app.show_selection")

    def compose(self) -> ComposeResult:
        yield from (
            self._state,
            self._indexed,
            self._queue,
            self._bar,
            self._rate,
            self._failures,
            self._config,
            self._selection,
        )

    @property
    def petwatch(self) -> PetwatchApp:
        return cast("PetwatchApp", self.app)

    def on_mount(self) -> None:
        app = self.petwatch
        self.watch(app, "connected", self._refresh_all, init=False)
        self.watch(app, "daemon_starting", self._refresh_all, init=False)
        self.watch(app, "starting", self._refresh_all, init=False)
        self.watch(app, "daemon_status", self._refresh_all, init=False)
        self.watch(app, "progress", self._refresh_all, init=False)
        self.watch(app, "selection_count", self._refresh_all, init=False)
        self._refresh_all()

    def _refresh_all(self, _value: object = None) -> None:
        app = self.petwatch
        status = app.daemon_status
        state = self._state
        state.remove_class("-idle", "-indexing", "-offline")
        if app.connected is None:
            state.update("◌ connecting…")
        elif not app.connected and (app.daemon_starting or app.starting):
            state.update("◌ starting…")
        elif not app.connected:
            state.update("✕ no daemon")
            state.add_class("-offline")
        else:
            name = status.get("state", "?")
            upgrade = status.get("upgrade")
            if upgrade and name in ("idle", "upgrading") and upgrade.get("total"):
                name = f"upgrading {upgrade['done'] * 100 // upgrade['total']}%"
            state.update(("● " if name == "idle" else "◐ ") + name)
            state.add_class("-idle" if name == "idle" else "-indexing")
        known = bool(app.connected and status)
        self._indexed.update(format.plural(status.get("indexed", 0), "photo") if known else "")
        progress = app.progress if app.connected else None
        queued = status.get("queued", 0) if known else 0
        if progress and progress.get("total"):
            queued = max(queued, progress["total"] - progress["done"])
        self._queue.update(f"queue {format.count(queued)}" if known else "")
        bar, rate = self._bar, self._rate
        if progress and progress.get("total"):
            bar.display = True
            bar.update(total=progress["total"], progress=progress["done"])
            rate.update(f"{format.rate(progress.get('rate'))} ETA {format.duration(progress.get('eta_s'))}")
            rate.display = True
        else:
            bar.display = False
            rate.display = False
        failed = status.get("failed", 0) if known else 0
        failures = self._failures
        failures.update(f"⚠ {format.count(failed)} failed" if failed else "")
        failures.display = bool(failed)
        self._config.display = bool(known and status.get("config_problem"))
        selection = self._selection
        selection.update(f"★ {format.count(app.selection_count)} selected" if app.selection_count else "")
        selection.display = bool(app.selection_count)
