"""Every key, by where it works; built from the bindings themselves, so it never goes stale."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

from textual.app import ComposeResult
from textual.binding import Binding, BindingsMap
from textual.containers import Vertical
from textual.dom import DOMNode
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

# Keys that are no binding (typing, the mouse, a widget's own), listed under their area (one no
# binding owner names, "Status bar", comes last).
EXTRA_KEYS = [
    ("Query field", "enter", "Search: a photo's path, or words (rex at the beach in lisbon 2023)"),
    ("Query field", "→", "Accept the greyed completion"),
    ("Query field", "letters", "Type (q too): esc leaves the field, ctrl+q quits"),
    ("Everywhere", "ctrl+p", "Command palette: every action by name"),
    ("Results grid", "mouse", "Click to move, double-click to open"),
    ("Status bar", "mouse", "Click the failures or the selection count to list them, ⚠ config to tell it again"),
    ("Comic", "tab", "Between the prompt, the options and the buttons"),
    ("Pets", "enter", "Open the pet's album"),
    ("Pet album", "arrows / enter / space", "As in the results grid: move, open large, select"),
]
FIRST = ("PetwatchApp", "SearchScreen", "QueryInput", "ResultsGrid")  # the rest follow in the package's order


def area_name(owner: type) -> str:
    """Where a class's keys work, as help names it: its HELP_AREA, else its name in words
    ("PetsFoundScreen": "Pets found")."""
    if area := owner.__dict__.get("HELP_AREA"):
        return str(area)
    words = re.findall(r"[A-Z][a-z0-9]*", owner.__name__.removesuffix("Screen"))
    return " ".join([words[0], *(w.lower() for w in words[1:])]) if words else owner.__name__


def binding_owners() -> list[type[DOMNode]]:
    """Every class of the TUI (the app, each screen and widget) that declares key bindings,
    found by importing the package: a new screen is in help without being named here."""
    import petwatch.tui

    owners: dict[str, type[DOMNode]] = {}
    for module_info in pkgutil.walk_packages(petwatch.tui.__path__, "petwatch.tui."):
        module = importlib.import_module(module_info.name)
        for _name, value in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(value, DOMNode)
                and value.__module__ == module.__name__
                and value.__dict__.get("BINDINGS")
                and not value.__name__.startswith("_")
            ):
                owners[value.__name__] = value
    first = [owners.pop(name) for name in FIRST if name in owners]
    return first + list(owners.values())


def binding_rows() -> list[tuple[str, str, str]]:
    """(area, keys, what) for every binding of every screen and widget of the TUI, with the
    keys that are no binding (EXTRA_KEYS)."""
    owners = binding_owners()
    listed: list[tuple[str, type[DOMNode] | None]] = [(area_name(owner), owner) for owner in owners]
    named = {area for area, _ in listed}
    listed += [(area, None) for area in dict.fromkeys(a for a, _, _ in EXTRA_KEYS) if area not in named]
    rows: list[tuple[str, str, str]] = []
    for area, owner in listed:
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
