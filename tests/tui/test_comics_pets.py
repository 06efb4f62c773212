"""Comics and pets in the TUI from fixed data (no daemon): the comic screen following pushed
events, cancel, the gallery, pet profiles, their albums and notifications."""

from __future__ import annotations

import pytest
from textual.widgets import Select, TextArea

from petwatch.tui.app import PetwatchApp
from petwatch.tui.screens.comic import ComicScreen
from petwatch.tui.screens.comics import ComicsScreen
from petwatch.tui.screens.pets import PetAlbumScreen, PetNameScreen, PetsScreen
from petwatch.tui.screens.pets_found import PetsFoundScreen
from petwatch.tui.widgets.picture import HalfBlockPicture
from petwatch.tui.widgets.results import ResultsGrid

from .conftest import ready, screen_text, wait_for
from .fakes import FakeStudioClient, fake_comic, fake_hits


def make_app(client: FakeStudioClient) -> PetwatchApp:
    return PetwatchApp(client=client, picture_class=HalfBlockPicture, theme="textual-dark", retry_seconds=(0.05,))


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


def select(app, paths: list[str]) -> None:
    app.selection[:] = paths
    app.selection_changed()


def test_the_tui_offers_the_daemons_comic_and_pet_choices():
    from petwatch import comics, pets
    from petwatch.tui.screens import comic
    from petwatch.tui.screens import pets as pet_screens

    assert tuple(value for _label, value in comic.SIZE_OPTIONS) == comics.SIZES
    assert tuple(value for _label, value in comic.QUALITY_OPTIONS) == comics.QUALITIES
    assert comic.MAX_REFERENCES == comics.MAX_REFERENCES
    assert pet_screens.MAX_NAME == pets.MAX_NAME
    for name in ("Cola", "Mr. Whiskers", "x" * 64):
        assert pet_screens.check_name(name) is None and pets.check_name(name) == name
    for name in ("", "a/b", "-x", "x" * 65, "tab\there"):
        assert pet_screens.check_name(name)


async def test_a_comic_follows_pushed_events_to_its_picture():
    client = FakeStudioClient()
    app = make_app(client)
    paths = [h["path"] for h in fake_hits(3)]
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot)
        select(app, paths)
        await pilot.press("escape", "k")
        screen = app.screen
        assert isinstance(screen, ComicScreen) and screen.paths == paths
        await wait_for(pilot, lambda: screen.estimate_data, what="the estimate")
        estimate = str(screen.query_one("#comic-estimate").render())
        assert "about $0.14 for 3 reference images" in estimate and "$5.00 daily cap" in estimate
        # "default" became the daemon's choice; a change asks for a new estimate
        assert screen.query_one("#comic-size", Select).value == "1024x1024"
        screen.query_one("#comic-quality", Select).value = "high"
        await wait_for(pilot, lambda: screen.estimate_data["quality"] == "high", what="a new estimate")
        assert client.calls[-1] == (
            "estimate",
            {"photos": paths, "size": "1024x1024", "quality": "high", "parent": None},
        )
        await pilot.press("ctrl+s")  # nothing written yet: says so, sends nothing
        assert "write what should happen" in screen_text(app)
        await pilot.press(*"Rex as a pirate")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.mode == "follow", what="the job")
        job_id = screen.job_id
        assert client.calls[-1] == (
            "submit",
            {"photos": paths, "prompt": "Rex as a pirate", "size": "1024x1024", "quality": "high"},
        )
        assert screen.query_one("#comic-prompt", TextArea).disabled
        assert screen.query_one("#comic-progress").display
        await client.push_comic(
            job_id, state="running", progress="drawing with gpt-image-1.5", started_at="2026-05-12T18:16:01+00:00"
        )
        await wait_for(pilot, lambda: "drawing with gpt-image-1.5" in screen_text(app), what="progress")
        await client.push_comic(job_id, state="succeeded", progress="done", cost_usd=0.07)
        await wait_for(pilot, lambda: screen.image is not None, what="the picture")
        assert screen.mode == "refine" and screen.query_one("#comic-picture").display
        assert f"comics/{job_id}.png" in screen_text(app) and "cost $0.07" in screen_text(app)
        assert not any("is ready" in n for n in notes(app))  # on show: no notification
        # refine: the new job draws while the comic stays on show
        await pilot.press(*"at night")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.mode == "follow", what="the refinement")
        assert client.calls[-1] == ("refine", {"job": job_id, "prompt": "at night"})
        assert screen.job["parent"] == job_id and screen.query_one("#comic-picture").display


async def test_cancel_and_a_finished_comic_announced_elsewhere():
    client = FakeStudioClient()
    app = make_app(client)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot)
        select(app, [h["path"] for h in fake_hits(2)])
        await pilot.press("escape", "k", *"a cat", "ctrl+s")
        screen = app.screen
        await wait_for(pilot, lambda: screen.mode == "follow", what="the job")
        cancelled = screen.job_id
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.mode == "retry", what="the cancel")
        assert "Cancelled" in screen_text(app) and screen.query_one("#comic-prompt", TextArea).text == "a cat"
        await pilot.press("ctrl+s")  # retry: same options, so the daemon's retry
        await wait_for(pilot, lambda: screen.mode == "follow", what="the retry")
        assert client.calls[-1] == ("retry", {"job": cancelled, "prompt": "a cat"})
        assert screen.job_id != cancelled
        job_id = screen.job_id
        await pilot.press("escape")  # leave it drawing
        await client.push_comic(job_id, state="succeeded")
        await wait_for(pilot, lambda: any("is ready" in n for n in notes(app)), what="the notification")


