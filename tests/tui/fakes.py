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
    return [{"path": f"{folder}/{breeds[i % len(breeds)]}_{i:03d}.jpg", "score": round(1.0 - i * 0.0009, 4),
             "content_hash": f"{i:016x}", "size": 100_000 + i, "mtime_ns": 0, "width": 640,
             "height": 480, "taken_at": 1_600_000_000 + i * 86_400, "indexed_at": 1_700_000_000,
             "view": 0, "online": True} for i in range(count)]


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
    status = {"state": "idle", "indexed": indexed, "queued": 0, "failed": 0,
              "folders": [{"path": "/photos/pets", "mode": "events", "online": True, "photos": indexed}],
              "model": "efficientnet_lite0", "dim": 1280, "uptime_s": 1.0, "progress": None,
              "pid": 1, "version": "0", "db": "/tmp/milvus.db"}
    status.update(overrides)
    return status


class FakeClient:
    def __init__(self, running: bool = True, status: dict | None = None, hits: list[dict] | None = None,
                 thumbnail_delay: float = 0.0, failures: list[dict] | None = None) -> None:
        self.socket = FAKE_SOCKET
        self.running = running
        self._status = status or fake_status()
        self.hits = hits if hits is not None else fake_hits(40)
        self.thumbnail_delay = thumbnail_delay
        self._failures = failures or []
        self.thumbnail_calls: list[tuple[str, int]] = []
        self.searches: list[dict] = []
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
        return self._status

    async def search(self, image=None, photo=None, top_k=20, min_score=0.0, offset=0) -> dict:
        self._check()
        self.searches.append({"image": image, "photo": photo, "top_k": top_k, "offset": offset})
        hits = [h for h in self.hits if h["score"] >= min_score][offset: offset + top_k]
        return {"query": image or photo, "hits": hits, "took_ms": 12.0}

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
