"""Pictures in the terminal: Kitty graphics or Sixel through textual-image when the terminal
speaks one, else coloured half blocks (two pixels per cell).

textual-image asks the terminal what it supports when its modules are imported, which only
works before Textual takes over stdin: ``detect_terminal_graphics()`` runs in ``tui.run()``
before the app starts. Tests (``App.run_test``) never call it and get ``HalfBlockPicture``,
which probes nothing and renders the same everywhere (snapshots stay stable).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Protocol, cast

from PIL import Image
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

RGB = tuple[int, int, int]

log = logging.getLogger(__name__)

FALLBACK_CELL_SIZE = (10, 20)  # pixels per cell textual-image assumes when the terminal won't say


class HalfBlockPicture(Widget):
    """An image drawn with "▀": the foreground colour is the upper pixel, the background the lower."""

    DEFAULT_CSS = """
    HalfBlockPicture { width: 1fr; height: 1fr; }
    """

    def __init__(self, image: Image.Image | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._image = image
        self._cache: tuple[tuple, list[Strip]] | None = None

    @property
    def image(self) -> Image.Image | None:
        return self._image

    @image.setter
    def image(self, value: Image.Image | None) -> None:
        self._image = value
        self._cache = None
        self.refresh()

    def render_line(self, y: int) -> Strip:
        strips = self._strips()
        if y < len(strips):
            return strips[y]
        return Strip.blank(self.size.width, self.rich_style)

    def _strips(self) -> list[Strip]:
        width, height = self.size
        if self._image is None or width <= 0 or height <= 0:
            return []
        base = self.rich_style
        key = (width, height, id(self._image), base)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        strips = half_block_strips(self._image, width, height, base)
        self._cache = (key, strips)
        return strips


def half_block_strips(image: Image.Image, width: int, height: int, base: Style) -> list[Strip]:
    """``image`` fitted (aspect kept, centred) into width x height cells of half blocks."""
    source_w, source_h = image.size
    if source_w <= 0 or source_h <= 0:
        return []
    scale = min(width / source_w, 2 * height / source_h)
    pixels_w = max(1, min(width, round(source_w * scale)))
    pixels_h = max(1, min(2 * height, round(source_h * scale)))
    small = image.convert("RGB").resize((pixels_w, pixels_h), Image.Resampling.BILINEAR)
    data = small.load()
    assert data is not None  # a loaded image gives its pixel access
    rows = (pixels_h + 1) // 2
    top = (height - rows) // 2
    left = (width - pixels_w) // 2
    right = width - pixels_w - left
    blank = Strip.blank(width, base)
    strips = [blank] * top
    for row in range(rows):
        segments = [Segment(" " * left, base)] if left else []
        upper_y, lower_y = 2 * row, 2 * row + 1
        for x in range(pixels_w):
            # An RGB image's pixel is an (r, g, b) tuple (Pillow's stub also allows a single band's float)
            upper = Color.from_rgb(*cast(RGB, data[x, upper_y]))
            lower = Color.from_rgb(*cast(RGB, data[x, lower_y])) if lower_y < pixels_h else base.bgcolor
            segments.append(Segment("▀", base + Style(color=upper, bgcolor=lower)))
        if right:
            segments.append(Segment(" " * right, base))
        strips.append(Strip(segments, width))
    strips.extend([blank] * (height - len(strips)))
    return strips


PictureClass = type[Widget]


class Picture(Protocol):
    """What every picture class is to a screen: a widget whose ``image`` is set (HalfBlockPicture,
    textual-image's Kitty and Sixel widgets)."""

    image: Image.Image | None


_picture_class: PictureClass = HalfBlockPicture


def picture_class() -> PictureClass:
    """The picture widget class this terminal uses (half blocks until detection ran)."""
    return _picture_class


def detect_terminal_graphics() -> PictureClass:
    """Ask the terminal for Kitty graphics / Sixel support (before the app starts!).

    ``PETWATCH_TUI_IMAGES=halfblock`` skips the probe. A 0x0 terminal size (some terminals
    report it before the window is mapped, and pipes) is guarded: textual-image would divide
    by it.
    """
    global _picture_class
    _picture_class = HalfBlockPicture
    if os.environ.get("PETWATCH_TUI_IMAGES", "").lower() in ("halfblock", "half", "off"):
        return _picture_class
    if not (sys.__stdout__ and sys.__stdin__ and sys.__stdout__.isatty() and sys.__stdin__.isatty()):
        return _picture_class
    try:
        columns, lines = os.get_terminal_size(sys.__stdout__.fileno())
    except OSError:
        columns = lines = 0
    # textual-image logs a warning with a traceback when the terminal does not answer a query;
    # before the app starts that would land on the user's terminal.
    quiet = logging.getLogger("textual_image")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    try:
        from textual_image import _terminal

        if columns == 0 or lines == 0:
            _terminal.get_cell_size._result = _terminal.CellSize(*FALLBACK_CELL_SIZE)  # type: ignore[attr-defined]
        import textual_image.renderable as renderables
        import textual_image.widget as image_widgets  # noqa: F401 - importing probes the terminal
    except Exception as error:  # noqa: BLE001 - pictures degrade, the app still runs
        log.debug("textual-image unavailable: %s", error)
        return _picture_class
    if renderables.Image is renderables.TGPImage:
        _picture_class = _kitty_class()
    elif renderables.Image is renderables.SixelImage:
        _picture_class = _sixel_class()
    return _picture_class


def _kitty_class() -> PictureClass:
    from textual_image.renderable.tgp import Image as TGPRenderable
    from textual_image.widget import TGPImage

    class KittyPicture(TGPImage, Renderable=TGPRenderable):
        """textual-image's Kitty graphics widget, drawing nothing while it has no size."""

        DEFAULT_CSS = "KittyPicture { width: auto; height: auto; max-width: 100%; max-height: 100%; }"

        def render(self):
            if self.content_size.width <= 0 or self.content_size.height <= 0:
                return ""
            return super().render()

    return KittyPicture


def _sixel_class() -> PictureClass:
    from textual_image.widget.sixel import Image as SixelImage
    from textual_image.widget.sixel import _NoopRenderable

    class SixelPicture(SixelImage, Renderable=_NoopRenderable):
        """textual-image's Sixel widget (it sizes itself; aspect kept)."""

        DEFAULT_CSS = "SixelPicture { width: auto; height: auto; max-width: 100%; max-height: 100%; }"

    return SixelPicture
