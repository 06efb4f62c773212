"""The petwatch TUI app: the connection to the daemon, app-wide state, and global keys.

State lives here and screens watch it: ``connected`` (None until the first try), the daemon's
``daemon_status`` (kept current by the daemon's pushed events, not by polling), the backfill
``progress``, and the ``selection`` (a list of paths that survives new searches). Comic jobs
and pet profiles live in the daemon: the reader turns each pushed event into a message
(petwatch.tui.events) the app handles and passes on to the open screens that follow it; the
latest record of each comic job stays in ``comic_records``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget

from petwatch import format
from petwatch.client import AsyncDaemonClient, DaemonStarting
from petwatch.errors import PetwatchError
from petwatch.protocol import COMIC_FINAL_STATES, MAX_REFERENCES, ComicJobReply, Event
from petwatch.tui import events, images, launcher
from petwatch.tui.commands import PetwatchCommands
from petwatch.tui.widgets import picture

RETRY_SECONDS = (0.25, 0.5, 1.0)  # reconnect attempts back off to the last value
NEW_PHOTOS_QUIET_SECONDS = 2.0  # "N new photos" waits for a burst to end...
NEW_PHOTOS_MAX_WAIT_SECONDS = 10.0  # ...but not longer than this during a long backfill
NEW_PHOTOS = "photos"  # the one key of the new-photos burst
START_TIMEOUT_SECONDS = 180.0
MAX_COMIC_RECORDS = 500  # the latest record of this many jobs is kept from the event stream


def default_theme() -> str:
    """TEXTUAL_THEME if set; a light theme when the terminal says its background is light."""
    if os.environ.get("TEXTUAL_THEME"):
        return os.environ["TEXTUAL_THEME"]
    background = os.environ.get("COLORFGBG", "").split(";")[-1]
    return "textual-light" if background in ("7", "15") else "textual-dark"


class PetwatchApp(App[int]):
    HELP_AREA = "Everywhere"  # where help lists its keys
    TITLE = "petwatch"
    CSS_PATH = "petwatch.tcss"
    COMMANDS = App.COMMANDS | {PetwatchCommands}
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help"),
        Binding("f", "folders", "Folders"),
        Binding("v", "show_selection", "Selection"),
        Binding("e", "failures", "Failures", show=False),
        Binding("y", "copy_selection", "Copy selection", show=False),
        Binding("k", "comic", "Comic of the selection", show=False),
        Binding("g", "comics", "Comics gallery", show=False),
        Binding("p", "pets", "Pets", show=False),
        Binding("s", "start_daemon", "Start daemon"),
        Binding("r", "rescan", "Rescan", show=False),
        Binding("ctrl+t", "toggle_dark", "Light/dark theme", show=False),
        # ctrl+q quits from anywhere, a text field too, so the footer shows it; q quits wherever
        # the keyboard is not in a text field (there it types a q, as in any terminal program).
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("q", "quit", "Quit", show=False),
    ]

    connected: reactive[bool | None] = reactive(None)
    starting: reactive[bool] = reactive(False)  # started from here (s), not answering yet
    daemon_starting: reactive[bool] = reactive(False)  # answering that it is loading
    # The daemon's StatusReply as last seen, kept current by events (empty until connected)
    daemon_status: reactive[Mapping[str, Any]] = reactive(dict, always_update=True)
    progress: reactive[Mapping[str, Any] | None] = reactive(None, always_update=True)  # a ProgressReply
    selection_count: reactive[int] = reactive(0)

    def __init__(
        self,
        client: AsyncDaemonClient | None = None,
        picture_class: type[Widget] | None = None,
        start_daemon: Callable[[], launcher.Launch] = launcher.start_daemon,
        retry_seconds: tuple[float, ...] = RETRY_SECONDS,
        theme: str | None = None,
    ) -> None:
        super().__init__()
        self._own_client = client is None
        self.client = client or AsyncDaemonClient()
        self.picture_class = picture_class or picture.picture_class()
        self.start_daemon = start_daemon
        self.retry_seconds = retry_seconds
        self.thumbnails = images.ThumbnailCache(600)
        self.previews = images.ThumbnailCache(8)
        self.selection: list[str] = []
        self._selected: set[str] = set()
        self.ever_connected = False
        self._photo_news = Burst(self, self._announce_new_photos)  # one key: NEW_PHOTOS
        self._initial_theme = theme or default_theme()
        self.comic_records: dict[str, ComicJobReply] = {}  # job id -> the latest record seen on the stream
        self.my_comics: set[str] = set()  # sent from this TUI: announced when they end unseen
        self.pet_names: list[str] = []  # as last seen (the palette offers "comic of <name>")
        # The places and pets a query's words can name (GET /words): Tab completes them.
        self.word_names: list[str] = []
        self._pet_news = Burst(self, self._announce_pet_photos)
        self._announced_pets_found = False
        self._config_problem_told: str | None = None

    @property
    def socket_path(self) -> Path:
        return self.client.socket

    def get_default_screen(self) -> Screen:
        from petwatch.tui.screens.search import SearchScreen

        return SearchScreen()

    def on_mount(self) -> None:
        if self._initial_theme in self.available_themes:
            self.theme = self._initial_theme
        self.listen()

    async def on_unmount(self) -> None:
        if self._own_client:
            await self.client.aclose()

    # --- the connection: one event stream, reconnecting by itself ------------------------------
    @work(exclusive=True, group="events")
    async def listen(self) -> None:
        attempt = 0
        while True:
            try:
                async for kind, data in self.client.events():
                    if kind == Event.HELLO:  # the handshake: at once, before the events after it
                        attempt = 0
                        self._connected(data)
                    else:
                        self.post_message(events.MESSAGES[kind](data))
            except DaemonStarting:
                self.daemon_starting = True  # the banner says so; we connect once it has loaded
                attempt = 0  # and keep asking often: it is seconds away
            except (PetwatchError, httpx.HTTPError, OSError, ValueError):
                self.daemon_starting = False  # not running, gone, or a garbled stream: "reconnect"
            self._disconnected()
            await asyncio.sleep(self.retry_seconds[min(attempt, len(self.retry_seconds) - 1)])
            attempt += 1

    def _connected(self, status: Mapping[str, Any]) -> None:
        again = self.ever_connected and self.connected is False
        self.ever_connected = True
        self.starting = self.daemon_starting = False
        self.daemon_status = status
        self.progress = status.get("progress")
        self.connected = True
        self.load_words()
        if again:
            self.notify("connected to the daemon again", title="petwatch")

    def watch_daemon_status(self, status: Mapping[str, Any]) -> None:
        """A config file problem is told once when it appears (the status bar keeps a mark)."""
        problem = status.get("config_problem")
        if problem and problem != self._config_problem_told:
            self.action_config_problem()
        self._config_problem_told = problem

    def action_config_problem(self) -> None:
        if problem := self.daemon_status.get("config_problem"):
            self.notify(problem, title="Config file not (all) applied", severity="warning", timeout=15)

    def _disconnected(self) -> None:
        if self.connected is not False:
            self.progress = None
            self.connected = False

    # --- the daemon's events, each a message (petwatch.tui.events) ---------------------------
    def on_state_changed(self, message: events.StateChanged) -> None:
        state = message.data.get("state", "?")
        self.daemon_status = {**self.daemon_status, "state": state}
        if state == "idle":
            self.progress = None

    def on_status_changed(self, message: events.StatusChanged) -> None:
        """The numbers once a change settled, pushed by the daemon (never asked for)."""
        self.daemon_status = message.data
        self.progress = message.data.get("progress")
        self.load_words()  # new photos may bring new places

    @work(exclusive=True, group="words")
    async def load_words(self) -> None:
        try:
            words = await self.client.words()
        except (PetwatchError, httpx.HTTPError, OSError):
            return  # completion waits for the next try; searching does not need it
        self.word_names = [*words.get("places", []), *words.get("pets", [])]

    def on_progress(self, message: events.Progress) -> None:
        self.progress = message.data
        if self.daemon_status.get("state") != "indexing":
            self.daemon_status = {**self.daemon_status, "state": "indexing"}

    def on_indexed(self, message: events.Indexed) -> None:
        status = self.daemon_status
        self.daemon_status = {**status, "indexed": message.data.get("total", status.get("indexed", 0))}
        self._photo_news.add(NEW_PHOTOS, message.data.get("count", 0))

    def on_removed(self, message: events.Removed) -> None:
        status = self.daemon_status
        self.daemon_status = {**status, "indexed": message.data.get("total", status.get("indexed", 0))}

    def on_reported(self, message: events.Reported) -> None:
        self.tell_screens(message)  # an open failure list reads the failures again

    def on_folders_changed(self, message: events.FoldersChanged) -> None:
        self.daemon_status = {**self.daemon_status, "folders": message.data.get("folders", [])}

    def on_daemon_error(self, message: events.DaemonError) -> None:
        self.notify(str(message.data.get("message", message.data)), title="Daemon error", severity="error")

    def on_upgrade(self, message: events.Upgrade) -> None:
        """An older index re-embedded with pet focus, a step at a time."""
        data = message.data
        finished = bool(data.get("finished"))
        self.daemon_status = {**self.daemon_status, "upgrade": None if finished else data}
        if finished:
            self.notify(
                f"every photo now has a pet-focused vector ({data.get('total', 0):,} photos)",
                title="Index upgraded",
            )

    def on_group_changed(self, message: events.GroupChanged) -> None:
        """Pets found for you: a new group, or one grew."""
        self.tell_screens(message)
        if message.data.get("found") and not self._announced_pets_found:
            self._announced_pets_found = True  # once: later groups show on the Pets found screen
            self.notify(
                "I found a pet that comes back again and again in your photos: press p, "
                "then d, to see the pets found and name them",
                title="Pets found",
            )

    def tell_screens(self, message: events.DaemonEvent) -> None:
        """Pass an event on to every open screen, those under the top one too: each is current
        when shown again. A screen that does not follow the event's kind ignores it."""
        for screen in self.screen_stack:
            screen.post_message(message.copy())

    # --- comics and pets: pushed by the daemon ---------------------------------------------
    def on_comic_changed(self, message: events.ComicChanged) -> None:
        job = message.data
        job_id = job.get("id")
        if not job_id:
            return
        self.comic_records.pop(job_id, None)
        self.comic_records[job_id] = job
        while len(self.comic_records) > MAX_COMIC_RECORDS:
            self.comic_records.pop(next(iter(self.comic_records)))
        self.tell_screens(message)
        state = job.get("state")
        if job_id in self.my_comics and state in COMIC_FINAL_STATES:
            self.my_comics.discard(job_id)
            follows = getattr(self.screen, "follows_comic", None)
            if follows is not None and follows(job_id):
                return  # the screen on show says it already
            prompt = format.short_text(job.get("prompt", ""), 40)
            if state == "succeeded":
                self.notify(f"“{prompt}” is ready: press g for the gallery", title="Comic ready")
            elif state == "failed":
                self.notify(
                    f"“{prompt}” failed: {job.get('error') or 'no reason given'} (g: the gallery, to retry it)",
                    title="Comic failed",
                    severity="error",
                    timeout=10,
                )

    def on_pet_photos(self, message: events.PetPhotos) -> None:
        name = message.data.get("name")
        if not name:
            return
        if name not in self.pet_names:
            self.pet_names.append(name)
        if name not in self.word_names:
            self.word_names.append(name)
        self.tell_screens(message)
        self._pet_news.add(name, len(message.data.get("new") or []))

    def _announce_pet_photos(self, counts: dict[str, int]) -> None:
        for name, count in counts.items():
            self.notify(f"{format.plural(count, 'new photo')} of {name}", title="Pets")

    async def load_comic_thumbnail(self, job_id: str, size: int = images.TILE_SIZE) -> Image.Image | None:
        """A comic's picture, at most ``size`` pixels on the long side; None if unavailable."""
        key = f"comic:{job_id}"
        cache = self.thumbnails if size <= images.TILE_SIZE else self.previews
        image = cache.get(key, size)
        if image is not None:
            return image
        try:
            data = await self.client.comic_image(job_id)
            image = await asyncio.to_thread(images.decode, data, size)
        except (PetwatchError, httpx.HTTPError, OSError, Image.DecompressionBombError):
            return None
        cache.put(key, size, image)
        return image

    def _announce_new_photos(self, counts: dict[str, int]) -> None:
        total = self.daemon_status.get("indexed")
        self.notify(
            f"{format.plural(counts[NEW_PHOTOS], 'new photo')} indexed ({format.count(total)} in all)", title="Indexed"
        )

    # --- thumbnails ----------------------------------------------------------------------
    async def load_thumbnail(self, path: str, size: int) -> Image.Image | None:
        """The daemon's thumbnail of ``path``, from memory when seen before; None if unavailable."""
        cache = self.thumbnails if size <= images.TILE_SIZE else self.previews
        image = cache.get(path, size)
        if image is not None:
            return image
        try:
            data = await self.client.thumbnail(path, size)
            image = await asyncio.to_thread(images.decode, data)
        except (PetwatchError, httpx.HTTPError, OSError, Image.DecompressionBombError):
            return None
        cache.put(path, size, image)
        return image

    # --- selection -----------------------------------------------------------------------
    def is_selected(self, path: str) -> bool:
        return path in self._selected

    def toggle_selected(self, path: str) -> bool:
        if path in self._selected:
            self.selection.remove(path)
        else:
            self.selection.append(path)
        self.selection_changed()
        return path in self._selected

    def unselect_all(self) -> None:
        self.selection.clear()
        self.selection_changed()

    def selection_changed(self) -> None:
        """Call after changing ``selection`` from outside: counts and tiles follow."""
        self.selection[:] = list(dict.fromkeys(self.selection))
        self._selected = set(self.selection)
        self.selection_count = len(self.selection)

    def save_selection(self, target: str) -> Path | None:
        if not self.selection:
            self.notify("nothing selected yet: select hits with Space", severity="warning")
            return None
        path = Path(os.path.expanduser(target or "petwatch-selection.txt")).absolute()
        try:
            path.write_text("".join(f"{p}\n" for p in self.selection))
        except OSError as error:
            self.notify(f"could not write {path}: {error.strerror or error}", severity="error")
            return None
        self.notify(f"saved {format.plural(len(self.selection), 'path')} to {path}")
        return path

    # --- actions -------------------------------------------------------------------------
    def _search_screen(self):
        from petwatch.tui.screens.search import SearchScreen

        while not isinstance(self.screen, SearchScreen) and len(self.screen_stack) > 1:
            self.pop_screen()
        return self.screen if isinstance(self.screen, SearchScreen) else None

    def action_focus_query(self) -> None:
        if screen := self._search_screen():
            screen.action_focus_query()

    def action_browse(self) -> None:
        if screen := self._search_screen():
            screen.action_browse()

    def action_more(self) -> None:
        if screen := self._search_screen():
            screen.action_more()

    def action_help(self) -> None:
        from petwatch.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_folders(self) -> None:
        from petwatch.tui.screens.folders import FoldersScreen

        if not any(isinstance(s, FoldersScreen) for s in self.screen_stack):
            self.push_screen(FoldersScreen())

    def action_failures(self) -> None:
        from petwatch.tui.screens.failures import FailuresScreen

        if not self.connected:
            self.notify("the daemon is not running: no failures to list", severity="warning")
        elif not isinstance(self.screen, FailuresScreen):
            self.push_screen(FailuresScreen())

    def action_show_selection(self) -> None:
        from petwatch.tui.screens.selection import SelectionScreen

        if not isinstance(self.screen, SelectionScreen):
            self.push_screen(SelectionScreen())

    def action_copy_selection(self) -> None:
        if not self.selection:
            self.notify("nothing selected yet: select hits with Space", severity="warning")
            return
        self.copy_to_clipboard("\n".join(self.selection))
        self.notify(f"copied {format.plural(len(self.selection), 'path')} to the clipboard")

    def action_unselect_all(self) -> None:
        self.unselect_all()

    def bring_up(self, screen_class: type[Screen], make: Callable[[], Screen]) -> None:
        """Back to the open screen of ``screen_class`` (closing those above it), else a new one."""
        if isinstance(self.screen, screen_class):
            return
        if any(isinstance(screen, screen_class) for screen in self.screen_stack):
            while not isinstance(self.screen, screen_class):
                self.pop_screen()
        else:
            self.push_screen(make())

    def action_comics(self) -> None:
        from petwatch.tui.screens.comics import ComicsScreen

        self.bring_up(ComicsScreen, ComicsScreen)

    def action_pets(self) -> None:
        from petwatch.tui.screens.pets import PetsScreen

        self.bring_up(PetsScreen, PetsScreen)

    def open_pet_album(self, name: str) -> None:
        from petwatch.tui.screens.pets import PetAlbumScreen

        if isinstance(self.screen, PetAlbumScreen) and self.screen.name_of_pet == name:
            return
        self.push_screen(PetAlbumScreen(name))

    def action_pet_new(self) -> None:
        """A pet profile from the selected photos: asks for the name, then the daemon makes it."""
        from petwatch.tui.screens.pets import PetNameScreen

        if not self.selection:
            self.notify(
                "select example photos of your pet first (Space on a hit; three or more "
                "work best), then make the profile",
                severity="warning",
            )
            return
        photos = list(self.selection)

        def named(name: str | None) -> None:
            if name:
                self.make_pet(name, photos)

        self.push_screen(PetNameScreen(len(photos)), named)

    @work(group="pets-edit")
    async def make_pet(self, name: str, photos: list[str]) -> None:
        self.notify(f"making {name}'s profile from {format.plural(len(photos), 'photo')}…", title="Pets")
        try:
            summary = await self.client.pet_add(name, photos)
        except PetwatchError as error:
            self.notify(str(error), title="Pet profile not made", severity="error")
            return
        name = summary.get("name", name)
        if name not in self.pet_names:
            self.pet_names.append(name)
        if name not in self.word_names:
            self.word_names.append(name)
        self.notify(
            f"{name}: {format.plural(summary.get('examples', len(photos)), 'example')}, "
            f"{format.plural(summary.get('count', 0), 'photo')} in the album",
            title="Pets",
        )
        self.open_pet_album(name)

    @work(group="pet-comic")
    async def comic_of_pet(self, name: str) -> None:
        """The comic screen with the pet's best photos (at most MAX_REFERENCES) as references."""
        from petwatch.tui.screens.comic import ComicScreen

        try:
            paths = await self.client.pet_paths(name, MAX_REFERENCES)
        except PetwatchError as error:
            self.notify(str(error), title="No comic", severity="error")
            return
        if not paths:
            self.notify(f"{name}'s album is empty: no photos to draw from", severity="warning")
            return
        self.push_screen(ComicScreen(paths, title=f"Comic of {name}"))

    def action_comic(self) -> None:
        """The comic screen with the selected photos as its references."""
        from petwatch.tui.screens.comic import ComicScreen

        if not self.selection:
            self.notify("select the photos for the comic first (Space on a hit)", severity="warning")
            return
        if isinstance(self.screen, ComicScreen):
            return
        self.push_screen(ComicScreen(list(self.selection)))

    def action_start_daemon(self) -> None:
        if self.connected:
            self.notify("the daemon is already running")
            return
        if self.starting or self.daemon_starting:
            return
        try:
            launch = self.start_daemon()
        except PetwatchError as error:
            self.notify(str(error), title="Daemon not started", severity="error")
            return
        self.starting = True
        self.notify(launch.describe(), title="petwatch")
        self._watch_launch(launch)

    @work(group="launch")
    async def _watch_launch(self, launch: launcher.Launch) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while self.starting and time.monotonic() < deadline:
            if launch.process is not None and launch.process.poll() is not None:
                self.starting = False
                tail = launcher.log_tail(launch.log)
                self.notify(
                    f"the daemon stopped at once (exit {launch.process.returncode})" + (f": {tail}" if tail else ""),
                    title="Daemon not started",
                    severity="error",
                    timeout=15,
                )
                return
            await asyncio.sleep(0.5)
        if self.starting:
            self.starting = False
            self.notify(
                f"the daemon did not answer in {START_TIMEOUT_SECONDS:.0f}s; see {launch.log or 'its log'}",
                severity="error",
            )

    @work(exclusive=True, group="rescan")
    async def action_rescan(self) -> None:
        try:
            await self.client.rescan()
        except PetwatchError as error:
            self.notify(str(error), title="Rescan", severity="error")
            return
        self.notify("rescan queued: every watched folder is walked for changes")

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def open_external(self, path: str) -> None:
        try:
            launcher.open_in_viewer(path)
        except PetwatchError as error:
            self.notify(str(error), severity="error")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start_daemon":
            return self.connected is False and not self.starting and not self.daemon_starting
        return True


