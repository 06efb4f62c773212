"""What a photo is: detect by content, open upright, guard against bombs, hash, thumbnail.

Every function here only *reads* the user's files.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat as stat_module
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from petwatch import places

try:  # HEIC/HEIF from iPhones; AVIF is built into Pillow >= 11.2.
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency
    pass

# Cheap first gate for walks and watch events: a file with another extension is not read.
PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".heic", ".heif", ".hif", ".avif", ".tif", ".tiff"}
)

# Pillow format names petwatch indexes; the content decides, not the extension.
PHOTO_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "HEIF", "AVIF", "TIFF"})

# A photo's file is read whole into memory; anything bigger is not a photo (a video named .jpg).
MAX_FILE_BYTES = 1 << 30

# Pillow's own guard stays as the backstop; ours runs first with a clear message.
Image.MAX_IMAGE_PIXELS = None
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


class PhotoError(Exception):
    """This file cannot be indexed; the message is the reason shown to the user."""


@dataclass(frozen=True)
class PhotoFile:
    """A photo's bytes and what was read from its header."""

    data: bytes
    content_hash: str
    format: str
    width: int  # upright, after EXIF orientation
    height: int
    taken_at: int  # Unix seconds from EXIF DateTimeOriginal, 0 when unknown
    # The capture moment to the millisecond (SubSecTimeOriginal; OffsetTimeOriginal, when the
    # camera writes it, makes it UTC so two phones compare), 0 when unknown: bursts need it.
    taken_ms: int = 0
    camera: str = ""  # EXIF Make and Model ("Canon EOS 40D"), "" when unknown
    gps: tuple[float, float] | None = None  # EXIF GPS (latitude, longitude) in degrees, None when unknown


@dataclass(frozen=True)
class Look:
    """What stacks compare of a photo's picture, computed from the image decoded for embedding."""

    phash: int  # 64-bit DCT perceptual hash (imagehash.phash) of the upright image, as a signed int64
    sharpness: float  # variance of the Laplacian on a fixed-size grey copy: the sharpest frame of a burst
    pixels: int  # the photo's full size (width x height): the largest copy of a picture
    taken_ms: int  # PhotoFile.taken_ms: bursts are photos moments apart
    # The file's size: of two copies of one picture, the original has the most bytes per pixel
    # (a re-encoded copy's JPEG artefacts score as sharpness). 0: unknown (a look kept before).
    bytes: int = 0


def has_photo_extension(path: str | os.PathLike[str]) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in PHOTO_EXTENSIONS


