"""Comics end to end: a real daemon, the real CLI, and a real OpenAI-compatible HTTP server on
127.0.0.1 (tests/fake_openai.py). One daemon serves the whole module (it takes seconds to
start); the restart test runs last and restarts it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from album import snapshot
from conftest import TEST_MODEL, DaemonProcess, run_cli, write_photos
from fake_openai import SAFETY_REASON, FakeOpenAI
from petwatch import settings
from petwatch.client import AsyncDaemonClient, DaemonClient, DaemonError

REFERENCE_PX = 256  # small, so every album photo is really downscaled
HANG_SECONDS = 120.0  # the fake's "hang" lasts this long (the module stops it sooner)
FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def env():
    """A short private home, an album the daemon watches, the fake API and one daemon."""
    root = Path(tempfile.mkdtemp(prefix="pwc-", dir="/tmp"))
    server = FakeOpenAI(reference_px=REFERENCE_PX, hang_seconds=HANG_SECONDS).start()
    album = root / "album"
    photos = write_photos(album, 4)
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(settings.ENV_PREFIX):
                patch.delenv(name)
        patch.setenv("PETWATCH_HOME", str(root))
        patch.setenv("PETWATCH_MODEL", TEST_MODEL)
        patch.setenv("PETWATCH_SETTLE_SECONDS", "0.5")
        patch.setenv("PETWATCH_FOLDERS", json.dumps([str(album)]))
        patch.setenv("OPENAI_API_KEY", server.api_key)
        patch.setenv("OPENAI_BASE_URL", server.base_url)
        patch.setenv("PETWATCH_COMIC_REFERENCE_PX", str(REFERENCE_PX))
        patch.setenv("PETWATCH_COMIC_SIZE", "1024x1024")
        patch.setenv("PETWATCH_COMIC_QUALITY", "low")
        patch.setenv("PETWATCH_COMIC_MAX_RETRIES", "0")
        patch.setenv("PETWATCH_COMIC_TIMEOUT_SECONDS", "60")  # longer than the restart test
        patch.setenv("PETWATCH_COMIC_DAILY_BUDGET_USD", "50")
        state = SimpleNamespace(
            root=root, album=album, photos=[str(p) for p in photos], server=server, comics_dir=root / "data" / "comics"
        )
        state.daemon = DaemonProcess().start()
        try:
            yield state
        finally:
            state.daemon.stop()
            server.stop()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def client(env):
    with env.daemon.client() as client:
        yield client


@pytest.fixture(autouse=True)
def fresh_server(request):
    """Each test starts with the fake answering "ok" and no one-shot behaviours left."""
    if "env" in request.fixturenames:
        server = request.getfixturevalue("env").server
        server.set_mode("ok")
        server._queue.clear()
    yield


def wait_final(client: DaemonClient, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.comic(job_id)
        if job["state"] in FINAL:
            return job
        time.sleep(0.1)
    raise TimeoutError(f"comic {job_id} still {job['state']}")


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"no {what} after {timeout}s")


def newest(client: DaemonClient) -> dict:
    return client.comics()[0]


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


# --- without a daemon --------------------------------------------------------------------------
def test_comics_need_the_daemon(tmp_path):
    home = Path(tempfile.mkdtemp(prefix="pwn-", dir="/tmp"))
    try:
        photo = write_photos(tmp_path, 1)[0]
        for args in (
            ("comic", "--photo", str(photo), "--prompt", "a cat", "--yes"),
            ("comics", "list"),
            ("comics", "show", "20260101-000000-abcdef"),
        ):
            result = run_cli(*args, env={"PETWATCH_HOME": str(home)})
            assert result.returncode == 1, result
            lines = [line for line in result.stderr.splitlines() if line.startswith("petwatch:")]
            assert len(lines) == 1 and "daemon is not running" in lines[0], result.stderr
            assert "petwatch daemon" in lines[0]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_without_an_api_key_no_one_is_asked_to_spend_and_nothing_is_queued(home, tmp_path):
    photo = write_photos(tmp_path / "album", 1)[0]
    daemon = DaemonProcess().start()  # home: no OPENAI_API_KEY, none in the config
    terminal, user_side = pty.openpty()  # a terminal: the cost question would be asked on it
    try:
        result = subprocess.run(
            [sys.executable, "-m", "petwatch", "comic", "--photo", str(photo), "--prompt", "a cat"],
            stdin=user_side,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1
        assert "send it?" not in result.stderr and "estimated cost" not in result.stderr
        assert result.stderr.count("\n") == 1 and "no OpenAI API key" in result.stderr
        assert "export OPENAI_API_KEY=sk-..." in result.stderr and "openai_api_key" in result.stderr
        with daemon.client() as client:
            assert client.comic_estimate(n=1)["no_key"]  # the TUI shows it beside the cost
            with pytest.raises(DaemonError, match="no OpenAI API key"):  # and a submit is refused
                client.comic_submit([str(photo)], "a cat")
            assert client.comics() == []  # no failed job left behind
    finally:
        os.close(terminal)
        os.close(user_side)
        daemon.stop()


# --- the CLI -----------------------------------------------------------------------------------
def test_a_comic_via_the_cli_lands_in_the_data_dir_never_the_album(env, client):
    before = snapshot(env.album)
    sent_before = len(env.server.requests)

    result = run_cli(
        "comic", "--photo", env.photos[0], "--photo", env.photos[1], "--prompt", "my cat as a space pirate", "--yes"
    )

    assert result.returncode == 0, result.stderr
    # the estimate and the day's spend come first, before anything is sent
    estimate_at = result.stderr.index("estimated cost: about $")
    assert "2 reference image(s)" in result.stderr
    assert "daily cap" in result.stderr and "$50.00" in result.stderr
    assert estimate_at < result.stderr.index("queued comic")
    assert "cost $" in result.stderr  # the reported cost afterwards

    png = Path(result.stdout.strip().splitlines()[-1])
    assert png.parent == env.comics_dir and png.suffix == ".png"
    assert png_size(png.read_bytes()) == (1024, 1024)
    record = json.loads(png.with_suffix(".json").read_text())
    assert record["state"] == "succeeded" and record["image"] == str(png)
    assert record["prompt"] == "my cat as a space pirate"
    assert record["photos"] == env.photos[:2]
    assert record["cost_usd"] > 0

    assert snapshot(env.album) == before  # nothing written, moved or touched in the album
    assert not any(path.suffix == ".png" for path in env.album.rglob("*"))

    sent = env.server.requests[sent_before:]
    assert len(sent) == 1 and env.server.problems == []
    assert len(sent[0].images) == 2
    assert all(max(image.width, image.height) <= REFERENCE_PX for image in sent[0].images)
    assert "my cat as a space pirate" in sent[0].prompt

    assert client.comic_image(record["id"]) == png.read_bytes()
    listed = run_cli("comics", "list")
    assert listed.returncode == 0 and record["id"] in listed.stdout and "succeeded" in listed.stdout
    shown = run_cli("comics", "show", record["id"])
    assert shown.returncode == 0 and str(png) in shown.stdout
    as_json = json.loads(run_cli("comics", "show", record["id"], "--json").stdout)
    assert as_json["image"] == str(png) and [job["id"] for job in as_json["chain"]] == [record["id"]]


def test_the_estimate_is_shown_and_nothing_is_sent_unconfirmed(env, client):
    sent_before, jobs_before = len(env.server.requests), len(client.comics())
    result = subprocess.run(  # stdin is a pipe, not a terminal: there is no one to ask
        [
            sys.executable,
            "-m",
            "petwatch",
            "comic",
            "--photo",
            env.photos[0],
            "--photo",
            env.photos[1],
            "--photo",
            env.photos[2],
            "--prompt",
            "a cat",
            "--quality",
            "high",
        ],
        capture_output=True,
        text=True,
        input="",
        timeout=120,
    )

    assert result.returncode == 1
    assert "3 reference image(s)" in result.stderr and "high quality" in result.stderr
    high = client.comic_estimate(n=3, quality="high")
    assert f"about ${high['usd']:.2f}" in result.stderr
    assert "confirm with --yes" in result.stderr
    assert len(env.server.requests) == sent_before and len(client.comics()) == jobs_before


def test_on_a_terminal_the_cost_is_asked_about_before_sending(env, client):
    sent_before, jobs_before = len(env.server.requests), len(client.comics())
    terminal, user_side = pty.openpty()
    try:
        os.write(terminal, b"n\n")  # the user answers no
        result = subprocess.run(
            [sys.executable, "-m", "petwatch", "comic", "--photo", env.photos[0], "--prompt", "a cat"],
            stdin=user_side,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.close(terminal)
        os.close(user_side)

    assert result.returncode == 1
    assert result.stderr.index("estimated cost") < result.stderr.index("send it? [y/N]")
    assert "petwatch: not sent" in result.stderr
    assert len(env.server.requests) == sent_before and len(client.comics()) == jobs_before


def test_refine_sends_the_previous_comic_first_and_records_the_parent(env, client):
    first = wait_final(client, client.comic_submit(env.photos[:2], "the cat finds a map")["id"])
    assert first["state"] == "succeeded"

    result = run_cli("comic", "--refine", first["id"], "--prompt", "make it night", "--yes")

    assert result.returncode == 0, result.stderr
    assert "3 reference image(s)" in result.stderr  # the comic + the parent's two photos
    png = Path(result.stdout.strip().splitlines()[-1])
    refined = json.loads(png.with_suffix(".json").read_text())
    assert refined["parent"] == first["id"] and refined["photos"] == first["photos"]
    assert refined["references"] == [first["image"], *first["photos"]]

    request = env.server.requests[-1]
    assert env.server.problems == [] and len(request.images) == 3
    assert "first made from: the cat finds a map" in request.prompt
    assert "Now change: make it night" in request.prompt
    with Image.open(first["image"]) as comic, Image.open(io.BytesIO(request.images[0].data)) as sent:
        expected = comic.convert("RGB").resize(sent.size, Image.Resampling.LANCZOS)
        difference = np.abs(np.asarray(sent.convert("RGB"), float) - np.asarray(expected, float))
        assert sent.size == (REFERENCE_PX, REFERENCE_PX) and difference.mean() < 3

    shown = client.comic(refined["id"])
    assert [job["id"] for job in shown["chain"]] == [first["id"], refined["id"]]


def test_a_safety_rejection_keeps_the_job_and_a_retry_with_new_words_works(env, client):
    env.server.then("safety")
    result = run_cli(
        "comic", "--photo", env.photos[0], "--photo", env.photos[3], "--prompt", "my cat meets the president", "--yes"
    )

    assert result.returncode == 1
    assert "refused this comic for safety reasons" in result.stderr
    assert "petwatch comics retry" in result.stderr
    failed = newest(client)
    assert failed["state"] == "failed" and failed["error_kind"] == "rejected"
    assert SAFETY_REASON in failed["error"] and failed["image"] is None
    assert failed["prompt"] == "my cat meets the president"
    assert failed["photos"] == [env.photos[0], env.photos[3]]
    assert not (env.comics_dir / f"{failed['id']}.png").exists()
    listed = run_cli("comics", "list").stdout.splitlines()
    line = next(line for line in listed if line.startswith(failed["id"]))
    assert f"spent $0 (est. ${failed['estimated_cost_usd']:.2f})" in line  # the estimate is no charge

    retry = run_cli("comics", "retry", failed["id"], "--prompt", "my cat meets a dog", "--yes")

    assert retry.returncode == 0, retry.stderr
    assert "estimated cost: about $" in retry.stderr
    again = newest(client)
    assert again["id"] != failed["id"] and again["state"] == "succeeded"
    assert again["prompt"] == "my cat meets a dog" and again["photos"] == failed["photos"]
    assert retry.stdout.strip().splitlines()[-1] == again["image"]
    assert "my cat meets a dog" in env.server.requests[-1].prompt
    assert client.comic(failed["id"])["state"] == "failed"  # the old record stays as it was


# --- the socket API ----------------------------------------------------------------------------
def test_requests_are_validated_with_one_error_shape(env, client, tmp_path):
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("not a photo")
    cases = [
        ({"photos": ["/no/such/photo.jpg"], "prompt": "x"}, 400, "photo not found: /no/such/photo.jpg"),
        ({"photos": ["relative.jpg"], "prompt": "x"}, 400, "must be absolute"),
        ({"photos": [str(not_a_photo)], "prompt": "x"}, 400, "not a photo"),
        ({"photos": [], "prompt": "x"}, 400, "at least one photo"),
        ({"photos": env.photos[:1] * 17, "prompt": "x"}, 422, "photos"),
        ({"photos": env.photos[:1], "prompt": ""}, 422, "prompt"),
        ({"photos": env.photos[:1], "prompt": "x" * 4001}, 422, "prompt"),
        ({"photos": env.photos[:1], "prompt": "x", "size": "9x9"}, 422, "size"),
        ({"photos": env.photos[:1], "prompt": "x", "bogus": 1}, 422, "bogus"),
        ({"photos": env.photos[:1], "prompt": "x", "parent": "nope"}, 400, "no comic job 'nope'"),
    ]
    jobs_before = len(client.comics())
    for body, status, words in cases:
        with pytest.raises(DaemonError) as caught:
            client.call("POST", "/comics", json=body)
        assert caught.value.status == status, (body, caught.value)
        assert words in str(caught.value), (body, caught.value)
    response = client._http.post("/comics", json={"photos": [], "prompt": "x"})
    assert response.status_code == 400 and set(response.json()) == {"error"}
    assert len(client.comics()) == jobs_before

    with pytest.raises(DaemonError, match="no comic job"):
        client.comic("20260101-000000-abcdef")
    with pytest.raises(DaemonError) as caught:
        client.comic("../../etc")
    assert caught.value.status in (404, 422)
    with pytest.raises(DaemonError, match="give the number of reference images"):
        client.comic_estimate()


def test_estimates_events_and_the_async_client(env, client):
    estimate = client.comic_estimate(photos=env.photos[:2])
    assert estimate["references"] == 2 and estimate["usd"] > 0 and estimate["within_budget"]
    assert estimate["usd"] == client.comic_estimate(n=2)["usd"]
    assert client.comic_estimate(n=2, quality="high")["usd"] > estimate["usd"]

    seen: list[dict] = []
    listening = threading.Event()

    def listen() -> None:
        with env.daemon.client() as listener:
            for kind, data in listener.events():
                listening.set()
                if kind == "comic":
                    seen.append(data)
                    if data["state"] in FINAL:
                        return

    threading.Thread(target=listen, daemon=True).start()
    assert listening.wait(10)
    time.sleep(0.3)  # the subscription is registered just after "hello"

    async def through_the_async_client() -> tuple[dict, dict, bytes, list[dict]]:
        async_client = AsyncDaemonClient(client.socket)
        try:
            job = await async_client.comic_submit(env.photos[2:4], "the cat rides a bike")
            while (done := await async_client.comic(job["id"]))["state"] not in FINAL:
                await asyncio.sleep(0.1)
            await async_client.comic_estimate(n=1)
            return job, done, await async_client.comic_image(job["id"]), await async_client.comics()
        finally:
            await async_client.aclose()

    job, done, image, jobs = asyncio.run(through_the_async_client())
    assert job["state"] == "queued" and done["state"] == "succeeded"
    assert png_size(image) == (1024, 1024) and jobs[0]["id"] == job["id"]

    wait_for(lambda: seen and seen[-1]["state"] == "succeeded", 10, "final comic event")
    states = [event["state"] for event in seen if event["id"] == job["id"]]
    assert states[0] == "queued" and "running" in states and states[-1] == "succeeded"
    assert seen[-1] == {key: value for key, value in done.items() if key != "chain"}


# --- a restart (last: it restarts the module's daemon) -----------------------------------------
def test_jobs_survive_a_restart_with_a_clear_state(env, client):
    env.server.then("hang")
    hanging = client.comic_submit(env.photos[:1], "the cat waits")
    wait_for(
        lambda: client.comic(hanging["id"])["state"] == "running" and env.server.requests[-1].behaviour == "hang",
        what="hanging request",
    )
    queued = run_cli("comic", "--photo", env.photos[1], "--prompt", "the cat naps", "--yes", "--no-wait")
    assert queued.returncode == 0, queued.stderr
    queued_id = queued.stdout.strip()
    dropped = client.comic_submit(env.photos[:1], "never mind")
    cancelled = run_cli("comics", "cancel", dropped["id"])
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    assert client.comic(queued_id)["state"] == "queued"

    env.daemon.stop()  # SIGTERM, with a request still in flight
    on_disk = {
        job_id: json.loads((env.comics_dir / f"{job_id}.json").read_text())["state"]
        for job_id in (hanging["id"], queued_id, dropped["id"])
    }
    assert on_disk == {hanging["id"]: "running", queued_id: "queued", dropped["id"]: "cancelled"}

    sent_before = len(env.server.requests)
    # petwatch's own setting wins over OPENAI_BASE_URL (pointed at nothing here)
    env.daemon = DaemonProcess(
        {"PETWATCH_OPENAI_BASE_URL": env.server.base_url, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    ).start()
    with env.daemon.client() as after:
        interrupted = after.comic(hanging["id"])
        assert interrupted["state"] == "failed" and interrupted["error_kind"] == "interrupted"
        assert "interrupted by a restart; retry it" in interrupted["error"]
        assert interrupted["prompt"] == "the cat waits" and interrupted["photos"] == env.photos[:1]
        resumed = wait_final(after, queued_id)  # still queued before: it runs after the restart
        assert resumed["state"] == "succeeded" and Path(resumed["image"]).is_file()
        assert after.comic(dropped["id"])["state"] == "cancelled"
    assert len(env.server.requests) == sent_before + 1  # only the queued one; nothing re-sent
    assert "the cat naps" in env.server.requests[-1].prompt

    shown = run_cli("comics", "show", hanging["id"])
    assert shown.returncode == 0 and "interrupted by a restart" in shown.stdout


def test_a_comic_of_a_pet_takes_its_references_from_the_photos_the_words_describe(env, client):
    env.daemon.wait_idle()
    first = client.search(photo=env.photos[0], top_k=1)["hits"][0]
    word = "cat" if first["species"] == "cat" else "dog"
    client.pet_add("Cola", [env.photos[0]])
    hits = client.search(text=word, pet="Cola", top_k=2)["hits"]
    assert hits and env.photos[0] in {h["path"] for h in hits}
    result = run_cli("comic", "--pet", "Cola", "--text", word, "--pet-photos", "2", "--prompt", "at the beach", "--yes")
    assert result.returncode == 0, result.stderr
    record = json.loads(Path(result.stdout.strip().splitlines()[-1]).with_suffix(".json").read_text())
    assert record["photos"] == [h["path"] for h in hits]
    alone = run_cli("comic", "--text", word, "--prompt", "x", "--yes")
    assert alone.returncode == 1 and "--pet" in alone.stderr
    client.pet_remove("Cola")
