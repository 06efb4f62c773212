"""The TUI's pure parts: formatting, path completion, the thumbnail cache, half blocks, imports."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image
from rich.style import Style

from petwatch import format
from petwatch.protocol import Event
from petwatch.tui import events
from petwatch.tui.app import PetwatchApp
from petwatch.tui.images import PHOTO_EXTENSIONS, ThumbnailCache, decode
from petwatch.tui.widgets.path_input import complete_path
from petwatch.tui.widgets.picture import half_block_strips


def test_format_helpers():
    assert format.count(1234567) == "1,234,567" and format.count(None) == "-"
    assert format.plural(1, "photo") == "1 photo" and format.plural(2, "photo") == "2 photos"
    assert [format.duration(s) for s in (None, 5, 65, 3725)] == ["-", "5s", "1m05s", "1h02m"]
    assert format.rate(0) == "-" and format.rate(12.34) == "12.3/s" and format.rate(250) == "250/s"
    assert format.size(512) == "512 B" and format.size(1536) == "1.5 KB"
    assert format.taken(0) == "unknown" and format.taken(None) == "unknown"
    assert format.taken(1_600_000_000)[:4] == "2020"


def test_every_pushed_event_is_a_message_the_app_handles():
    # hello is the stream's handshake (the reader takes it at once); every other kind becomes a
    # message of its own, which the app handles (a kind without a handler would go unseen)
    assert set(events.MESSAGES) == set(Event) - {Event.HELLO}
    for kind, message in events.MESSAGES.items():
        assert message.kind == kind and not message.bubble
        assert hasattr(PetwatchApp, message.handler_name) or message in PetwatchApp._decorated_handlers


def test_path_completion(tmp_path):
    for name in ("cat1.jpg", "cat2.jpg", "dog.png", "notes.txt", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "summer").mkdir()
    base = f"{tmp_path}/"
    assert complete_path(base + "c") == base + "cat"  # the common prefix first, like a shell
    assert complete_path(base + "cat") == base + "cat1.jpg"  # then the first candidate
    assert complete_path(base + "d") == base + "dog.png"
    assert complete_path(base + "n") is None  # not a photo
    assert complete_path(base + "s") == base + "summer/"
    assert complete_path(base + "c", dirs_only=True) is None
    assert complete_path(base + ".h") == base + ".hidden.jpg"  # hidden only when asked for
    assert complete_path(base + "h") is None
    assert complete_path("") is None
    assert complete_path("/no/such/dir/x") is None


def test_photo_extensions_match_the_indexer():
    from petwatch.photos import PHOTO_EXTENSIONS as INDEXED

    assert PHOTO_EXTENSIONS == INDEXED


def test_thumbnail_cache_drops_the_least_recently_used():
    cache = ThumbnailCache(capacity=2)
    images = [Image.new("RGB", (2, 2)) for _ in range(3)]
    cache.put("a", 128, images[0])
    cache.put("b", 128, images[1])
    assert cache.get("a", 128) is images[0]  # a is now the most recent
    cache.put("c", 128, images[2])
    assert ("b", 128) not in cache and ("a", 128) in cache and len(cache) == 2
    assert cache.get("a", 256) is None


def test_decode_gives_rgb(tmp_path):
    import io

    out = io.BytesIO()
    Image.new("L", (4, 3), 128).save(out, format="JPEG")
    image = decode(out.getvalue())
    assert image.mode == "RGB" and image.size == (4, 3)


def test_half_blocks_fit_and_centre_the_picture():
    image = Image.new("RGB", (40, 10), (255, 0, 0))  # wide: 4:1
    strips = half_block_strips(image, 20, 6, Style())
    assert len(strips) == 6 and all(strip.cell_length == 20 for strip in strips)
    drawn = [i for i, strip in enumerate(strips) if "▀" in strip.text]
    assert drawn == [1, 2, 3]  # 20x5 pixels: 3 rows of half blocks, centred vertically
    assert half_block_strips(Image.new("RGB", (1, 1)), 5, 1, Style())[0].cell_length == 5


def test_the_tui_imports_nothing_heavy_and_starts_fast():
    code = (
        "import sys, time; t = time.monotonic(); import petwatch.tui.app; "
        "heavy = [m for m in ('torch', 'timm', 'pymilvus', 'petwatch.daemon', 'petwatch.library', "
        "'petwatch.index', 'petwatch.embed', 'petwatch.store') if m in sys.modules]; "
        "print(heavy, time.monotonic() - t)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    heavy, seconds = result.stdout.rsplit(" ", 1)
    assert heavy == "[]", result.stdout + result.stderr
    assert float(seconds) < 3.0


def test_terminal_probe_survives_a_0x0_terminal_quietly():
    """A fresh pty is 0x0 and answers no query: textual-image would divide by zero and print
    a warning traceback; detection must do neither and fall back to half blocks."""
    import os
    import pty
    import select

    code = (
        "from petwatch.tui.widgets.picture import detect_terminal_graphics; "
        "print('picture=' + detect_terminal_graphics().__name__)"
    )
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "PETWATCH_TUI_IMAGES"}
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=slave, stdout=slave, stderr=slave, close_fds=True, env=env
    )
    os.close(slave)
    output = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the pty
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert process.wait(30) == 0, output
    text = output.decode(errors="replace")
    assert "picture=HalfBlockPicture" in text and "Traceback" not in text, text
