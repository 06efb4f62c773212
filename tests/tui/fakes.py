"""A stand-in for AsyncDaemonClient with fixed data: deterministic screens without a daemon."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

from PIL import Image, ImageDraw

from petwatch.client import DaemonError, DaemonUnavailable

FAKE_SOCKET = Path("/tmp/petwatch-test/run/petwatch.sock")


def fake_hits(count: int, folder: str = "/photos/pets") -> list[dict]:
    breeds = ["bengal", "birman", "bombay", "persian", "ragdoll", "sphynx", "beagle", "pug"]
    return [
        {
            "path": f"{folder}/{breeds[i % len(breeds)]}_{i:03d}.jpg",
            "score": round(1.0 - i * 0.0009, 4),
            "content_hash": f"{i:016x}",
            "size": 100_000 + i,
            "mtime_ns": 0,
            "width": 640,
            "height": 480,
            "taken_at": 1_600_000_000 + i * 86_400,
            "indexed_at": 1_700_000_000,
            "view": 0,
            "online": True,
            "pet_score": 0.9 if i % 3 else 0.01,
            "species": ("cat" if i % 8 < 6 else "dog") if i % 3 else "none",
            "label": breeds[i % len(breeds)] if i % 3 else "lakeside",
            "camera": "Apple iPhone 12 Pro" if i % 3 else "",
            "city": "Lisbon" if i % 2 else "",
            "region": "Lisbon" if i % 2 else "",
            "country": "Portugal" if i % 2 else "",
            "classes": {},
            # the search's view of its date, place and concepts (HitReply)
            "taken": 1_600_000_000 + i * 86_400 if i % 4 else 1_650_000_000,
            "taken_from": "exif" if i % 4 else "file",
            "place": "Lisbon, Portugal" if i % 2 else "",
            "concepts": [breeds[i % len(breeds)], "seashore", "sandbar"] if i % 2 else [],
        }
        for i in range(count)
    ]


def fake_picture(path: str, size: int) -> bytes:
    """A small deterministic picture per path (PNG: decodes identically everywhere)."""
    digest = hashlib.sha256(path.encode()).digest()
    width, height = size, size * 3 // 4
    image = Image.new("RGB", (width, height), tuple(digest[0:3]))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 4, height // 5, width * 3 // 4, height * 4 // 5), fill=tuple(digest[3:6]))
    draw.rectangle((0, height * 4 // 5, width, height), fill=tuple(digest[6:9]))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def fake_status(indexed: int = 1234, **overrides) -> dict:
    status = {
        "state": "idle",
        "indexed": indexed,
        "queued": 0,
        "failed": 0,
        "folders": [{"path": "/photos/pets", "mode": "events", "online": True, "photos": indexed}],
        "model": "efficientnet_lite0",
        "engine": "onnx (ONNX Runtime 1.32.0, CPU, float32)",
        "dim": 1280,
        "uptime_s": 1.0,
        "progress": None,
        "pid": 1,
        "version": "0",
        "db": "/tmp/milvus.db",
        "top_k": 20,
        "min_score": -1.0,
    }
    status.update(overrides)
    return status


class FakeClient:
    def __init__(
        self,
        running: bool = True,
        status: dict | None = None,
        hits: list[dict] | None = None,
        thumbnail_delay: float = 0.0,
        failures: list[dict] | None = None,
    ) -> None:
        self.socket = FAKE_SOCKET
        self.running = running
        self._status = status or fake_status()
        self.hits = hits if hits is not None else fake_hits(40)
        self.thumbnail_delay = thumbnail_delay
        self._failures = failures or []
        self.thumbnail_calls: list[tuple[str, int]] = []
        self.searches: list[dict] = []
        self.status_calls = 0  # the TUI is told the status (hello, status events), never asks
        self.words_reply = {"places": ["Lisbon", "Portugal", "Los Angeles", "Tuscany"], "pets": ["Rex", "Luna"]}
        self.words_calls = 0
        self.events_queue: asyncio.Queue | None = None

    def _check(self) -> None:
        if not self.running:
            raise DaemonUnavailable(self.socket)

    async def aclose(self) -> None:
        pass

    async def events(self):
        self._check()
        self.events_queue = asyncio.Queue()
        yield "hello", self._status
        while True:
            item = await self.events_queue.get()
            if item is None:
                return
            yield item

    async def status(self) -> dict:
        self._check()
        self.status_calls += 1
        return self._status

    async def search(
        self, image=None, photo=None, top_k=None, min_score=None, offset=0, species=None, text=None
    ) -> dict:
        """Words are read as the daemon reads them (petwatch.words, over this fake's places and
        pets): an unknown word is the daemon's one-line 400."""
        self._check()
        asked = {"image": image, "photo": photo, "top_k": top_k, "min_score": min_score, "text": text}
        self.searches.append({**asked, "offset": offset, "species": species})
        readings = []
        if text:
            from petwatch import words

            try:
                query = words.parse(text, pets=self.words_reply["pets"], places=self.words_reply["places"])
            except words.UnknownWords as error:
                raise DaemonError(str(error), 400) from None
            readings = [{"words": r.words, "kind": r.kind, "meaning": r.meaning} for r in query.readings]
        top_k = self._status.get("top_k", 20) if top_k is None else top_k  # None: the daemon's settings
        min_score = self._status.get("min_score", -1.0) if min_score is None else min_score
        hits = [h for h in self.hits if h["score"] >= min_score and (not species or h["species"] in species)]
        hits = hits[offset : offset + top_k]
        return {"query": image or photo or text, "hits": hits, "took_ms": 12.0, "readings": readings}

    async def words(self) -> dict:
        self._check()
        self.words_calls += 1
        return self.words_reply

    async def thumbnail(self, path: str, size: int = 256) -> bytes:
        self._check()
        self.thumbnail_calls.append((path, size))
        if self.thumbnail_delay:
            await asyncio.sleep(self.thumbnail_delay)
        return fake_picture(path, min(size, 256))

    async def photo(self, path: str) -> dict:
        self._check()
        hit = next((h for h in self.hits if h["path"] == path), None)
        if hit is None:
            raise DaemonError(f"{path} is not an indexed photo", 400)
        return {**hit, "folder": str(Path(path).parent)}

    async def folders(self) -> list[dict]:
        self._check()
        return self._status["folders"]

    async def add_folder(self, path: str) -> list[dict]:
        self._check()
        self._status["folders"].append({"path": path, "mode": "events", "online": True, "photos": 0})
        return self._status["folders"]

    async def remove_folder(self, path: str) -> list[dict]:
        self._check()
        self._status["folders"] = [f for f in self._status["folders"] if f["path"] != path]
        return self._status["folders"]

    async def rescan(self) -> dict:
        self._check()
        return {"queued": True}

    async def failures(self) -> list[dict]:
        self._check()
        return self._failures


