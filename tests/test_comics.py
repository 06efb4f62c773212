"""Comics against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/fake_openai.py).

Reference photos are real Oxford-IIIT Pet photos from ../shared/datasets (PETWATCH_DATASETS)
when present, else JPEGs made here; one large JPEG with an EXIF rotation is always added so
downscaling and orientation are exercised.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from fake_openai import SAFETY_REASON, FakeOpenAI
from petwatch import comics, locations, settings
from petwatch.comics import MAX_REFERENCES, ComicStudio
from petwatch.errors import PetwatchError

REFERENCE_PX = 256  # small, so every dataset photo is really downscaled
DATASETS = Path(
    os.path.abspath(os.environ.get("PETWATCH_DATASETS", Path(__file__).parents[1] / ".." / "shared" / "datasets"))
)
PETS = DATASETS / "oxford-pets-sample"


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(locations.HOME_ENV, str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith(settings.ENV_PREFIX) and name != locations.HOME_ENV:
            monkeypatch.delenv(name)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return tmp_path / "home"


@pytest.fixture
def server():
    with FakeOpenAI(reference_px=REFERENCE_PX) as fake:
        yield fake


def make_settings(server: FakeOpenAI, **overrides) -> settings.Settings:
    values = {
        "openai_api_key": server.api_key,
        "openai_base_url": server.base_url,
        "comic_reference_px": REFERENCE_PX,
        "comic_timeout_seconds": 10,
        "comic_max_retries": 2,
        "comic_size": "1024x1024",
        "comic_quality": "low",
    }
    return settings.load(**{**values, **overrides})


def make_studio(server: FakeOpenAI, **overrides) -> ComicStudio:
    return ComicStudio(make_settings(server, **overrides), backoff_base_seconds=0.01)


@pytest.fixture
def studio(server: FakeOpenAI) -> ComicStudio:
    return make_studio(server)


def _jpeg(path: Path, size: tuple[int, int], seed: int, orientation: int | None = None) -> Path:
    width, height = size
    image = Image.new("RGB", size)
    image.putdata(
        [
            ((x * 7 + seed * 40) % 256, (y * 5 + seed * 90) % 256, (x ^ y) % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, "JPEG", quality=85, exif=exif.tobytes())
    return path


@pytest.fixture
def rotated_photo(tmp_path: Path) -> Path:
    """Stored 640x480 landscape, EXIF says rotate 90°: upright it is portrait."""
    album = tmp_path / "album"
    album.mkdir(exist_ok=True)
    return _jpeg(album / "rotated.jpg", (640, 480), seed=9, orientation=6)


@pytest.fixture
def pet_photos(tmp_path: Path, rotated_photo: Path) -> list[Path]:
    if PETS.is_dir():
        breed = sorted(path for path in PETS.iterdir() if path.is_dir())[0]
        chosen = sorted(breed.glob("*.jpg"))[:3]
    else:
        chosen = [_jpeg(tmp_path / "album" / f"pet{index}.jpg", (500, 375), seed=index) for index in range(3)]
    return [*chosen, rotated_photo]


@pytest.fixture
def many_photos(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "many"
    folder.mkdir()
    return [_jpeg(folder / f"p{index:02d}.jpg", (96, 64), seed=index) for index in range(MAX_REFERENCES + 1)]


def snapshot(paths: list[Path]) -> dict[str, object]:
    """Bytes, mtimes and the folder listings: anything petwatch might touch."""
    state: dict[str, object] = {}
    for path in paths:
        state[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        state[f"listing:{path.parent}"] = sorted(os.listdir(path.parent))
    return state


def record_on_disk(job_id: str) -> dict:
    return json.loads((locations.comics_dir() / f"{job_id}.json").read_text())


# --- success ---------------------------------------------------------------------------------
def test_a_comic_is_made_from_downscaled_upright_copies_and_recorded(studio, server, pet_photos):
    job = studio.submit(pet_photos, "my cat as a space pirate")
    assert job.state == "queued"
    assert record_on_disk(job.id)["state"] == "queued"  # persisted before any request

    done = studio.run(job.id)

    assert done.state == "succeeded", done.error
    assert server.problems == []
    request = server.requests[-1]
    assert request.model == "gpt-image-1.5"
    assert "my cat as a space pirate" in request.prompt and "markings" in request.prompt
    assert request.prompt == done.full_prompt
    assert request.fields["size"] == "1024x1024" and request.fields["quality"] == "low"
    assert request.fields["input_fidelity"] == "high" and request.fields["output_format"] == "png"
    assert len(request.images) == len(pet_photos)
    assert all(max(image.width, image.height) <= REFERENCE_PX for image in request.images)
    rotated = request.images[-1]
    assert (rotated.width, rotated.height) == (192, 256)  # EXIF rotation applied, then downscaled

    image = Path(done.image)
    assert image.parent == locations.comics_dir()
    with Image.open(image) as comic:
        assert comic.format == "PNG" and comic.size == (1024, 1024)
    sidecar = record_on_disk(job.id)
    assert sidecar["state"] == "succeeded"
    assert sidecar["prompt"] == "my cat as a space pirate"
    assert sidecar["photos"] == [str(path) for path in pet_photos]
    assert sidecar["model"] == "gpt-image-1.5" and sidecar["parent"] is None
    assert sidecar["usage"]["input_tokens_details"]["image_tokens"] == 1000 * len(pet_photos)
    assert sidecar["cost_usd"] == comics.cost_from_usage(sidecar["usage"]) > 0
    assert sidecar["estimated_cost_usd"] > 0 and sidecar["created_at"] and sidecar["error"] is None


def test_originals_are_never_modified_and_nothing_lands_next_to_them(studio, server, pet_photos):
    before = snapshot(pet_photos)
    first = studio.run(studio.submit(pet_photos, "a day at the beach").id)
    second = studio.run(studio.submit([], "now at night", parent=first.id).id)
    assert (first.state, second.state) == ("succeeded", "succeeded")
    assert snapshot(pet_photos) == before


# --- failures --------------------------------------------------------------------------------
def test_a_safety_rejection_keeps_prompt_and_photos_for_resubmitting(studio, server, pet_photos):
    server.then("safety")
    job = studio.run(studio.submit(pet_photos, "my dog as a famous actor").id)

    assert job.state == "failed" and job.error_kind == "rejected"
    assert SAFETY_REASON in job.error and "submit again" in job.error
    on_disk = record_on_disk(job.id)
    assert on_disk["prompt"] == "my dog as a famous actor"
    assert on_disk["photos"] == [str(path) for path in pet_photos]

    retry = studio.resubmit(job.id, prompt="my dog as a pirate")
    assert retry.photos == job.photos and retry.id != job.id
    assert studio.run(retry.id).state == "succeeded"
    assert studio.get(job.id).state == "failed"  # the rejected attempt stays on record


def test_rate_limit_is_retried_until_it_succeeds(studio, server, pet_photos):
    server.then("rate_limit", "rate_limit")
    job = studio.run(studio.submit(pet_photos, "a comic").id)
    assert job.state == "succeeded", job.error
    assert job.attempts == 3 and len(server.requests) == 3


def test_a_persistent_server_error_fails_after_bounded_retries(studio, server, pet_photos):
    server.set_mode("server_error")
    job = studio.run(studio.submit(pet_photos, "a comic").id)
    assert job.state == "failed" and job.error_kind == "server"
    assert "HTTP 500" in job.error and "after 3 attempts" in job.error and "retry later" in job.error
    assert len(server.requests) == 3  # 1 + comic_max_retries


def test_an_exhausted_quota_is_not_retried(studio, server, pet_photos):
    server.set_mode("quota")
    job = studio.run(studio.submit(pet_photos, "a comic").id)
    assert job.error_kind == "quota" and "credit" in job.error
    assert len(server.requests) == 1


def test_a_hanging_server_times_out_quickly(server, pet_photos):
    studio = make_studio(server, comic_timeout_seconds=0.5)
    server.then("hang")
    started = time.monotonic()
    job = studio.run(studio.submit(pet_photos, "a comic").id)
    assert time.monotonic() - started < 5
    assert job.state == "failed" and job.error_kind == "timeout"
    assert "0.5 s" in job.error and "comic_timeout_seconds" in job.error
    assert len(server.requests) == 1  # a timeout may still be billed: not re-sent


def test_the_readmes_comic_prices_are_the_estimators():
    from tests.conftest import REPO

    from petwatch.comics.pricing import estimate_cost_usd

    readme = " ".join((REPO / "README.md").read_text().split())
    defaults = settings.Settings.model_fields
    size, quality = defaults["comic_size"].default, defaults["comic_quality"].default
    fidelity = defaults["comic_input_fidelity"].default
    one, two, four = (sum(estimate_cost_usd(n, size, quality, fidelity)) for n in (1, 2, 4))
    assert f"${one:.2f} for one photo, ${two:.2f} for two, ${four:.2f} for four" in readme
    base = sum(estimate_cost_usd(0, size, quality, fidelity))
    assert f"${base:.3f} plus ${one - base:.3f} per reference image" in readme


def test_no_api_key_says_how_to_set_one_before_anything_is_queued(server, pet_photos):
    studio = make_studio(server, openai_api_key=None)
    said = studio.estimate(1)["no_key"]
    assert said and "export OPENAI_API_KEY=" in said and str(locations.config_file()) in said
    with pytest.raises(PetwatchError, match="no OpenAI API key"):
        studio.submit(pet_photos, "a comic")
    assert studio.list() == [] and server.requests == []
    assert make_studio(server).estimate(1)["no_key"] is None


def test_openai_api_key_from_the_environment_is_used(server, pet_photos, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    studio = make_studio(server, openai_api_key=None)
    assert studio.run(studio.submit(pet_photos, "a comic").id).state == "succeeded"


@pytest.mark.parametrize(
    ("behaviour", "kind", "words"),
    [
        ("unauthorized", "auth", "OPENAI_API_KEY"),
        ("forbidden", "forbidden", "gpt-image-1.5"),
        ("garbage", "bad_response", "not an image"),
    ],
)
def test_refusals_are_explained(studio, server, pet_photos, behaviour, kind, words):
    server.then(behaviour)
    job = studio.run(studio.submit(pet_photos, "a comic").id)
    assert job.state == "failed" and job.error_kind == kind and words in job.error
    assert len(server.requests) == 1


def test_network_down_is_explained(server, pet_photos):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    studio = make_studio(server, openai_base_url=f"http://127.0.0.1:{port}/v1", comic_max_retries=1)
    job = studio.run(studio.submit(pet_photos, "a comic").id)
    assert job.state == "failed" and job.error_kind == "network"
    assert f"127.0.0.1:{port}" in job.error and "network" in job.error


def test_an_unreadable_photo_fails_the_job_before_sending(studio, server, pet_photos, tmp_path):
    broken = tmp_path / "album" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    job = studio.run(studio.submit([*pet_photos, broken], "a comic").id)
    assert job.error_kind == "bad_photo" and str(broken) in job.error
    assert server.requests == []


# --- refinement ------------------------------------------------------------------------------
def test_refinement_sends_the_previous_comic_and_keeps_the_chain(studio, server, pet_photos):
    first = studio.run(studio.submit(pet_photos, "a day at the beach").id)
    refined = studio.submit([], "make it night", parent=first.id)

    assert refined.parent == first.id and refined.photos == first.photos
    assert refined.references == [first.image, *first.photos]
    done = studio.run(refined.id)
    assert done.state == "succeeded", done.error
    request = server.requests[-1]
    assert len(request.images) == len(pet_photos) + 1
    sent_comic = request.images[0]
    assert (sent_comic.width, sent_comic.height) == (
        REFERENCE_PX,
        REFERENCE_PX,
    )  # the 1024 px comic, downscaled
    assert "a day at the beach" in request.prompt and "make it night" in request.prompt
    assert [job.id for job in studio.chain(done.id)] == [first.id, done.id]
    assert record_on_disk(done.id)["parent"] == first.id
    assert server.problems == []


def test_refining_an_unfinished_comic_is_refused(studio, pet_photos):
    queued = studio.submit(pet_photos, "a comic")
    with pytest.raises(PetwatchError, match="no finished image"):
        studio.submit([], "again", parent=queued.id)


# --- limits ----------------------------------------------------------------------------------
def test_more_than_16_photos_are_refused_and_refinement_stays_within_16(studio, server, many_photos):
    with pytest.raises(PetwatchError, match="at most 16"):
        studio.submit(many_photos, "a comic")
    assert list(locations.comics_dir().glob("*.json")) == []

    first = studio.run(studio.submit(many_photos[:16], "a comic").id)
    refined = studio.run(studio.submit([], "more colour", parent=first.id).id)
    assert refined.state == "succeeded", refined.error
    assert len(server.requests[-1].images) == MAX_REFERENCES
    assert refined.photos == first.photos  # the selection is kept whole for resubmitting


def test_the_daily_budget_refuses_what_would_exceed_it(server, pet_photos):
    studio = make_studio(server)
    one = studio.estimate(len(pet_photos))["usd"]
    studio = make_studio(server, comic_daily_budget_usd=one * 1.5)
    studio.submit(pet_photos, "first comic")  # queued: its estimate is reserved
    with pytest.raises(PetwatchError, match="budget") as refused:
        studio.submit(pet_photos, "second comic")
    assert "comic_daily_budget_usd" in str(refused.value)
    assert len(studio.list()) == 1
    assert studio.estimate(len(pet_photos))["within_budget"] is False

    off = make_studio(server, comic_daily_budget_usd=0)
    with pytest.raises(PetwatchError, match="switched off"):
        off.submit(pet_photos, "a comic")


def test_estimate_grows_with_quality_size_and_references(studio):
    low = studio.estimate(1, "1024x1024", "low")
    assert low["references"] == 1 and low["usd"] == pytest.approx(low["output_usd"] + low["input_usd"], abs=1e-4)
    assert studio.estimate(1, "1024x1024", "high")["usd"] > low["usd"]
    assert studio.estimate(1, "1536x1024", "low")["usd"] > low["usd"]
    assert studio.estimate(4, "1024x1024", "low")["usd"] > low["usd"]
    assert low["basis"] and low["budget_usd"] == studio.settings.comic_daily_budget_usd
    with pytest.raises(PetwatchError):
        studio.estimate(MAX_REFERENCES + 1)
    with pytest.raises(PetwatchError, match="size"):
        studio.estimate(1, "999x999")


# --- jobs ------------------------------------------------------------------------------------
def test_records_survive_a_restart(server, pet_photos):
    studio = make_studio(server)
    done = studio.run(studio.submit(pet_photos, "finished before the restart").id)
    waiting = studio.submit(pet_photos, "still queued")
    cut_short = studio.submit(pet_photos, "running when the daemon died")
    # What a killed daemon leaves behind: a record that says "running".
    path = locations.comics_dir() / f"{cut_short.id}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "state": "running", "attempts": 1}))

    restarted = make_studio(server)

    assert restarted.get(done.id).to_dict() == done.to_dict()
    assert restarted.get(waiting.id).state == "queued"
    interrupted = restarted.get(cut_short.id)
    assert interrupted.state == "failed" and interrupted.error == "interrupted by a restart; retry it"
    assert record_on_disk(cut_short.id)["state"] == "failed"
    assert restarted.run(waiting.id).state == "succeeded"
    assert restarted.run(restarted.resubmit(cut_short.id).id).state == "succeeded"
    assert {job.id for job in restarted.list()} >= {done.id, waiting.id, cut_short.id}


def test_cancel_a_queued_job(studio, server, pet_photos):
    job = studio.submit(pet_photos, "a comic")
    assert studio.cancel(job.id).state == "cancelled"
    assert studio.run(job.id).state == "cancelled"
    assert server.requests == [] and record_on_disk(job.id)["state"] == "cancelled"


def test_cancel_during_backoff_stops_at_once(server, pet_photos):
    studio = ComicStudio(make_settings(server), backoff_base_seconds=30)
    server.set_mode("server_error")
    job = studio.submit(pet_photos, "a comic")
    worker = threading.Thread(target=studio.run, args=(job.id,))
    worker.start()
    deadline = time.monotonic() + 5
    while "retrying" not in studio.get(job.id).progress and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    studio.cancel(job.id)
    worker.join(timeout=5)
    assert not worker.is_alive() and time.monotonic() - started < 2
    assert studio.get(job.id).state == "cancelled" and len(server.requests) == 1


def test_cancel_while_the_request_is_in_flight_drops_the_answer(studio, server, pet_photos):
    server.hang_seconds = 0.5
    server.then("slow")  # answers, but only after the cancel
    job = studio.submit(pet_photos, "a comic")
    worker = threading.Thread(target=studio.run, args=(job.id,))
    worker.start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert studio.cancel(job.id).state == "cancelled"  # at once, not when the answer comes
    worker.join(timeout=5)
    final = studio.get(job.id)
    assert final.state == "cancelled" and final.image is None and final.error is None
    assert final.cost_usd and final.usage  # the request may have been billed: it is recorded
    assert list(locations.comics_dir().glob("*.png")) == []


def test_bad_requests_are_refused_before_anything_is_queued(studio, pet_photos, tmp_path):
    with pytest.raises(PetwatchError, match="prompt"):
        studio.submit(pet_photos, "   ")
    with pytest.raises(PetwatchError, match="at least one photo"):
        studio.submit([], "a comic")
    with pytest.raises(PetwatchError, match="not found"):
        studio.submit([tmp_path / "missing.jpg"], "a comic")
    with pytest.raises(PetwatchError, match="quality"):
        studio.submit(pet_photos, "a comic", quality="ultra")
    with pytest.raises(PetwatchError, match="no comic job"):
        studio.get("nope")
    assert studio.list() == []


def test_the_fake_server_catches_oversized_references(server, pet_photos):
    """The server's own check works, so the passing tests above mean something."""
    studio = make_studio(server, comic_reference_px=1024)  # copies larger than the fake allows
    big = pet_photos[-1]  # 640 px long side > 256
    job = studio.run(studio.submit([big], "a comic").id)
    assert job.state == "failed" and "over 256 px" in job.error
    assert server.problems


def test_listeners_hear_every_change(server, pet_photos):
    heard: list[tuple[str, str]] = []
    studio = ComicStudio(
        make_settings(server),
        backoff_base_seconds=0.01,
        on_change=lambda job: heard.append((job.state, job.progress)),
    )
    server.then("rate_limit")
    studio.run(studio.submit(pet_photos, "a comic").id)
    states = [state for state, _ in heard]
    assert states[0] == "queued" and states[-1] == "succeeded" and "running" in states
    assert any("retrying" in progress for _, progress in heard)
