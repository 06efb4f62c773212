"""The banner across the top while no daemon answers: what is wrong and what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Static

from petwatch.client import STARTING

if TYPE_CHECKING:
    from petwatch.tui.app import PetwatchApp


class ConnectionBanner(Horizontal):
    def __init__(self) -> None:
        super().__init__()
        self._text = Static("", id="banner-text")
        self._button = Button("Start daemon", id="banner-start", compact=True, variant="warning")

    def compose(self) -> ComposeResult:
        yield self._text
        yield self._button

    @property
    def petwatch(self) -> PetwatchApp:
        return cast("PetwatchApp", self.app)

    def on_mount(self) -> None:
        self.watch(self.petwatch, "connected", self._show, init=False)
        self.watch(self.petwatch, "starting", self._show, init=False)
        self.watch(self.petwatch, "daemon_starting", self._show, init=False)
        self._show()

    def _show(self, _value: object = None) -> None:
        app = self.petwatch
        self.display = app.connected is False
        starting = app.starting or app.daemon_starting
        if starting:
            text = f"The petwatch daemon is {STARTING} The TUI connects by itself when it is ready."
        elif app.ever_connected:
            text = (
                "Lost the petwatch daemon. Reconnecting by itself as soon as it is back; "
                "press [b]s[/] to start it (or [b]/[/] to type a query meanwhile)."
            )
        else:
            text = (
                f"No petwatch daemon is running (no answer on {app.socket_path}). "
                "Press [b]s[/] to start it in the background; the TUI connects by itself."
            )
        self._text.update(text)
        self._button.display = not starting

    @on(Button.Pressed, "#banner-start")
    async def _start(self) -> None:
        await self.app.run_action("app.start_daemon")
