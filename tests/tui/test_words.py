"""The TUI asked in words (issue 28): the query field takes words as well as a path, Tab
completes places and pets' names, the readings show under the header, an unknown word is the
daemon's one line, and the preview says when (file time or EXIF), where and what. The words
are read by petwatch.words itself (tests/tui/fakes.py), against the fake's places and pets."""

from __future__ import annotations

from textual.widgets import Static

from petwatch.tui.app import PetwatchApp
from petwatch.tui.screens.preview import PreviewScreen
from petwatch.tui.widgets.picture import HalfBlockPicture
from petwatch.tui.widgets.query_input import complete_words, looks_like_path
from petwatch.tui.widgets.results import ResultsGrid

from .conftest import ready, searched, wait_for
from .fakes import FakeClient, fake_hits


def make_app(client: FakeClient) -> PetwatchApp:
    return PetwatchApp(client=client, picture_class=HalfBlockPicture, theme="textual-dark", retry_seconds=(0.05,))


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


def test_words_complete_to_places_and_pets():
    names = ["Lisbon", "Los Angeles", "Portugal", "Rex", "Luna"]
    assert complete_words("rex at the beach in lis", names) == "rex at the beach in Lisbon"
    assert complete_words("dogs in los an", names) == "dogs in Los Angeles"  # a name of two words
    assert complete_words("lu", names) == "Luna"
    assert complete_words("l", names) == "Lisbon"  # several: the first, as a shell does
    assert complete_words("beach ", names) is None and complete_words("zzz", names) is None
    assert complete_words("Lisbon", names) is None  # nothing to add
    assert looks_like_path("~/Pictures/rex.jpg") and looks_like_path("/photos/a.jpg")
    assert not looks_like_path("rex at the beach 2023")


async def test_a_search_in_words_shows_how_each_word_was_read(tmp_path):
    client = FakeClient(hits=fake_hits(6))
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        query = app.screen.query_one("#query")
        query.value = "rex at the beach in lisbon 2023"
        await pilot.press("enter")
        grid = app.screen.query_one(ResultsGrid)
        await wait_for(pilot, lambda: grid.hits, what="the hits")
        sent = client.searches[-1]
        assert sent["text"] == "rex at the beach in lisbon 2023" and sent["image"] is None and sent["photo"] is None
        readings = app.screen.query_one("#readings", Static)
        line = str(readings.render())
        assert readings.display
        assert "rex: pet Rex" in line and "beach: sandbar, seashore (ImageNet classes)" in line
        assert "lisbon: place Lisbon" in line and "2023: 1 Jan 2023 - 31 Dec 2023" in line
        assert "not searched: at the, in" in line
        assert "“rex at the beach in lisbon 2023”" in str(app.screen.query_one("#results-info").render())

        photo = tmp_path / "rex at the beach.jpg"  # a path that exists still searches by photo
        photo.write_bytes(b"")
        await pilot.press("slash")
        query.value = str(photo)
        await pilot.press("enter")
        await wait_for(pilot, lambda: client.searches[-1]["image"] == str(photo), what="the photo search")
        assert client.searches[-1]["text"] is None
        await wait_for(pilot, lambda: not readings.display, what="the readings gone")


async def test_tab_completes_a_place_or_a_pets_name_from_the_daemon():
    client = FakeClient(hits=fake_hits(3))
    app = make_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await wait_for(pilot, lambda: app.word_names, what="GET /words")
        query = app.screen.query_one("#query")
        query.focus()
        query.value = "dog in tus"
        query.cursor_position = len(query.value)
        await pilot.press("tab")
        assert query.value == "dog in Tuscany" and query.has_focus
        query.value = "beach with l"
        await pilot.press("u", "tab")
        assert query.value == "beach with Luna"


async def test_an_unknown_word_is_the_daemons_one_line_as_a_notification():
    client = FakeClient(hits=fake_hits(3))
    app = make_app(client)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot)
        app.screen.query_one("#query").value = "rex flibbertigibbet"
        await pilot.press("enter")
        await wait_for(pilot, lambda: notes(app), what="the notification")
        (note,) = notes(app)
        assert note.startswith("petwatch does not know 'flibbertigibbet'") and "\n" not in note
        assert "a place (a city, region or country)" in note  # and what can be typed


async def test_the_preview_says_when_where_and_what():
    client = FakeClient(hits=fake_hits(4))
    app = make_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await searched(pilot, "beach")
        await pilot.press("enter")  # hit 0: its date is the file's time, no place, no concepts
        await wait_for(pilot, lambda: isinstance(app.screen, PreviewScreen) and app.screen.meta, what="preview")
        details = str(app.screen.query_one("#preview-details", Static).render())
        assert "(file time)" in details and "unknown" in details.split("place", 1)[1].splitlines()[0]
        await pilot.press("right")  # hit 1: EXIF date, Lisbon, what it shows
        await wait_for(pilot, lambda: app.screen.index == 1 and app.screen.meta, what="the next hit")
        details = str(app.screen.query_one("#preview-details", Static).render())
        assert "file time" not in details
        assert "Lisbon, Portugal" in details
        assert "birman, seashore, sandbar" in details
