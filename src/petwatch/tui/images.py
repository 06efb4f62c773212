"""Thumbnails in memory: decoding the daemon's JPEGs and an LRU cache of them."""

from __future__ import annotations

import io
import os
from collections import OrderedDict

from PIL import Image

# The extensions the indexer reads (petwatch.photos.PHOTO_EXTENSIONS; a test keeps them equal):
# the TUI imports no indexing module, so it offers the same files in its pickers.
PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".heic", ".heif", ".hif", ".avif", ".tif", ".tiff"}
)

TILE_SIZE = 128  # the daemon's thumbnail sizes: 128, 256, 512, 1024 pixels on the long side
PREVIEW_SIZE = 1024


def is_photo_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in PHOTO_EXTENSIONS


def decode(data: bytes, max_side: int | None = None) -> Image.Image:
    """JPEG or PNG bytes to a loaded RGB image, shrunk to ``max_side`` pixels on the long side
    when given (call it in a thread: it is CPU work)."""
    image: Image.Image = Image.open(io.BytesIO(data))
    if max_side:
        image.draft("RGB", (max_side, max_side))  # JPEG: decode at a smaller scale
    image.load()
    image = image if image.mode == "RGB" else image.convert("RGB")
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


class ThumbnailCache:
    """Decoded thumbnails by (path, size), least recently used dropped first."""

    def __init__(self, capacity: int = 600) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, int], Image.Image] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._items

    def get(self, path: str, size: int) -> Image.Image | None:
        key = (path, size)
        image = self._items.get(key)
        if image is not None:
            self._items.move_to_end(key)
        return image

    def put(self, path: str, size: int, image: Image.Image) -> None:
        self._items[(path, size)] = image
        self._items.move_to_end((path, size))
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
