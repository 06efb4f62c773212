"""The main screen: a query (a photo's path, or words), the hits as a grid, page further, select."""

from __future__ import annotations

import os

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Checkbox, Footer, Input, Label, Static

from petwatch import format
from petwatch.errors import PetwatchError
from petwatch.protocol import DEFAULT_MIN_SCORE, DEFAULT_TOP_K, MAX_TOP_K, PET_SPECIES
from petwatch.tui.screens.base import GridScreen
from petwatch.tui.widgets.banner import ConnectionBanner
from petwatch.tui.widgets.query_input import QueryInput, looks_like_path
from petwatch.tui.widgets.results import ResultsGrid, Tile
from petwatch.tui.widgets.status_bar import StatusBar

# The fields start empty, showing the daemon's live top_k and min_score settings (its status)
# as their placeholders; a search sends the top-k it pages with (typed, else the daemon's: offset
# + page stays within MAX_HITS, and a page short of it means the hits ran out) and the minimum
# score typed, else none (the daemon's setting applies).
MAX_HITS = MAX_TOP_K
NO_CUT = "any"  # the minimum score field's placeholder when the daemon keeps every hit


def cut_text(min_score: float | None) -> str:
    """A minimum score as the header shows it: no cut is not a number."""
    return NO_CUT if min_score is None or min_score <= DEFAULT_MIN_SCORE else f"{min_score:g}"


# Paragraphs without line breaks inside them: the text reflows to any width (80 columns too).
EMPTY_TEXT = "\n\n".join(
    [
        "[b]Find every photo of your pet from one example.[/b]",
        "Type the path of a photo of your pet above and press [b]Enter[/] ([b]Tab[/] or [b]→[/] "
        "completes the path), or press [b]Esc[/] and then [b]b[/] to browse for one. Or type words: "
        "what, when, where and who, such as [b]rex at the beach in lisbon 2023[/] ([b]Tab[/] "
        "completes places and pets' names).",
        "In the results, arrows move, [b]Enter[/] opens a hit large, [b]Space[/] selects it, [b]a[/] "
        "searches again from it and [b]m[/] shows more. Outside the query field, [b]f[/] manages the "
        "watched folders, [b]?[/] lists every key and [b]q[/] quits; [b]ctrl+p[/] opens the commands "
        "and [b]ctrl+q[/] quits from anywhere.",
    ]
)