# --- comics and pets, with fixed data -----------------------------------------------------------
def fake_comic(
    job_id: str,
    state: str = "succeeded",
    prompt: str = "Rex as a space pirate, four panels",
    photos: list[str] | None = None,
    **overrides,
) -> dict:
    photos = photos if photos is not None else [h["path"] for h in fake_hits(3)]
    job = {
        "id": job_id,
        "prompt": prompt,
        "photos": photos,
        "parent": None,
        "model": "gpt-image-1.5",
        "size": "1024x1024",
        "quality": "medium",
        "input_fidelity": "high",
        "created_at": "2026-05-12T18:15:02+00:00",
        "full_prompt": prompt,
        "references": photos,
        "state": state,
        "progress": {"succeeded": "done", "failed": "failed"}.get(state, state),
        "started_at": "2026-05-12T18:15:03+00:00",
        "finished_at": None,
        "attempts": 1,
        "image": f"/home/you/.local/share/petwatch/comics/{job_id}.png" if state == "succeeded" else None,
        "estimated_cost_usd": 0.171,
        "usage": None,
        "cost_usd": 0.061 if state == "succeeded" else None,
        "error": None,
        "error_kind": None,
    }
    job.update(overrides)
    return job


def fake_comic_picture() -> bytes:
    """A square "comic": four panels (PNG)."""
    image = Image.new("RGB", (256, 256), (250, 240, 200))
    draw = ImageDraw.Draw(image)
    for box, colour in (
        ((8, 8, 124, 124), (200, 80, 60)),
        ((132, 8, 248, 124), (60, 120, 200)),
        ((8, 132, 124, 248), (80, 160, 90)),
        ((132, 132, 248, 248), (230, 180, 40)),
    ):
        draw.rectangle(box, outline=(20, 20, 20), width=4, fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class FakeStudioClient(FakeClient):
    """FakeClient plus comic jobs and pet profiles. Submitted jobs stay queued until a test
    pushes their changes with ``push_comic`` (as the daemon's events would)."""

    def __init__(
        self,
        comics: list[dict] | None = None,
        pets: list[dict] | None = None,
        budget: float = 5.0,
        spent: float = 0.2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.jobs: dict[str, dict] = {job["id"]: job for job in comics or []}
        self.pet_profiles: dict[str, dict] = {pet["name"]: pet for pet in pets or []}
        self.budget, self.spent = budget, spent
        self.calls: list[tuple[str, dict]] = []
        self.comic_listings = 0  # calls of comics(): what the gallery knows without events
        self.pet_groups: dict[int, dict] = {}
        self._next = 0

    async def comic_estimate(self, n=None, photos=None, size=None, quality=None, parent=None) -> dict:
        self._check()
        self.calls.append(("estimate", {"photos": photos, "size": size, "quality": quality, "parent": parent}))
        size, quality = size or "1024x1024", quality or "medium"
        if n is None and not photos and parent:
            n = len(self.jobs[parent]["photos"])
        refs = (n or len(photos or [])) + (1 if parent else 0)
        output = {"low": 0.009, "medium": 0.034, "high": 0.133, "auto": 0.2}[quality]
        usd = round(output + refs * 0.0336 + 0.0025, 4)
        return {
            "model": "gpt-image-1.5",
            "references": refs,
            "size": size,
            "quality": quality,
            "input_fidelity": "high",
            "output_usd": output,
            "input_usd": round(usd - output, 4),
            "usd": usd,
            "spent_today_usd": self.spent,
            "budget_usd": self.budget,
            "within_budget": self.spent + usd <= self.budget,
            "basis": "estimate",
        }

    def _new_job(self, photos, prompt, size, quality, parent) -> dict:
        self._next += 1
        job = fake_comic(
            f"20260512-1816{self._next:02d}-abc{self._next:03d}",
            state="queued",
            prompt=prompt,
            photos=list(photos),
            size=size or "1024x1024",
            quality=quality or "medium",
            parent=parent,
            progress="queued",
            started_at=None,
        )
        self.jobs[job["id"]] = job
        return dict(job)

    async def comic_submit(self, photos, prompt, size=None, quality=None, parent=None) -> dict:
        self._check()
        self.calls.append(("submit", {"photos": photos, "prompt": prompt, "size": size, "quality": quality}))
        return self._new_job(photos, prompt, size, quality, parent)

    async def comic_refine(self, job_id, prompt, photos=None, size=None, quality=None) -> dict:
        self._check()
        self.calls.append(("refine", {"job": job_id, "prompt": prompt}))
        parent = self.jobs[job_id]
        return self._new_job(photos or parent["photos"], prompt, size, quality, job_id)

    async def comic_retry(self, job_id, prompt=None) -> dict:
        self._check()
        self.calls.append(("retry", {"job": job_id, "prompt": prompt}))
        old = self.jobs[job_id]
        return self._new_job(old["photos"], prompt or old["prompt"], old["size"], old["quality"], old["parent"])

    async def comics(self) -> list[dict]:
        self._check()
        self.comic_listings += 1
        jobs = sorted(self.jobs.values(), key=lambda job: (job["created_at"], job["id"]), reverse=True)
        return [dict(job) for job in jobs]  # records of their own, as over the socket

    async def comic(self, job_id) -> dict:
        self._check()
        return {**self.jobs[job_id], "chain": [self.jobs[job_id]]}

    async def comic_cancel(self, job_id) -> dict:
        self._check()
        job = self.jobs[job_id]
        if job["state"] in ("queued", "running"):
            job.update(state="cancelled", progress="cancelled")
        return dict(job)

    async def comic_image(self, job_id) -> bytes:
        self._check()
        if self.jobs.get(job_id, {}).get("state") != "succeeded":
            raise DaemonError(f"comic {job_id} has no image", 400)
        return fake_comic_picture()

    async def push_comic(self, job_id: str, **changes) -> dict:
        """Change a job as the daemon would, and push the event."""
        job = self.jobs[job_id]
        job.update(changes)
        if job["state"] == "succeeded" and not job.get("image"):
            job["image"] = f"/home/you/.local/share/petwatch/comics/{job_id}.png"
        await self.events_queue.put(("comic", dict(job)))
        return job

    # --- pets
    async def pets(self) -> list[dict]:
        self._check()
        return [self._summary(name) for name in self.pet_profiles]

    def _summary(self, name: str) -> dict:
        pet = self.pet_profiles[name]
        return {
            "name": name,
            "created_at": 1_700_000_000.0,
            "examples": len(pet["examples"]),
            "confirmed": len(pet.get("yes", [])),
            "rejected": len(pet.get("not", [])),
            "threshold": 0.5,
            "count": len(self._album(name)),
            "stale": [],
            "example_paths": list(pet["examples"]),
        }

    def _album(self, name: str) -> list[dict]:
        pet = self.pet_profiles[name]
        rejected = set(pet.get("not", []))
        paths = [p for p in pet["album"] + pet.get("yes", []) if p not in rejected]
        marks = {**{p: "example" for p in pet["examples"]}, **{p: "yes" for p in pet.get("yes", [])}}
        return [
            {"path": p, "score": round(0.95 - i * 0.01, 4), "content_hash": f"{i:016x}", "mark": marks.get(p)}
            for i, p in enumerate(dict.fromkeys(paths))
        ]

    async def pet_add(self, name, photos) -> dict:
        self._check()
        pet = self.pet_profiles.setdefault(name, {"examples": [], "album": []})
        pet["examples"] += [p for p in photos if p not in pet["examples"]]
        pet["album"] += [p for p in photos if p not in pet["album"]]
        return self._summary(name)

    async def pet(self, name, offset=0, limit=0) -> dict:
        self._check()
        if name not in self.pet_profiles:
            raise DaemonError(f"no pet named {name!r}", 400)
        hits = self._album(name)
        return {**self._summary(name), "offset": offset, "hits": hits[offset : offset + limit if limit else None]}

    async def pet_paths(self, name, top=8) -> list[str]:
        return [hit["path"] for hit in (await self.pet(name))["hits"][:top]]

    async def pet_mark(self, name, paths, mark) -> dict:
        self._check()
        self.calls.append(("mark", {"name": name, "paths": list(paths), "mark": mark}))
        self.pet_profiles[name].setdefault(mark, []).extend(paths)
        return self._summary(name)

    async def pet_remove(self, name) -> dict:
        self._check()
        del self.pet_profiles[name]
        return {"removed": name}

    # --- pets found
    def found_group(self, gid: int, paths: list[str]) -> None:
        self.pet_groups[gid] = {
            "id": gid,
            "size": len(paths),
            "status": "open",
            "name": None,
            "cover": paths[0],
            "paths": list(paths),
            "species": "dog",
            "breed": "beagle",
            "first_day": "2024-01-01",
            "last_day": "2025-06-30",
            "reason": "seen on 14 days over 1 year",
            "evidence": 1.5,
            "lookalikes": False,
        }

    async def groups(self, include_all=False) -> list[dict]:
        self._check()
        return sorted(
            (g for g in self.pet_groups.values() if include_all or g["status"] == "open"), key=lambda g: -g["size"]
        )

    async def groups_why(self) -> dict:
        """What the daemon's last search for pets saw (DiscoveryWhyReply): 12 pet photos, 4 close pairs."""
        self._check()
        shown = sum(1 for g in self.pet_groups.values() if g["status"] == "open")
        return {
            "pet_photos": 12,
            "close_pairs": 4,
            "largest": 2,
            "one_moment": 0,
            "groups": shown,
            "min_group": 3,
            "min_moments": 2,
            "similar": 0.25,
        }

    async def group_action(self, gid, action, body=None) -> dict:
        self._check()
        self.calls.append((f"group {action}", {"id": gid, **(body or {})}))
        group = self.pet_groups[gid]
        if action == "name":
            group.update(status="named", name=body["name"])
            return await self.pet_add(body["name"], group["paths"])
        if action == "dismiss":
            group["status"] = "dismissed"
        elif action == "merge":
            other = self.pet_groups.pop(body["other"])
            group["paths"] += other["paths"]
        elif action == "remove":
            group["paths"] = [p for p in group["paths"] if p not in body["paths"]]
        group["size"] = len(group["paths"])
        return group