class Burst:
    """Counts by key that come in bursts (a backfill), announced once a burst is over: after
    NEW_PHOTOS_QUIET_SECONDS without news, or NEW_PHOTOS_MAX_WAIT_SECONDS after the first."""

    def __init__(self, app: App, announce: Callable[[dict[str, int]], None]) -> None:
        self.app = app
        self.announce = announce
        self.counts: dict[str, int] = {}
        self.since = 0.0
        self.timer: Timer | None = None

    def add(self, key: str, count: int) -> None:
        if count <= 0:
            return
        now = time.monotonic()
        if not self.counts:
            self.since = now
        self.counts[key] = self.counts.get(key, 0) + count
        if self.timer is not None:
            self.timer.stop()
        if now - self.since >= NEW_PHOTOS_MAX_WAIT_SECONDS:
            self.flush()
        else:
            self.timer = self.app.set_timer(NEW_PHOTOS_QUIET_SECONDS, self.flush)

    def flush(self) -> None:
        counts, self.counts, self.timer = self.counts, {}, None
        if counts:
            self.announce(counts)


def run() -> int:
    """``petwatch tui``: probe the terminal's picture support, then run the app."""
    picture.detect_terminal_graphics()
    app = PetwatchApp()
    app.run()
    return app.return_code or 0
