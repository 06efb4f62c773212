"""Snapshots of the main screens (pytest-textual-snapshot), from fixed data: no daemon needed.

Update after a deliberate visual change with ``pytest tests/tui/test_snapshots.py --snapshot-update``
and look at the SVGs under ``__snapshots__/`` before checking them in.
"""

from __future__ import annotations

import time

import pytest

from petwatch.tui.app import PetwatchApp
from petwatch.tui.widgets.picture import HalfBlockPicture

from .conftest import ready, searched, wait_for
from .fakes import FakeClient, FakeStudioClient, fake_comic, fake_hits, fake_status

SIZE = (100, 30)


@pytest.fixture(autouse=True)
def fixed_clock_zone(monkeypatch):
    """Capture dates are shown in local time: pin the zone so snapshots match anywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_app(theme: str = "textual-dark", **client_args) -> PetwatchApp:
    return PetwatchApp(client=FakeClient(**client_args), picture_class=HalfBlockPicture, theme=theme)


async def quiet(pilot) -> None:
    """No blinking cursor in the shot."""
    for field in pilot.app.screen.query("Input, TextArea"):
        field.cursor_blink = False
    await pilot.pause()


async def searched_with_thumbnails(pilot) -> None:
    grid = await searched(pilot, "/photos/query.jpg")
    await wait_for(pilot, lambda: all(grid.states[i] == "done" for i in grid.visible_range()), what="thumbnails")
    await quiet(pilot)


def test_disconnected_screen(snap_compare):
    async def run_before(pilot):
        await ready(pilot, connected=False)
        await quiet(pilot)

    assert snap_compare(make_app(running=False), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
def test_welcome_screen(snap_compare, size):
    """What a new user sees first, at the smallest supported terminal and a large one."""

    async def run_before(pilot):
        await ready(pilot)
        await quiet(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


def test_results_grid(snap_compare):
    async def run_before(pilot):
        await searched_with_thumbnails(pilot)
        await pilot.press("space", "right", "right", "down")  # select the first; cursor on the 7th
        await pilot.pause()

    assert snap_compare(make_app(hits=fake_hits(60)), terminal_size=SIZE, run_before=run_before)


def test_results_grid_light_theme(snap_compare):
    async def run_before(pilot):
        await searched_with_thumbnails(pilot)
        await pilot.press("right", "space")

    assert snap_compare(make_app(theme="textual-light", hits=fake_hits(60)), terminal_size=SIZE, run_before=run_before)


def test_preview_screen(snap_compare):
    async def run_before(pilot):
        await searched_with_thumbnails(pilot)
        await pilot.press("right", "enter")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "meta", None), what="the preview")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare):
    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("escape", "question_mark")
        await quiet(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_folders_screen(snap_compare):
    status = fake_status(
        indexed=1534,
        folders=[
            {"path": "/photos/pets", "mode": "events", "online": True, "photos": 1234},
            {"path": "/mnt/nas/photos", "mode": "polling", "online": True, "photos": 300},
            {"path": "/media/usb/camera", "mode": "offline", "online": False, "photos": 0},
        ],
    )

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("escape", "f")
        await quiet(pilot)

    assert snap_compare(make_app(status=status), terminal_size=SIZE, run_before=run_before)


def test_status_bar_while_indexing(snap_compare):
    status = fake_status(
        indexed=5210,
        state="indexing",
        queued=4790,
        failed=3,
        progress={"done": 5210, "total": 10000, "rate": 41.7, "eta_s": 115.0, "current": "/photos/pets/x.jpg"},
    )
    failures = [{"path": "/photos/pets/broken.jpg", "reason": "truncated JPEG", "size": 1234}]

    async def run_before(pilot):
        await ready(pilot)
        await quiet(pilot)

    assert snap_compare(make_app(status=status, failures=failures), terminal_size=SIZE, run_before=run_before)


def test_failures_list(snap_compare):
    status = fake_status(failed=2)
    failures = [
        {"path": "/photos/pets/broken.jpg", "reason": "cannot identify image file", "size": 1234},
        {"path": "/photos/pets/huge.png", "reason": "over 200 megapixels", "size": 99_000_000},
    ]

    async def run_before(pilot):
        await ready(pilot)
        await pilot.click("#status-failures")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "failures", None), what="failures")
        await pilot.pause()

    assert snap_compare(make_app(status=status, failures=failures), terminal_size=SIZE, run_before=run_before)


# --- comics ---------------------------------------------------------------------------------------
SAFETY_ERROR = (
    "the image API refused this comic for safety reasons: Your request was rejected by the "
    "safety system: the image may depict a real person. Your prompt and photo selection "
    "are kept: edit them and submit again."
)


def make_studio_app() -> PetwatchApp:
    comics = [
        fake_comic("20260512-181502-3fa9c1"),
        fake_comic(
            "20260512-120000-0a1b2c",
            state="failed",
            prompt="Rex meets the president",
            error=SAFETY_ERROR,
            error_kind="rejected",
        ),
        fake_comic(
            "20260511-090000-d4e5f6", prompt="Rex and Cola at the beach, three panels", quality="high", cost_usd=0.19
        ),
    ]
    return PetwatchApp(client=FakeStudioClient(comics=comics), picture_class=HalfBlockPicture, theme="textual-dark")


async def comic_screen_ready(pilot) -> None:
    screen = pilot.app.screen
    await wait_for(
        pilot,
        lambda: screen.estimate_data and all(t.image is not None for t in screen.query(".comic-ref")),
        what="estimate and thumbnails",
    )
    await quiet(pilot)


def test_comic_screen(snap_compare):
    """Three selected photos, a prompt typed: the estimate, the options, Send."""

    async def run_before(pilot):
        app = pilot.app
        await ready(pilot)
        app.selection.extend(hit["path"] for hit in fake_hits(3))
        app.selection_changed()
        await pilot.press("escape", "k", *"Rex as a space pirate, four panels")
        await comic_screen_ready(pilot)

    assert snap_compare(make_studio_app(), terminal_size=SIZE, run_before=run_before)


def test_comic_screen_after_a_safety_rejection(snap_compare):
    """The reason, the prompt kept to edit, Retry."""

    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("escape", "g")
        await wait_for(pilot, lambda: pilot.app.screen.loaded, what="the gallery")
        await pilot.press("right", "r")
        await comic_screen_ready(pilot)

    assert snap_compare(make_studio_app(), terminal_size=SIZE, run_before=run_before)


def test_comics_gallery(snap_compare):
    async def run_before(pilot):
        await ready(pilot)
        await pilot.press("escape", "g")
        grid = pilot.app.screen.query_one("ComicGrid")
        await wait_for(
            pilot,
            lambda: pilot.app.screen.loaded and all(grid.states[i] in ("done", "failed") for i in grid.visible_range()),
            what="the gallery's pictures",
        )
        await quiet(pilot)

    assert snap_compare(make_studio_app(), terminal_size=SIZE, run_before=run_before)
