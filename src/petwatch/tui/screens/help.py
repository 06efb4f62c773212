"""Every key, by where it works; built from the bindings themselves, so it never goes stale."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding, BindingsMap
from textual.containers import Vertical
from textual.dom import DOMNode
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

EXTRA_KEYS = [
    ("Query path input", "enter", "Search"),
    ("Query path input", "tab / →", "Complete the path"),
    ("Query path input", "letters", "Type (q too): esc leaves the field, ctrl+q quits"),
    ("Everywhere", "ctrl+p", "Command palette: every action by name"),
    ("Results grid", "mouse", "Click to move, double-click to open"),
    ("Status bar", "mouse", "Click the failures or the selection count to list them, ⚠ config to tell it again"),
    ("Comic", "tab", "Between the prompt, the options and the buttons"),
    ("Comics gallery", "arrows / enter", "Move; open the comic large"),
    ("Pets", "enter", "Open the pet's album"),
    ("Pet album", "arrows / enter / space", "As in the results grid: move, open large, select"),
]


def binding_rows() -> list[tuple[str, str, str]]:
    """(area, keys, what) for every binding of every screen and widget of the TUI."""
    from petwatch.tui.app import PetwatchApp
    from petwatch.tui.screens.browse import BrowseScreen
    from petwatch.tui.screens.comic import ComicScreen
    from petwatch.tui.screens.comics import ComicsScreen
    from petwatch.tui.screens.confirm import ConfirmScreen
    from petwatch.tui.screens.failures import FailuresScreen
    from petwatch.tui.screens.folders import FoldersScreen
    from petwatch.tui.screens.pets import PetAlbumScreen, PetNameScreen, PetsScreen
    from petwatch.tui.screens.preview import PreviewScreen
    from petwatch.tui.screens.search import SearchScreen
    from petwatch.tui.screens.selection import SelectionScreen
    from petwatch.tui.widgets.results import ResultsGrid

    areas: list[tuple[str, type[DOMNode]]] = [
        ("Everywhere", PetwatchApp),
        ("Search screen", SearchScreen),
        ("Results grid", ResultsGrid),
        ("Preview", PreviewScreen),
        ("Folders", FoldersScreen),
        ("Selection", SelectionScreen),
        ("Failures", FailuresScreen),
        ("Comic", ComicScreen),
        ("Comics gallery", ComicsScreen),
        ("Pets", PetsScreen),
        ("Pet album", PetAlbumScreen),
        ("Pet name", PetNameScreen),
        ("Browse", BrowseScreen),
        ("Confirm", ConfirmScreen),
        ("Help", HelpScreen),
    ]
    rows: list[tuple[str, str, str]] = []
    for area, owner in areas[:3] + [("Query path input", None)] + areas[3:]:
        by_action: dict[tuple[str, str], list[str]] = {}
        for key, bindings in BindingsMap(owner.BINDINGS if owner else []).key_to_bindings.items():
            for binding in bindings:
                label = binding.description or binding.action
                by_action.setdefault((binding.action, label), []).append(_key_name(binding, key))
        rows.extend((area, " / ".join(keys), label) for (_action, label), keys in by_action.items())
        rows.extend(extra for extra in EXTRA_KEYS if extra[0] == area)
    return rows


def _key_name(binding: Binding, key: str) -> str:
    names = {"question_mark": "?", "slash": "/", "space": "space", "tilde": "~", "delete": "del", "plus": "+"}
    return binding.key_display or names.get(key, key)


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-wide dialog-tall"):
            yield Static(
                "[b]petwatch keys[/]  (Esc closes). Letter keys act outside text fields; ctrl keys everywhere.",
                classes="dialog-title",
            )
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("where", "key", "does")
        previous = None
        for area, keys, what in binding_rows():
            table.add_row(area if area != previous else "", keys, what)
            previous = area
        table.focus()