class SearchScreen(GridScreen):
    HELP_AREA = "Search screen"  # where help lists its keys
    BINDINGS = [
        Binding("slash", "focus_query", "Query"),
        Binding("b", "browse", "Browse"),
        Binding("m", "more", "More hits"),
        Binding("t", "toggle_pets_only", "Pets only"),
        Binding("escape", "focus_results", "Leave the query field", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.last_query: dict | None = None  # {"path", "by_photo", "text", "top_k", "min_score"}
        self.exhausted = False

    def compose(self) -> ComposeResult:
        yield ConnectionBanner()
        with Horizontal(id="search-bar"):
            yield QueryInput(
                placeholder="a photo's path, or words: rex at the beach 2023 (Tab completes)",
                id="query",
                compact=True,
                names=lambda: self.petwatch.word_names,
            )
            yield Label("top", classes="field-label")
            yield Input(
                placeholder=str(DEFAULT_TOP_K),
                id="top-k",
                type="integer",
                compact=True,
                max_length=4,
                tooltip=f"how many hits per page (1-{MAX_HITS}); empty: the daemon's setting",
            )
            yield Label("min", classes="field-label")
            yield Input(
                placeholder=NO_CUT,
                id="min-score",
                type="number",
                compact=True,
                max_length=6,
                tooltip="minimum similarity (-1..1); empty: the daemon's setting",
            )
            yield Checkbox(
                "pets only", id="pets-only", compact=True, tooltip="only photos that show a dog or a cat (t)"
            )
            yield Button("Search", id="search-button", compact=True, variant="primary")
            yield Button("Browse", id="browse-button", compact=True)
        with Horizontal(id="results-header"):
            yield Static("", id="results-info")
            yield Static("", id="hit-info")
        yield Static("", id="readings", markup=False)
        yield ResultsGrid(id="results")
        yield Static(EMPTY_TEXT, id="results-empty")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#query", QueryInput).focus()
        self.watch(self.petwatch, "connected", self._connection_changed)
        self.watch(self.petwatch, "daemon_status", self._settings_changed)

    def _settings_changed(self, status) -> None:
        """The fields' placeholders: what a search without them takes, the daemon's settings."""
        self.query_one("#top-k", Input).placeholder = str(status.get("top_k", DEFAULT_TOP_K))
        self.query_one("#min-score", Input).placeholder = cut_text(status.get("min_score"))

    def _connection_changed(self, _connected: bool | None) -> None:
        # after any focus change already queued (focus() is deferred too)
        self.call_after_refresh(self._focus_for_connection)

    def _focus_for_connection(self) -> None:
        """Without a daemon, an empty query field gives up the keyboard, so s (start), f, ?
        and q work at once; it takes it back when the daemon answers."""
        query = self.query_one("#query", QueryInput)
        connected = self.petwatch.connected
        if connected is False and self.focused in (None, query) and not query.value:
            self.set_focus(None)
        elif connected and self.focused is None and self.app.screen is self and not self.grid.hits:
            query.focus()

    # --- actions -------------------------------------------------------------------------
    def action_focus_query(self) -> None:
        self.query_one("#query", QueryInput).focus()

    def action_focus_results(self) -> None:
        if self.grid.hits:
            self.grid.focus()
        else:
            self.set_focus(None)  # keys reach the screen and app bindings (f, ?, q...)

    def action_toggle_pets_only(self) -> None:
        box = self.query_one("#pets-only", Checkbox)
        box.value = not box.value

    @on(Checkbox.Changed, "#pets-only")
    def _pets_only_changed(self) -> None:
        if self.last_query is None:
            return
        if self.last_query["text"]:  # the same query again, filtered (or not)
            self.search_words(self.last_query["text"])
        else:
            self.search(self.last_query["path"], self.last_query["by_photo"])

    def action_browse(self) -> None:
        from petwatch.tui.screens.browse import BrowseScreen

        current = self.query_one("#query", QueryInput).value.strip()
        self.app.push_screen(BrowseScreen(self._browse_start(current)), self._browsed)

    def _browse_start(self, current: str) -> str:
        candidates = [os.path.dirname(os.path.expanduser(current)) if current else ""]
        candidates += [f["path"] for f in self.petwatch.daemon_status.get("folders", [])]
        candidates.append(os.path.expanduser("~"))
        return next((c for c in candidates if c and os.path.isdir(c)), os.sep)

    def _browsed(self, path: str | None) -> None:
        if path:
            self.query_one("#query", QueryInput).value = path
            self.search(path)

    def action_more(self) -> None:
        if self.last_query is None or not self.grid.hits:
            self.notify("search first: there is nothing to show more of", severity="warning")
            return
        if self.exhausted:
            self.notify("no more hits above the minimum score")
            return
        offset = len(self.grid.hits)
        page = min(self.last_query["top_k"], MAX_HITS - offset)
        if page <= 0:
            self.notify(f"at most {MAX_HITS} hits per search", severity="warning")
            return
        self.run_search(self.last_query, page, offset)

    @on(Input.Submitted)
    @on(Button.Pressed, "#search-button")
    def _submitted(self) -> None:
        text = self.query_one("#query", QueryInput).value.strip()
        if not text:
            self.notify("type the path of a photo, or words, first (or press b to browse)", severity="warning")
            self.action_focus_query()
            return
        if looks_like_path(text) or os.path.exists(os.path.expanduser(text)):
            self.search(text)  # a path: search by that photo
        else:
            self.search_words(text)

    @on(Button.Pressed, "#browse-button")
    def _browse_pressed(self) -> None:
        self.action_browse()

    # --- searching ---------------------------------------------------------------------------
    def search(self, path: str, by_photo: bool = False) -> None:
        """A new search from ``path`` (an image file, or with by_photo an indexed photo)."""
        try:
            top_k, min_score = self._limits()
        except ValueError as error:
            self.notify(str(error), severity="error")
            return
        path = os.path.abspath(os.path.expanduser(path))
        if not by_photo and not os.path.exists(path):
            by_photo = True  # not on disk (an offline drive?): maybe the daemon knows it
        self._start({"path": path, "by_photo": by_photo, "text": None, "top_k": top_k, "min_score": min_score})

    def search_words(self, text: str) -> None:
        """A new search in words: what, when, where and who."""
        try:
            top_k, min_score = self._limits()
        except ValueError as error:
            self.notify(str(error), severity="error")
            return
        self._start({"path": None, "by_photo": False, "text": text, "top_k": top_k, "min_score": min_score})

    def _start(self, query: dict) -> None:
        self.last_query = query
        self.exhausted = False
        self.run_search(query, query["top_k"], 0)

    def search_from_hit(self, hit: Tile) -> None:
        self.query_one("#query", QueryInput).value = hit["path"]
        self.search(hit["path"], by_photo=True)

    def _limits(self) -> tuple[int, float | None]:
        """The top-k to page with and the minimum score to send (None: the daemon's setting)."""
        top_text = self.query_one("#top-k", Input).value.strip()
        score_text = self.query_one("#min-score", Input).value.strip()
        try:
            top_k = int(top_text) if top_text else int(self.petwatch.daemon_status.get("top_k", DEFAULT_TOP_K))
        except ValueError:
            raise ValueError(f"top-k must be a whole number, not {top_text!r}") from None
        try:
            min_score = float(score_text) if score_text else None
        except ValueError:
            raise ValueError(f"the minimum score must be a number, not {score_text!r}") from None
        if not 1 <= top_k <= MAX_HITS:
            raise ValueError(f"top-k must be between 1 and {MAX_HITS}")
        if min_score is not None and not -1.0 <= min_score <= 1.0:
            raise ValueError("the minimum score must be between -1 and 1")
        return top_k, min_score

    @work(exclusive=True, group="search")
    async def run_search(self, query: dict, top_k: int, offset: int) -> None:
        info = self.query_one("#results-info", Static)
        path, text, min_score = query["path"], query["text"], query["min_score"]
        name = f"“{text}”" if text else os.path.basename(path)
        info.update(f"searching for photos like {name}…" if path else f"searching for {name}…")
        species = list(PET_SPECIES) if self.query_one("#pets-only", Checkbox).value else None
        try:
            result = await self.petwatch.client.search(
                image=None if query["by_photo"] or text else path,
                photo=path if query["by_photo"] else None,
                text=text,
                top_k=top_k,
                min_score=min_score,
                offset=offset,
                species=species,
            )
        except PetwatchError as error:  # an unknown word: the daemon's line names it
            info.update(f"search failed: {error}")
            self.notify(str(error), title="Search failed", severity="error")
            return
        hits = result.get("hits", [])
        self.exhausted = len(hits) < top_k
        grid = self.grid
        self.add_class("-has-results")
        added = grid.show(hits, append=offset > 0)
        self.set_class(bool(grid.hits), "-has-results")
        self._show_readings(result.get("readings") or [])
        if not grid.hits:
            cut = self.petwatch.daemon_status.get("min_score") if min_score is None else min_score
            at_least = "" if cut_text(cut) == NO_CUT else f" with a score of at least {cut_text(cut)}"
            self.query_one("#results-empty", Static).update(
                f"No photo matches {name}{at_least}. Try other words, or watch more folders (f)."
                if text
                else f"No photo is like {name}{at_least}. Lower the minimum score, or watch more folders (f)."
            )
        more = "" if self.exhausted or len(grid.hits) >= MAX_HITS else " · m: more"
        upgrade = result.get("upgrade")
        note = ""
        if upgrade and result.get("partial"):
            note = f" · among the {upgrade['done']:,} of {upgrade['total']:,} photos upgraded so far"
        elif upgrade:
            note = " · index upgrading: previous vectors"
        info.update(
            f"{format.plural(len(grid.hits), 'hit')} for {name}{' · pets only' if species else ''} "
            f"· {result.get('took_ms', 0):.0f} ms{note}{more}"
        )
        if offset and not added:
            self.notify("no more hits above the minimum score")
        if offset == 0 and grid.hits:
            grid.focus()

    def _show_readings(self, readings: list) -> None:
        """How each word was read, on a line under the header (words a search passed over too)."""
        line = self.query_one("#readings", Static)
        line.update(readings_line(readings))
        line.display = bool(readings)


def readings_line(readings: list) -> str:
    """“rex: pet Rex · beach: sandbar, seashore (ImageNet classes) · 2023: 1 Jan 2023 - 31 Dec 2023”;
    stop words are named once at the end."""
    read = [f"{r['words']}: {r['meaning']}" for r in readings if r["kind"] != "ignored"]
    ignored = [r["words"] for r in readings if r["kind"] == "ignored"]
    if ignored:
        read.append(f"not searched: {', '.join(ignored)}")
    return "read as  " + " · ".join(read) if read else ""
