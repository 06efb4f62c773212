"""Comics and pets in the TUI against a real daemon (one for the module) whose image API is
tests/fake_openai.py, a real HTTP server on 127.0.0.1: select photos, write a prompt, send,
see the comic; a safety rejection, edited and retried; the gallery and a refinement; a pet
profile from the selection, its album, a live "new photo" notice and a comic of the pet."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from textual.widgets import TextArea

from conftest import TEST_MODEL, DaemonProcess, write_photos
from fake_openai import SAFETY_REASON, FakeOpenAI
from petwatch import settings
from petwatch.tui.app import PetwatchApp
from petwatch.tui.screens.comic import ComicScreen
from petwatch.tui.screens.comics import ComicsScreen
from petwatch.tui.screens.pets import PetAlbumScreen, PetNameScreen
from petwatch.tui.widgets.results import ResultsGrid

from .conftest import ready, screen_text, wait_for

REFERENCE_PX = 256


@pytest.fixture(scope="module")
def studio():
    """A short /tmp home, an album of 6 photos (indexed), the fake image API and a daemon."""
    root = Path(tempfile.mkdtemp(prefix="pwk-", dir="/tmp"))
    server = FakeOpenAI(reference_px=REFERENCE_PX).start()
    album = root / "album"
    photos = write_photos(album, 6)
    noise = album / "zz_noise.jpg"  # no pet's photo: "add missed photo" teaches it
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(noise)
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(settings.ENV_PREFIX) or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
                patch.delenv(name)
        patch.setenv("PETWATCH_HOME", str(root))
        patch.setenv("PETWATCH_MODEL", TEST_MODEL)
        patch.setenv("PETWATCH_SETTLE_SECONDS", "0.5")
        patch.setenv("PETWATCH_TUI_IMAGES", "halfblock")
        patch.setenv("PETWATCH_FOLDERS", f'["{album}"]')
        patch.setenv("OPENAI_API_KEY", server.api_key)
        patch.setenv("PETWATCH_OPENAI_BASE_URL", server.base_url)
        patch.setenv("PETWATCH_COMIC_REFERENCE_PX", str(REFERENCE_PX))
        patch.setenv("PETWATCH_COMIC_QUALITY", "low")
        patch.setenv("PETWATCH_COMIC_MAX_RETRIES", "0")
        patch.setenv("PETWATCH_COMIC_DAILY_BUDGET_USD", "50")
        daemon = DaemonProcess().start()
        try:
            daemon.wait_idle()
            yield SimpleNamespace(
                root=root, album=album, photos=[str(p) for p in photos], noise=str(noise), server=server, daemon=daemon
            )
        finally:
            daemon.stop()
            server.stop()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_server(request):
    if "studio" in request.fixturenames:
        server = request.getfixturevalue("studio").server
        server.set_mode("ok")
        server._queue.clear()
    yield


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


async def select_by_search(pilot, query: str, count: int) -> list[str]:
    """Search from ``query`` by typing its path, select the first ``count`` hits with Space."""
    app = pilot.app
    await pilot.press("slash", *query, "enter")
    grid = app.screen.query_one(ResultsGrid)
    await wait_for(pilot, lambda: grid.hits and "hits for" in screen_text(app), what="search results")
    for _ in range(count):
        await pilot.press("space", "right")
    assert len(app.selection) == count
    return list(app.selection)


async def comic_done(pilot, screen: ComicScreen, what: str) -> dict:
    await wait_for(pilot, lambda: screen.mode in ("refine", "retry") and screen.job_id, timeout=60, what=what)
    if screen.mode == "refine":
        await wait_for(pilot, lambda: screen.image is not None, what=f"{what}: the picture")
    return screen.job


async def test_select_write_send_and_see_the_comic(studio):
    app = PetwatchApp(theme="textual-dark")
    sent_before = len(studio.server.requests)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot)
        chosen = await select_by_search(pilot, studio.photos[0], 2)
        await pilot.press("k")
        screen = app.screen
        assert isinstance(screen, ComicScreen) and screen.paths == chosen
        await wait_for(pilot, lambda: screen.estimate_data, what="the estimate")
        estimate = str(screen.query_one("#comic-estimate").render())
        assert "for 2 reference images" in estimate and "$50.00 daily cap" in estimate
        tiles = list(screen.query(".comic-ref"))
        await wait_for(pilot, lambda: all(tile.image is not None for tile in tiles), what="thumbnails")
        assert screen.query_one("#comic-prompt", TextArea).has_focus
        await pilot.press(*"my cat as a space pirate")
        await pilot.press("ctrl+s")
        job = await comic_done(pilot, screen, "the comic")
        assert job["state"] == "succeeded" and job["prompt"] == "my cat as a space pirate"
        picture = screen.query_one("#comic-picture")
        assert picture.display and picture.image is not None and picture.image.size == (1024, 1024)
        assert Path(job["image"]).name in screen_text(app).replace("\n", "")
        assert Path(job["image"]).is_file()
    sent = studio.server.requests[sent_before:]
    assert len(sent) == 1 and "my cat as a space pirate" in sent[0].prompt
    assert len(sent[0].images) == 2 and not studio.server.problems


async def test_a_safety_rejection_shows_why_and_an_edited_retry_succeeds(studio):
    studio.server.then("safety")
    app = PetwatchApp(theme="textual-dark")
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot)
        chosen = await select_by_search(pilot, studio.photos[1], 1)
        await pilot.press("k", *"my cat with a famous person", "ctrl+s")
        screen = app.screen
        failed = await comic_done(pilot, screen, "the rejection")
        assert failed["state"] == "failed" and failed["error_kind"] == "rejected"
        shown = screen_text(app).replace("\n", " ")
        assert "The comic failed" in shown and SAFETY_REASON[:40] in shown
        prompt = screen.query_one("#comic-prompt", TextArea)
        assert prompt.text == "my cat with a famous person" and not prompt.disabled and prompt.has_focus
        assert screen.paths == chosen and str(screen.query_one("#comic-send").label) == "Retry"
        prompt.text = "my cat on the moon"  # edited, then sent again
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.job_id != failed["id"], what="the retry")
        retried = await comic_done(pilot, screen, "the retried comic")
        assert retried["state"] == "succeeded" and retried["prompt"] == "my cat on the moon"
        assert retried["photos"] == failed["photos"] == chosen
        assert "The comic failed" not in screen_text(app)
    assert "my cat on the moon" in studio.server.requests[-1].prompt


async def test_the_gallery_lists_comics_and_refines_one(studio):
    with studio.daemon.client() as client:
        made = [job for job in client.comics() if job["state"] == "succeeded"]
    assert made, "the tests above made comics"
    app = PetwatchApp(theme="textual-dark")
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot)
        await pilot.press("escape", "g")
        gallery = app.screen
        assert isinstance(gallery, ComicsScreen)
        grid = gallery.grid
        await wait_for(pilot, lambda: gallery.loaded and grid.hits, what="the gallery")
        listed = [hit["job"]["id"] for hit in grid.hits]
        assert {job["id"] for job in made} <= set(listed)
        assert "failed" in screen_text(app)  # the rejected one is listed too
        index = listed.index(made[0]["id"])
        grid.cursor = index
        await wait_for(pilot, lambda: grid.states[index] == "done", what="its thumbnail")
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, ComicScreen) and screen.mode == "refine"
        await wait_for(pilot, lambda: screen.image is not None and screen.estimate_data, what="the comic")
        assert screen.estimate_data["references"] == len(made[0]["photos"]) + 1
        await pilot.press(*"make it night-time", "ctrl+s")
        await wait_for(pilot, lambda: screen.job_id != made[0]["id"], what="the refinement")
        refined = await comic_done(pilot, screen, "the refined comic")
        assert refined["state"] == "succeeded" and refined["parent"] == made[0]["id"]
        sent = studio.server.requests[-1]
        assert len(sent.images) == len(made[0]["photos"]) + 1 and "make it night-time" in sent.prompt
        await pilot.press("escape")  # the refine prompt is empty: one Esc closes the screen
        assert app.screen is gallery
        await wait_for(pilot, lambda: grid.hits[0]["job"]["id"] == refined["id"], what="the new comic listed")


async def test_a_pet_profile_from_the_selection_its_album_news_and_comic(studio):
    app = PetwatchApp(theme="textual-dark")
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot)
        chosen = await select_by_search(pilot, studio.photos[2], 2)
        await pilot.press("v", "n")
        assert isinstance(app.screen, PetNameScreen)
        await pilot.press(*"Cola", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PetAlbumScreen), timeout=60, what="the album")
        album = app.screen
        grid = album.query_one(ResultsGrid)
        await wait_for(pilot, lambda: grid.hits, timeout=60, what="the album's photos")
        shown = {hit["path"] for hit in grid.hits}
        assert set(chosen) <= shown
        assert "2 examples" in screen_text(app)
        # a new photo of Cola (a copy of an example) joins by itself: a notice, the album grows
        before = len(grid.hits)
        copy = studio.album / f"copy_{Path(chosen[0]).name}"
        shutil.copyfile(chosen[0], copy)
        await wait_for(pilot, lambda: "1 new photo of Cola" in notes(app), timeout=60, what="the notice")
        # the same bytes are one stack with the example: the album shows them once, a stack of 2
        await wait_for(
            pilot,
            lambda: any((hit.get("stack") or {}).get("size") == 2 for hit in grid.hits),
            what="the album's stack of the example and its copy",
        )
        assert len(grid.hits) == before and {chosen[0], str(copy)} & {hit["path"] for hit in grid.hits}
        # a missed photo, selected, is added with +; then x: not my pet after all
        assert studio.noise not in {hit["path"] for hit in grid.hits}
        app.selection[:] = [studio.noise]
        app.selection_changed()
        await pilot.press("plus")
        await wait_for(pilot, lambda: studio.noise in {hit["path"] for hit in grid.hits}, what="the yes mark")
        assert "1 confirmed" in screen_text(app)
        grid.cursor = [hit["path"] for hit in grid.hits].index(studio.noise)
        await pilot.press("x")
        await wait_for(pilot, lambda: studio.noise not in {hit["path"] for hit in grid.hits}, what="the not mark")
        assert "1 not my pet" in screen_text(app)
        # a comic of Cola: its best photos are the references
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, ComicScreen), what="the comic screen")
        assert set(app.screen.paths) == {hit["path"] for hit in grid.hits}
        assert "Comic of Cola" in screen_text(app)