def sniff_format(head: bytes) -> str | None:
    """The photo format from a file's first bytes, or None when it is not a photo."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIF"
    return None


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_photo(path: str | os.PathLike[str], max_pixels: int) -> PhotoFile:
    """Read a file once, check it is a photo and not a bomb; decoding comes later."""
    try:
        # O_NONBLOCK and a regular-file check first: a FIFO named .jpg (or a search for
        # /dev/zero) used to block the reading thread forever, or read until memory ran out.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if stat_module.S_ISDIR(st.st_mode):
                raise PhotoError("is a directory")
            if not stat_module.S_ISREG(st.st_mode):
                raise PhotoError("not a regular file (a device, pipe or socket)")
            if st.st_size > MAX_FILE_BYTES:
                raise PhotoError(f"too large to be a photo: {st.st_size / 1e6:.0f} MB")
            with open(fd, "rb", closefd=False) as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise PhotoError("file vanished before it could be read") from None
    except PermissionError:
        raise PhotoError("permission denied") from None
    except ValueError:  # a path with a NUL byte (only ever from a client): was a 500
        raise PhotoError("not a valid path (contains a NUL byte)") from None
    except OSError as error:
        raise PhotoError(f"unreadable: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise PhotoError(f"too large to be a photo: over {MAX_FILE_BYTES / 1e6:.0f} MB")
    if not data:
        raise PhotoError("empty file (0 bytes)")
    kind = sniff_format(data[:32])
    if kind is None:
        raise PhotoError("not a supported image (JPEG, PNG, WebP, HEIC, AVIF, TIFF)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise PhotoError(f"unreadable {kind} header") from None
    except Exception as error:  # noqa: BLE001 - decoders raise anything on bad bytes
        raise PhotoError(f"unreadable {kind}: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PhotoError(
            f"too large: {width}x{height} = {width * height / 1e6:.0f} MP exceeds "
            f"max_image_pixels ({max_pixels / 1e6:.0f} MP); possible decompression bomb"
        )
    exif = _exif(image)
    if exif.get(0x0112) in (5, 6, 7, 8):  # orientations that swap width and height
        width, height = height, width
    return PhotoFile(
        data=data,
        content_hash=content_hash(data),
        format=image.format or kind,
        width=width,
        height=height,
        taken_at=_taken_at(exif),
        taken_ms=_taken_ms(exif),
        camera=_camera(exif),
        gps=places.gps_from_exif(_exif_block(image)),
    )


def decode(photo: PhotoFile | bytes, min_side: int | None = None) -> Image.Image:
    """Decode to an upright RGB image.

    With ``min_side``, JPEGs are decoded at the largest DCT reduction (1/2, 1/4, 1/8) that
    keeps the shorter side at least ``min_side`` (Pillow draft mode): most of a 12 MP
    decode's cost avoided when the model only needs ~300 px.
    """
    data = photo.data if isinstance(photo, PhotoFile) else photo
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        if min_side and image.format in ("JPEG", "MPO"):
            width, height = image.size
            scale = min_side / min(width, height)
            if scale < 1:
                image.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            image = _to_rgb(image)
        image.load()
    except PhotoError:
        raise
    except Exception as error:  # noqa: BLE001 - truncated data, bad codecs, ...
        raise PhotoError(f"cannot decode: {error}") from None
    return image


SHARPNESS_SIDE = 128  # px, the longer side the look is measured at: frames of any size compare


def look(image: Image.Image, photo: PhotoFile) -> Look:
    """The perceptual hash and sharpness of an upright decoded image (under a millisecond on
    the ~300-500 px image already decoded for the model: no second decode)."""
    import imagehash  # here: it loads scipy, which the front ends (photos' importers) never need

    grey = image.convert("L")  # once, small: both measures read the same 128 px grey copy
    grey.thumbnail((SHARPNESS_SIDE, SHARPNESS_SIDE), Image.Resampling.BILINEAR)
    bits = int(str(imagehash.phash(grey)), 16)  # pHash shrinks it to 32 px in its turn
    g = np.asarray(grey, dtype=np.float32)
    laplacian = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    sharpness = float(laplacian.var()) if laplacian.size else 0.0
    signed = bits - (1 << 64) if bits >= 1 << 63 else bits  # SQLite integers are signed 64-bit
    return Look(signed, sharpness, photo.width * photo.height, photo.taken_ms, len(photo.data))


def open_upright(path: str | os.PathLike[str], max_pixels: int, min_side: int | None = None) -> Image.Image:
    return decode(read_photo(path, max_pixels), min_side)


def thumbnail(photo: PhotoFile | bytes, size: int) -> bytes:
    """A JPEG thumbnail whose longer side is ``size`` px, upright."""
    image = decode(photo, min_side=size)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def downscaled_png(path: str | os.PathLike[str], long_side: int, max_pixels: int) -> bytes:
    """An upright PNG copy no larger than ``long_side`` px, for sending elsewhere."""
    image = open_upright(path, max_pixels, min_side=long_side)
    image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clipping everything to white.
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _exif_block(image: Image.Image) -> Image.Exif | None:
    try:
        return image.getexif()
    except Exception:  # noqa: BLE001 - broken EXIF must not make a photo unreadable
        return None


def _exif(image: Image.Image) -> dict[int, object]:
    try:
        exif = image.getexif()
        merged: dict[int, object] = dict(exif)
        merged.update(exif.get_ifd(0x8769))  # the Exif sub-IFD holds DateTimeOriginal
        return merged
    except Exception:  # noqa: BLE001 - broken EXIF must not make a photo unreadable
        return {}


def _taken_at(exif: dict[int, object]) -> int:
    for tag in (0x9003, 0x9004, 0x0132):  # DateTimeOriginal, DateTimeDigitized, DateTime
        value = exif.get(tag)
        if isinstance(value, bytes):
            value = value.decode("ascii", "ignore")
        if not isinstance(value, str):
            continue
        try:
            moment = datetime.strptime(value.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            continue
        # EXIF times carry no zone: keep wall-clock time, stored as if UTC.
        return int(moment.replace(tzinfo=UTC).timestamp())
    return 0


def _taken_ms(exif: dict[int, object]) -> int:
    """DateTimeOriginal with its sub-seconds and zone offset, in Unix milliseconds; 0 when unknown."""
    seconds = _taken_at({0x9003: exif[0x9003]}) if 0x9003 in exif else 0
    if not seconds:
        return 0
    subsec = _text(exif.get(0x9291))  # SubSecTimeOriginal: "37" means .37 s
    digits = "".join(ch for ch in subsec if ch.isdigit())[:3]
    millis = int(digits.ljust(3, "0")) if digits else 0
    offset = _text(exif.get(0x9011)).strip()  # OffsetTimeOriginal: "+02:00"
    shift = 0
    if len(offset) == 6 and offset[0] in "+-" and offset[3] == ":":
        try:
            delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
            shift = int(delta.total_seconds()) * (1 if offset[0] == "+" else -1)
        except ValueError:
            shift = 0
    return (seconds - shift) * 1000 + millis


def _camera(exif: dict[int, object]) -> str:
    """The camera as people name it: EXIF Make and Model, just Model when it names the maker
    already (NIKON CORPORATION's "NIKON D70"); "" when unknown."""
    make, model = (" ".join(_text(exif.get(tag)).split("\x00")[0].split()) for tag in (0x010F, 0x0110))
    if model and make and model.split()[0].lower() not in make.lower().split():
        model = f"{make} {model}"
    return model or make


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    return value.strip("\x00 ") if isinstance(value, str) else ""


def iter_photo_files(root: Path, on_error=None):
    """Yield (path, stat) of every file with a photo extension under ``root``.

    Does not follow directory symlinks (no loops); unreadable directories are reported to
    ``on_error(path, reason)`` and skipped.
    """
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            if on_error:
                on_error(Path(directory), f"cannot list directory: {error.strerror or error}")
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif has_photo_extension(entry.name) and entry.is_file():
                    yield Path(entry.path), entry.stat()
            except OSError as error:
                if on_error:
                    on_error(Path(entry.path), f"cannot stat: {error.strerror or error}")