async def test_more_than_16_selected_uses_the_first_16():
    client = FakeStudioClient()
    app = make_app(client)
    paths = [h["path"] for h in fake_hits(20)]
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        select(app, paths)
        await pilot.press("escape", "k")
        screen = app.screen
        assert screen.paths == paths[:16]
        assert "the first 16 of the 20 selected" in screen_text(app)


async def test_the_gallery_lists_comics_and_follows_new_ones():
    comics = [
        fake_comic("20260512-181502-3fa9c1"),
        fake_comic(
            "20260511-090000-aaaaaa",
            state="failed",
            prompt="my cat and a person",
            error="the image API refused this comic for safety reasons: real person",
        ),
    ]
    client = FakeStudioClient(comics=comics)
    app = make_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("escape", "g")
        screen = app.screen
        assert isinstance(screen, ComicsScreen)
        grid = screen.grid
        await wait_for(pilot, lambda: len(grid.hits) == 2 and grid.states[0] == "done", what="the gallery")
        assert grid.states[1] == "failed"  # no picture for a failed comic
        assert "2 comics (1 succeeded, 1 failed)" in screen_text(app)
        await pilot.press("right")
        assert "safety reasons" in screen_text(app)
        # a comic made elsewhere (the CLI) appears first, and follows its events
        new = fake_comic("20260513-080000-bbbbbb", state="queued", prompt="from the CLI")
        client.jobs[new["id"]] = new
        await client.events_queue.put(("comic", dict(new)))
        await wait_for(pilot, lambda: len(grid.hits) == 3, what="the new comic")
        assert grid.hits[0]["job"]["id"] == new["id"] and screen.current["id"] == comics[1]["id"]
        await client.push_comic(new["id"], state="succeeded")
        await wait_for(pilot, lambda: grid.states[0] == "done", what="its picture")
        # r on the failed one: the comic screen, ready to retry with the prompt kept
        await pilot.press("r")
        assert isinstance(app.screen, ComicScreen) and app.screen.mode == "retry"
        assert app.screen.query_one("#comic-prompt", TextArea).text == "my cat and a person"
        assert app.screen.query_one("#comic-prompt", TextArea).has_focus
        await pilot.press("escape", "escape")
        assert app.screen is screen
        await pilot.press("home", "enter")  # open the newest large
        assert isinstance(app.screen, ComicScreen) and app.screen.job_id == new["id"]
        await wait_for(pilot, lambda: app.screen.image is not None, what="the comic large")
        await pilot.press("g")  # back to the gallery, not a second one
        assert app.screen is screen and len(app.screen_stack) == 2


async def test_a_comic_that_ends_under_another_screen_shows_on_return():
    comics = [fake_comic("20260512-181502-3fa9c1", state="running", image=None)]
    client = FakeStudioClient(comics=comics)
    app = make_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("escape", "g")
        gallery = app.screen
        assert isinstance(gallery, ComicsScreen)
        grid = gallery.grid
        await wait_for(pilot, lambda: len(grid.hits) == 1 and gallery.loaded, what="the gallery")
        assert grid.states[0] != "done"
        await pilot.press("p")  # the pets list over the gallery
        assert isinstance(app.screen, PetsScreen) and gallery in app.screen_stack
        listed = client.comic_listings
        await client.push_comic(comics[0]["id"], state="succeeded")
        await pilot.pause(0.2)
        await pilot.press("escape")
        assert app.screen is gallery
        await wait_for(pilot, lambda: grid.states[0] == "done", what="its picture")
        assert grid.hits[0]["job"]["state"] == "succeeded" and "1 comic (1 succeeded)" in screen_text(app)
        assert client.comic_listings == listed  # from the event, not a new listing


