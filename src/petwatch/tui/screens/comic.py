"""One comic: the reference photos, the prompt, size and quality, the cost estimate, Send; then
the job followed live and its result, a failure's reason (edit the prompt and retry), or a
refinement of the finished comic.

The daemon owns the job. This screen learns how it goes from the app's event stream (``comic``
events, kept in ``app.comic_records``), never by polling; after a reconnection it asks for the
job's record once, since events may have been missed meanwhile. Leaving the screen leaves the
job running: the app says when it ends, and the gallery (g) shows it.

Modes: ``new`` (nothing sent yet), ``follow`` (queued or running: Cancel), ``refine`` (done:
the prompt becomes an instruction for a revised comic), ``retry`` (failed or cancelled: the
prompt and photos are kept to edit and send again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import httpx
from PIL import Image
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Label, ProgressBar, Select, Static, TextArea

from petwatch import format
from petwatch.errors import PetwatchError
from petwatch.protocol import COMIC_FINAL_STATES, MAX_REFERENCES, QUEUED, RUNNING, SUCCEEDED, ComicEstimateReply
from petwatch.tui import images
from petwatch.tui.events import ComicChanged
from petwatch.tui.images import TILE_SIZE
from petwatch.tui.screens.base import PetwatchScreen
from petwatch.tui.widgets.banner import ConnectionBanner
from petwatch.tui.widgets.picture import HalfBlockPicture, Picture
from petwatch.tui.widgets.status_bar import StatusBar

# The daemon's choices (petwatch.comics; a test keeps them equal): the TUI imports no comics
# module (it pulls in the OpenAI SDK).
SIZE_OPTIONS = [
    ("1024x1024 square", "1024x1024"),
    ("1536x1024 landscape", "1536x1024"),
    ("1024x1536 portrait", "1024x1536"),
    ("auto", "auto"),
]
QUALITY_OPTIONS = [("low", "low"), ("medium", "medium"), ("high", "high"), ("auto", "auto")]
STATE_RANK = {QUEUED: 0, RUNNING: 1, **dict.fromkeys(COMIC_FINAL_STATES, 2)}  # lower: a stale record

NEW, FOLLOW, REFINE, RETRY = "new", "follow", "refine", "retry"
SEND_LABELS = {NEW: "Send", FOLLOW: "Send", REFINE: "Refine", RETRY: "Retry"}


def mode_of(job: Mapping[str, Any] | None) -> str:
    if job is None:
        return NEW
    state = job.get("state")
    if state == SUCCEEDED:
        return REFINE
    if state in COMIC_FINAL_STATES:
        return RETRY
    return FOLLOW


class ComicScreen(PetwatchScreen):
    """``paths``: the reference photos (the selection; at most 16 are used). ``job``: a job
    record to show instead of a new comic (from the gallery). ``edit``: put the keyboard in the
    prompt at once (to refine or retry)."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+s", "send", "Send", priority=True),
        Binding("c", "cancel_job", "Cancel comic"),
        Binding("n", "new_comic", "New comic"),
        Binding("z", "zoom", "Zoom"),
        Binding("o", "open_external", "Viewer"),
        Binding("y", "copy_path", "Copy path", show=False),
    ]

    def __init__(
        self, paths: list[str], job: Mapping[str, Any] | None = None, title: str | None = None, edit: bool = True
    ) -> None:
        super().__init__()
        unique = list(dict.fromkeys(paths))
        self.selected_count = len(unique)
        self.paths = unique[:MAX_REFERENCES]
        self.heading = title
        self.job = job
        self.mode = mode_of(job)
        self.edit = edit
        self.estimate_data: ComicEstimateReply | None = None
        self.image: Image.Image | None = None
        self.image_path: str | None = None  # the file of the comic on show
        self.message = ""
        self.sending = False
        self.missing_thumbnails = 0

    @property
    def job_id(self) -> str | None:
        return self.job["id"] if self.job else None

    def follows_comic(self, job_id: str) -> bool:
        """Whether this screen shows ``job_id`` (the app then does not announce its end)."""
        return job_id == self.job_id

    # --- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield ConnectionBanner()
        with Horizontal(id="comic-body"):
            with VerticalScroll(id="comic-side"):
                yield Static("", id="comic-title")
                yield Static("", id="comic-refs-info")
                with Grid(id="comic-refs"):
                    for path in self.paths:
                        tile = HalfBlockPicture(classes="comic-ref")
                        tile.tooltip = path
                        yield tile
                yield Label("", id="comic-prompt-label")
                yield TextArea(
                    id="comic-prompt", soft_wrap=True, compact=True, show_cursor=True, highlight_cursor_line=False
                )
                with Horizontal(id="comic-options"):
                    yield Label("size", classes="field-label")
                    yield Select(SIZE_OPTIONS, prompt="default", id="comic-size", compact=True)
                    yield Label("quality", classes="field-label")
                    yield Select(QUALITY_OPTIONS, prompt="default", id="comic-quality", compact=True)
                yield Static("", id="comic-estimate")
                with Horizontal(id="comic-buttons"):
                    yield Button("Send", id="comic-send", variant="primary", compact=True)
                    yield Button("Cancel comic", id="comic-cancel", variant="error", compact=True)
                    yield Button("New comic", id="comic-new", compact=True)
                yield Static("", id="comic-message")
            with Vertical(id="comic-view"):
                with Container(id="comic-frame"):
                    yield self.petwatch.picture_class(id="comic-picture")
                    yield Static("", id="comic-placeholder")
                with Horizontal(id="comic-progress"):
                    yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="comic-bar")
                    yield Static("", id="comic-progress-text")
                yield Static("", id="comic-result", markup=False)
        yield StatusBar()
        yield Footer()

    @property
    def prompt(self) -> TextArea:
        return self.query_one("#comic-prompt", TextArea)

    def on_mount(self) -> None:
        self.watch(self.petwatch, "connected", self._connection_changed, init=False)
        if self.job is not None:
            self.job = self._newest(self.job)
            self.mode = mode_of(self.job)
            self.query_one("#comic-size", Select).value = self.job.get("size") or Select.NULL
            self.query_one("#comic-quality", Select).value = self.job.get("quality") or Select.NULL
            if self.mode != REFINE:
                self._set_prompt(self.job.get("prompt", ""))
            if self.mode == REFINE:
                self.load_image(self.job["id"])
            elif self.mode == FOLLOW and self.job.get("parent"):
                self.load_image(self.job["parent"])  # while a refinement draws: the comic it revises
        self.set_interval(1.0, self._tick)
        self.load_references()
        self._show()
        self.estimate()
        if self.mode != FOLLOW and self.edit:
            self.prompt.focus()
        else:
            self.set_focus(None)

    # --- showing the state -------------------------------------------------------------------
    def _show(self) -> None:
        """Every part of the screen from ``mode``, ``job``, ``image`` and ``message``."""
        mode, job = self.mode, self.job or {}
        title = self.query_one("#comic-title", Static)
        name = _escape(self.heading or "New comic")
        if mode == NEW:
            title.update(f"[b]{name}[/]")
        elif mode == FOLLOW:
            title.update(f"[b]Comic {job['id']}[/]  {job.get('state')}…")
        elif mode == REFINE:
            title.update(f"[b]Comic {job['id']}[/]  [$text-success]✓ done[/]")
        else:
            title.update(f"[b]Comic {job['id']}[/]  [$text-error]{job.get('state')}[/]")
        refs = format.plural(len(self.paths), "reference photo")
        if self.selected_count > len(self.paths):
            refs += (
                f" (the first {MAX_REFERENCES} of the {self.selected_count} selected: "
                f"the image API takes at most {MAX_REFERENCES})"
            )
        if mode == REFINE:
            refs += ", plus the comic itself"
        if self.missing_thumbnails:
            refs += f"; {self.missing_thumbnails} not in the index (no thumbnail)"
        self.query_one("#comic-refs-info", Static).update(refs)
        self.query_one("#comic-prompt-label", Label).update(
            "Refine it: what should change?" if mode == REFINE else "What happens in the comic?"
        )
        prompt = self.prompt
        prompt.disabled = mode == FOLLOW
        prompt.placeholder = (
            "e.g. make it night-time, add a speech bubble"
            if mode == REFINE
            else "e.g. my cat as a space pirate, four panels"
        )
        for select in self.query(Select):
            select.disabled = mode == FOLLOW
        send = self.query_one("#comic-send", Button)
        send.label = SEND_LABELS[mode]
        send.disabled = mode == FOLLOW or self.sending
        self.query_one("#comic-cancel", Button).display = mode == FOLLOW
        self.query_one("#comic-new", Button).display = mode in (REFINE, RETRY)
        message = self.query_one("#comic-message", Static)
        message.update(self.message)
        message.display = bool(self.message)
        self._show_frame()
        self._tick()
        self.refresh_bindings()

    def _show_frame(self) -> None:
        mode, job = self.mode, self.job or {}
        picture = self.query_one("#comic-picture")
        placeholder = self.query_one("#comic-placeholder", Static)
        placeholder.remove_class("-error")
        show_picture = self.image is not None and mode in (FOLLOW, REFINE)
        picture.display = show_picture
        placeholder.display = not show_picture
        if mode == NEW:
            placeholder.update(
                "The comic appears here once it is drawn.\n\nWrite what should happen, "
                "check the estimate, then [b]Send[/] ([b]ctrl+s[/])."
            )
        elif mode == FOLLOW:
            placeholder.update(
                "Drawing the comic… it appears here when it is done.\n\n"
                "You may leave this screen: the daemon keeps drawing, and the "
                "gallery ([b]g[/]) has it."
            )
        elif mode == REFINE:
            placeholder.update("Loading the comic…")
        elif job.get("state") == "cancelled":
            placeholder.update(
                "Cancelled.\n\nThe prompt and photos are kept: press [b]Retry[/] ([b]ctrl+s[/]) to send it again."
            )
        else:
            placeholder.add_class("-error")
            placeholder.update(
                f"[b]The comic failed[/]\n\n{_escape(job.get('error') or 'no reason given')}"
                "\n\nEdit the prompt on the left and press [b]Retry[/] ([b]ctrl+s[/])."
            )
        result = self.query_one("#comic-result", Static)
        if show_picture and self.image_path:
            cost = job.get("cost_usd") if mode == REFINE else None
            result.update(
                format.home_relative(self.image_path) + (f"   cost {format.usd(cost)}" if cost is not None else "")
            )
        else:
            result.update("")

    def _tick(self) -> None:
        """The progress line while the job runs (its own clock; the daemon is not asked)."""
        row = self.query_one("#comic-progress")
        row.display = self.mode == FOLLOW
        if self.mode != FOLLOW or not self.job:
            return
        text = self.job.get("progress") or self.job.get("state", "")
        started = self.job.get("started_at") or self.job.get("created_at")
        try:
            since = datetime.fromisoformat(started) if started else None
        except ValueError:
            since = None
        if since is not None:
            seconds = (datetime.now(UTC) - since).total_seconds()
            text += f" · {format.duration(max(0.0, seconds))}"
        self.query_one("#comic-progress-text", Static).update(text)

    def _set_prompt(self, text: str) -> None:
        prompt = self.prompt
        prompt.text = text
        prompt.move_cursor(prompt.document.end)  # ready to edit at the end

    def _say(self, text: str, error: bool = False) -> None:
        self.message = text
        self.query_one("#comic-message", Static).set_class(error, "-error")
        self._show()

    # --- the job, as the daemon pushes it ------------------------------------------------------
    def _newest(self, job: Mapping[str, Any]) -> Mapping[str, Any]:
        """``job`` or the record the event stream brought since, whichever is further on."""
        seen = self.petwatch.comic_records.get(job["id"])
        if seen is not None and STATE_RANK.get(seen.get("state", ""), 0) >= STATE_RANK.get(job.get("state", ""), 0):
            return seen
        return job

    def on_comic_changed(self, message: ComicChanged) -> None:
        job = message.data
        if self.job and job["id"] == self.job["id"]:
            self.follow(job)

    def follow(self, job: Mapping[str, Any]) -> None:
        """Show ``job`` (a newer record of the one on show, or a new job just sent)."""
        job = {key: value for key, value in job.items() if key != "chain"}
        if self.job and self.job["id"] == job["id"]:
            if STATE_RANK.get(job.get("state", ""), 0) < STATE_RANK.get(self.job.get("state", ""), 0):
                return  # an older record than the one on show
        before = self.mode
        self.job = job
        self.mode = mode_of(job)
        if self.mode == REFINE and before != REFINE:
            self.message = ""
            self.load_image(job["id"])
            self._set_prompt("")
            self.estimate()
        elif self.mode == RETRY and before != RETRY:
            self.message = ""
            self.estimate()
        self._show()
        if self.mode in (REFINE, RETRY) and before == FOLLOW:
            self.prompt.focus()

    def _connection_changed(self, connected: bool | None) -> None:
        """Back in touch with the daemon: catch up on what failed or was missed meanwhile."""
        if not connected:
            return
        if self.mode == FOLLOW:
            self.resync()
        if self.estimate_data is None:
            self.estimate()
        if self.missing_thumbnails:
            self.load_references()

    @work(exclusive=True, group="comic-resync")
    async def resync(self) -> None:
        """After a reconnection: events may have been missed, so ask once."""
        if not self.job_id:
            return
        try:
            record = await self.petwatch.client.comic(self.job_id)
        except PetwatchError:
            return
        self.follow(record)

    # --- pictures ------------------------------------------------------------------------------
    @work(group="comic-refs")
    async def load_references(self) -> None:
        tiles = list(self.query(".comic-ref").results(HalfBlockPicture))
        pictures = await asyncio.gather(*(self.petwatch.load_thumbnail(path, TILE_SIZE) for path in self.paths))
        for tile, image in zip(tiles, pictures, strict=False):
            tile.image = image
            tile.set_class(image is None, "-missing")
        self.missing_thumbnails = sum(image is None for image in pictures)
        if self.missing_thumbnails:
            self._show()

    @work(exclusive=True, group="comic-image")
    async def load_image(self, job_id: str) -> None:
        try:
            data = await self.petwatch.client.comic_image(job_id)
            image = await asyncio.to_thread(images.decode, data)
        except (PetwatchError, httpx.HTTPError, OSError, Image.DecompressionBombError) as error:
            self._say(f"cannot show the comic: {error}", error=True)
            return
        self.image = image
        record = self.job if self.job_id == job_id else self.petwatch.comic_records.get(job_id)
        self.image_path = (record or {}).get("image")
        cast(Picture, self.query_one("#comic-picture")).image = image
        self._show()

    # --- the estimate ---------------------------------------------------------------------------
    def _options(self) -> tuple[str | None, str | None]:
        size = self.query_one("#comic-size", Select).value
        quality = self.query_one("#comic-quality", Select).value
        return (
            None if size is Select.NULL else cast(str, size),
            None if quality is Select.NULL else cast(str, quality),
        )

    @on(Select.Changed)
    def _option_changed(self) -> None:
        size, quality = self._options()
        shown: Mapping[str, Any] = self.estimate_data or {}
        if (size, quality) != (shown.get("size"), shown.get("quality")):
            self.estimate()

    @work(exclusive=True, group="comic-estimate")
    async def estimate(self) -> None:
        size, quality = self._options()
        job = self.job or {}
        if self.mode == REFINE:
            request = {"parent": job["id"]}
        elif self.mode == RETRY and job.get("parent"):
            request = {"photos": self.paths, "parent": job["parent"]}
        else:
            request = {"photos": self.paths}
        line = self.query_one("#comic-estimate", Static)
        try:
            estimate = await self.petwatch.client.comic_estimate(size=size, quality=quality, **request)
        except PetwatchError as error:
            self.estimate_data = None
            line.set_class(True, "-over")
            line.update(f"no estimate: {error}")
            return
        self.estimate_data = estimate
        self._show_estimate(estimate)
        # "default" shows what the daemon's settings chose
        if size is None and estimate.get("size"):
            self.query_one("#comic-size", Select).value = estimate["size"]
        if quality is None and estimate.get("quality"):
            self.query_one("#comic-quality", Select).value = estimate["quality"]

    def _show_estimate(self, estimate: ComicEstimateReply) -> None:
        line = self.query_one("#comic-estimate", Static)
        budget = estimate.get("budget_usd") or 0.0
        spent = estimate.get("spent_today_usd") or 0.0
        text = (
            f"[b]about {format.usd(estimate.get('usd'))}[/] for "
            f"{format.plural(estimate.get('references', len(self.paths)), 'reference image')}\n"
            f"today {format.usd(spent)} of the {format.usd(budget)} daily cap spent"
        )
        over = not estimate.get("within_budget", True) or bool(estimate.get("no_key"))
        if estimate.get("no_key"):  # said before anyone writes a prompt or presses send
            text += f"\n{_escape(str(estimate['no_key']))}"
        elif budget <= 0:
            text += "\ncomics are switched off: comic_daily_budget_usd is 0"
        elif over:
            text += "\nthis comic would go over today's cap: the daemon will refuse it"
        line.set_class(over, "-over")
        line.update(text)
        line.tooltip = f"{estimate.get('model', '?')}: {estimate.get('basis', '')}"

    # --- actions ---------------------------------------------------------------------------------
    def action_back(self) -> None:
        # Leave a field first (then the screen's keys work), unless it is an empty prompt:
        # nothing typed to keep, and Esc there means "close", as after a comic is drawn.
        empty_prompt = isinstance(self.focused, TextArea) and not self.focused.text.strip()
        if isinstance(self.focused, (TextArea, Select)) and not empty_prompt:
            self.set_focus(None)
            return
        self.dismiss()

    @on(Button.Pressed, "#comic-send")
    def action_send(self) -> None:
        if self.mode == FOLLOW or self.sending:
            return
        text = self.prompt.text.strip()
        if not text:
            self._say(
                "write what should happen in the comic first"
                if self.mode != REFINE
                else "write what should change first",
                error=True,
            )
            self.prompt.focus()
            return
        self.send(text)

    @work(exclusive=True, group="comic-send")
    async def send(self, text: str) -> None:
        client = self.petwatch.client
        size, quality = self._options()
        job = self.job or {}
        self.sending = True
        self._say("sending…")
        try:
            if self.mode == REFINE:
                record = await client.comic_refine(job["id"], text, size=size, quality=quality)
            elif self.mode == RETRY and (size, quality) in ((job.get("size"), job.get("quality")), (None, None)):
                record = await client.comic_retry(job["id"], text)  # same photos, size, quality
            elif self.mode == RETRY:
                record = await client.comic_submit(
                    job.get("photos") or self.paths, text, size=size, quality=quality, parent=job.get("parent")
                )
            else:
                record = await client.comic_submit(self.paths, text, size=size, quality=quality)
        except PetwatchError as error:
            self.sending = False
            self._say(f"not sent: {error}", error=True)
            self.notify(str(error), title="Comic not sent", severity="error")
            return
        self.sending = False
        self.message = ""
        self.petwatch.my_comics.add(record["id"])
        self.follow(self._newest(record))  # the events may have come before the answer

    @on(Button.Pressed, "#comic-cancel")
    def action_cancel_job(self) -> None:
        if self.mode == FOLLOW:
            self.cancel_job()

    @work(group="comic-cancel")
    async def cancel_job(self) -> None:
        if not self.job_id:
            return
        try:
            record = await self.petwatch.client.comic_cancel(self.job_id)
        except PetwatchError as error:
            self.notify(str(error), title="Not cancelled", severity="error")
            return
        self.follow(record)

    @on(Button.Pressed, "#comic-new")
    def action_new_comic(self) -> None:
        """Start over from the same photos (the last prompt kept to edit)."""
        if self.mode not in (REFINE, RETRY):
            return
        job = self.job or {}
        self.job, self.mode, self.message = None, NEW, ""
        self.image, self.image_path = None, None
        self._set_prompt(job.get("prompt", ""))
        self._show()
        self.estimate()
        self.prompt.focus()

    def action_zoom(self) -> None:
        self.toggle_class("-zoomed")

    def action_open_external(self) -> None:
        if self.image_path:
            self.petwatch.open_external(self.image_path)

    def action_copy_path(self) -> None:
        if self.image_path:
            self.app.copy_to_clipboard(self.image_path)
            self.notify("path copied to the clipboard")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "send":
            return self.mode != FOLLOW and not self.sending
        if action == "cancel_job":
            return self.mode == FOLLOW
        if action == "new_comic":
            return self.mode in (REFINE, RETRY)
        if action == "copy_path":
            return bool(self.image_path)
        if action == "open_external":
            return bool(self.image_path)  # without a viewer the key says what to install
        return True


def _escape(text: str) -> str:
    """Plain text inside Textual markup."""
    return text.replace("[", r"\[")
