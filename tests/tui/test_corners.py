"""The TUI's corners a new user met (issue 22), at 80x24 and 120x40: `o` without a system viewer,
the results header, the preview's details, the pets screens' keys and footers, Tab completion
before the suggestion arrives."""

from __future__ import annotations

import pytest
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from petwatch.tui.app import PetwatchApp
from petwatch.tui.screens.pets import PetAlbumScreen, PetsScreen
from petwatch.tui.screens.preview import PreviewScreen
from petwatch.tui.widgets.picture import HalfBlockPicture
from petwatch.tui.widgets.results import ResultsGrid

from .conftest import ready, searched, wait_for
from .fakes import FakeClient, FakeStudioClient, fake_hits

SIZES = [(80, 24), (120, 40)]
LONG_FOLDER = "/photos/holidays/2026 summer in the mountains/day three"


def make_app(client) -> PetwatchApp:
    return PetwatchApp(client=client, picture_class=HalfBlockPicture, theme="textual-dark", retry_seconds=(0.05,))


@pytest.mark.parametrize("size", SIZES)
async def test_o_without_a_system_viewer_says_what_to_install(size, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no xdg-open (nor open) to be found
    app = make_app(FakeClient(hits=fake_hits(4)))
    async with app.run_test(size=size, notifications=True) as pilot:
        await searched(pilot)
        await pilot.press("o")  # from the grid
        await wait_for(pilot, lambda: app._notifications, what="a message")
        assert "no system viewer found (install xdg-utils for xdg-open)" in [n.message for n in app._notifications]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PreviewScreen), what="the preview")
        app.clear_notifications()
        await pilot.press("o")  # and from the preview
        await wait_for(pilot, lambda: app._notifications, what="a message")


@pytest.mark.parametrize("size", SIZES)
async def test_the_results_header_reads_as_one_phrase(size):
    client = FakeClient(hits=fake_hits(6))
    app = make_app(client)
    async with app.run_test(size=size) as pilot:
        await searched(pilot)
        await pilot.press("t")  # pets only
        await wait_for(pilot, lambda: len(client.searches) == 2, what="the pets-only search")
        await pilot.pause(0.2)
        header = str(app.screen.query_one("#results-info", Static).render())
        assert "hits for dog.jpg · pets only · " in header and " ms" in header
        assert "(pets only) (" not in header


@pytest.mark.parametrize("size", SIZES)
async def test_the_preview_shows_species_breed_camera_and_the_photos_own_folder(size):
    hits = fake_hits(4, folder=LONG_FOLDER)
    app = make_app(FakeClient(hits=hits))
    async with app.run_test(size=size) as pilot:
        grid = await searched(pilot)
        grid.cursor = 1  # a cat: fake_hits' second hit is a birman
        await pilot.press("enter")
        await wait_for(pilot, lambda: getattr(app.screen, "meta", None), what="the preview")
        details = str(app.screen.query_one("#preview-details", Static).render())
        assert "cat · birman" in details and "camera  Apple iPhone 12 Pro" in details
        assert "folder" in details and "day three" in details  # the photo's own folder
        assert "/photos/pets" not in details  # not the watched root the daemon reports
        # The name is the title, whole; the details carry no path to wrap mid-name.
        assert str(app.screen.query_one("#preview-title", Static).render()) == "birman_001.jpg"
        assert "birman_001.jpg" not in details
        await pilot.press("right", "right")  # a photo with no pet
        details = str(app.screen.query_one("#preview-details", Static).render())
        assert "no animal seen" in details and "camera  unknown" in details  # EXIF named no camera


def footer_keys(app) -> list[FooterKey]:
    return [key for key in app.screen.query(FooterKey) if key.display]


def assert_footer_fits(app, width: int) -> None:
    """Every key ends before the palette's key, docked on the right, begins."""
    keys = footer_keys(app)
    palette = next(key for key in keys if key.description == "palette")
    for key in keys:
        if key is not palette:
            assert key.region.right <= palette.region.x, f"{key.key_display} {key.description} cut at {width} columns"


@pytest.mark.parametrize("size", SIZES)
async def test_the_pets_screens_keys_agree_and_their_footers_fit(size):
    client = FakeStudioClient()
    app = make_app(client)
    hits = fake_hits(3)
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await app.client.pet_add("Cola", [h["path"] for h in hits])
        await pilot.press("escape", "p")
        assert isinstance(app.screen, PetsScreen)
        await wait_for(pilot, lambda: app.screen.pets, what="the list")
        hint = str(app.screen.query_one("#pets-hint", Static).render())
        shown = {key.key_display: key.description for key in footer_keys(app)}
        assert "x remove" in hint and shown.get("x") == "Remove", shown
        if size[0] >= 120:
            assert_footer_fits(app, size[0])
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PetAlbumScreen), what="the album")
        await wait_for(pilot, lambda: app.screen.query_one(ResultsGrid).hits, what="the album's photos")
        if size[0] >= 120:
            assert_footer_fits(app, size[0])
        assert "k" in {key.key_display for key in footer_keys(app)}  # a comic of the pet


async def test_tab_completes_before_the_suggestion_arrives(tmp_path):
    (tmp_path / "rex-in-the-snow.jpg").write_bytes(b"")
    app = make_app(FakeClient())
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        query = app.screen.query_one("#query")
        query.value = f"{tmp_path}/re"  # the suggester runs in a thread: Tab comes first
        await pilot.press("tab")
        assert query.value == f"{tmp_path}/rex-in-the-snow.jpg" and query.has_focus