async def test_pets_from_the_selection_album_marks_events_and_a_comic():
    client = FakeStudioClient()
    app = make_app(client)
    hits = fake_hits(8)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot)
        select(app, [h["path"] for h in hits[:3]])
        await pilot.press("escape", "v", "n")  # the selection screen: n makes a pet profile
        assert isinstance(app.screen, PetNameScreen)
        await pilot.press("enter")
        assert "type the pet's name" in screen_text(app)
        await pilot.press(*"Cola", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PetAlbumScreen), what="the album")
        album = app.screen
        grid = album.query_one(ResultsGrid)
        await wait_for(pilot, lambda: len(grid.hits) == 3, what="the album's photos")
        assert client.pet_profiles["Cola"]["examples"] == [h["path"] for h in hits[:3]]
        assert "Cola  3 photos · 3 examples" in screen_text(app)
        # not my pet; add a missed photo (selected in the search results)
        await pilot.press("right", "x")
        await wait_for(pilot, lambda: len(grid.hits) == 2, what="the photo left out")
        assert client.calls[-1] == ("mark", {"name": "Cola", "paths": [hits[1]["path"]], "mark": "not"})
        select(app, [hits[6]["path"]])
        await pilot.press("plus")
        await wait_for(pilot, lambda: len(grid.hits) == 3, what="the photo added")
        assert client.calls[-1] == ("mark", {"name": "Cola", "paths": [hits[6]["path"]], "mark": "yes"})
        # the daemon says new photos joined: announced, and the album reloads
        client.pet_profiles["Cola"]["album"] += [hits[4]["path"], hits[5]["path"]]
        await client.events_queue.put(("pet", {"name": "Cola", "new": [hits[4]["path"], hits[5]["path"]], "count": 5}))
        await wait_for(pilot, lambda: len(grid.hits) == 5, what="the album reloaded")
        await wait_for(pilot, lambda: "2 new photos of Cola" in notes(app), timeout=5, what="the notice")
        # the pets list; k: a comic of Cola from its album's best photos
        await pilot.press("escape", "escape", "p")
        assert isinstance(app.screen, PetsScreen)
        await wait_for(pilot, lambda: app.screen.pets, what="the list")
        assert app.screen.query_one("#pets-table").get_row_at(0)[:2] == ["Cola", "5"]
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, ComicScreen), what="the comic screen")
        assert app.screen.paths == [h["path"] for h in client._album("Cola")]
        assert "Comic of Cola" in screen_text(app)


async def test_pets_found_are_shown_named_dismissed_and_merged():
    client = FakeStudioClient()
    hits = fake_hits(12)
    client.found_group(1, [h["path"] for h in hits[:5]])
    client.found_group(2, [h["path"] for h in hits[5:8]])
    client.found_group(3, [h["path"] for h in hits[8:12]])
    app = make_app(client)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot)
        await client.events_queue.put(("group", {"id": 1, "size": 5, "found": True}))
        await wait_for(pilot, lambda: any("press p, then d" in n for n in notes(app)), what="the announcement")
        await pilot.press("escape", "p", "d")
        assert isinstance(app.screen, PetsFoundScreen)
        grid = app.screen.query_one(ResultsGrid)
        await wait_for(pilot, lambda: len(grid.hits) == 3, what="the three covers")
        assert "I found 3 pets in your photos" in screen_text(app)
        line = "group 1 · 5 photos · dog, beagle · seen on 14 days over 1 year (2024-01-01 – 2025-06-30)"
        assert line in screen_text(app)  # with the reason it is listed where it is
        await pilot.press("n", *"Rex", "enter")  # name the biggest: a pet profile from its photos
        await wait_for(pilot, lambda: len(grid.hits) == 2, what="the named group gone from the list")
        assert client.pet_profiles["Rex"]["examples"] == [h["path"] for h in hits[:5]]
        await pilot.press("m", "right", "m")  # m on group 3, then on group 2: one group
        await wait_for(pilot, lambda: len(grid.hits) == 1, what="the merged group")
        assert client.calls[-1] == ("group merge", {"id": 3, "other": 2})
        await pilot.press("x")
        await wait_for(pilot, lambda: not grid.hits, what="the dismissed group gone")
        # Nothing left to show: the screen says why, where the grid was.
        await wait_for(pilot, lambda: "4 pairs of them alike enough to link" in screen_text(app), what="why")
        assert "No pets found yet: 12 photos show a dog or a cat" in screen_text(app)


async def test_the_palette_offers_a_comic_of_each_pet():
    client = FakeStudioClient(
        pets=[{"name": "Cola", "examples": [fake_hits(1)[0]["path"]], "album": [h["path"] for h in fake_hits(4)]}]
    )
    app = make_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p", *"comic of cola")
        await pilot.pause(0.5)
        options = app.screen.query_one("CommandList")
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("Comic: comic of Cola" in p for p in prompts), prompts
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ComicScreen), what="the comic screen")
        assert len(app.screen.paths) == 4


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_after_sending_esc_closes_the_comic_screen(size):
    """Sent, and once drawn (the empty refine prompt has the keyboard): the first Esc closes the
    screen. It used to only leave the prompt, and the next letters opened other screens over it."""
    client = FakeStudioClient()
    app = make_app(client)
    async with app.run_test(size=size, notifications=True) as pilot:
        await ready(pilot)
        select(app, [h["path"] for h in fake_hits(2)])
        await pilot.press("escape", "k")
        screen = app.screen
        assert isinstance(screen, ComicScreen)
        await wait_for(pilot, lambda: screen.estimate_data, what="the estimate")
        await pilot.press(*"Rex as a pirate", "ctrl+s")
        await wait_for(pilot, lambda: screen.mode == "follow", what="the job")
        assert not isinstance(app.focused, TextArea)
        await client.push_comic(screen.job_id, state="succeeded", progress="done", cost_usd=0.07)
        await wait_for(pilot, lambda: screen.mode == "refine", what="the picture")
        assert isinstance(app.focused, TextArea)  # ready for a refinement
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ComicScreen), what="the screen to close")
