"""Where a photo was taken: GPS read from real cameras' EXIF and named offline."""

from __future__ import annotations

import math
import socket

import pytest
from PIL import Image
from tests.conftest import dataset

from petwatch import places
from petwatch.places import Place, gps_from_exif, place_at


def _gps(*parts: str) -> tuple[float, float] | None:
    with Image.open(dataset("photo-fixtures", *parts)) as image:
        return gps_from_exif(image.getexif())


@pytest.mark.parametrize(
    ("parts", "place"),
    [
        (("exif-samples", "jpg", "gps", "DSCN0010.jpg"), Place("Arezzo", "Tuscany", "Italy")),
        (("exif-samples", "jpg", "tests", "87_OSError.jpg"), Place("Florence", "Tuscany", "Italy")),
        (("exif-samples", "jpg", "hdr", "iphone_hdr_YES.jpg"), Place("Madrid", "Madrid", "Spain")),
        (("exif-samples", "jpg", "mobile", "HMD_Nokia_8.3_5G.jpg"), Place("Helsinki", "Uusimaa", "Finland")),
        (
            ("immich-test-assets", "metadata", "dates", "gps-datetime.jpg"),
            Place("San Francisco", "California", "United States"),
        ),
        # south of the equator and east: the S/E references signed right
        (("exif-samples", "jpg", "Kodak_CX7530.jpg"), Place("Nakuru", "Nakuru County", "Kenya")),
    ],
)
def test_a_cameras_gps_is_named_as_people_name_the_place(parts, place) -> None:
    position = _gps(*parts)
    assert position is not None
    assert place_at(*position) == place


def test_the_gps_block_of_a_camera_is_read_in_signed_degrees() -> None:
    latitude, longitude = _gps("exif-samples", "jpg", "gps", "DSCN0010.jpg")
    assert latitude == pytest.approx(43 + 28 / 60 + 2.814 / 3600)
    assert longitude == pytest.approx(11 + 53 / 60 + 6.456 / 3600)
    latitude, longitude = _gps("immich-test-assets", "metadata", "dates", "gps-datetime.jpg")
    assert longitude < 0 < latitude  # W is negative


@pytest.mark.parametrize(
    "parts",
    [
        ("immich-test-assets", "metadata", "gps-position", "empty_gps.jpg"),  # NaN: no fix
        ("exif-samples", "jpg", "Canon_40D.jpg"),  # a GPS block with its version only
        ("landscapes",),
    ],
)
def test_a_photo_without_a_position_has_none(parts) -> None:
    if parts == ("landscapes",):
        photo = sorted(dataset("landscapes").glob("*.jpg"))[0]
        with Image.open(photo) as image:
            assert gps_from_exif(image.getexif()) is None
        return
    assert _gps(*parts) is None


def test_a_city_centre_is_the_city_not_its_nearest_quarter() -> None:
    # GeoNames lists Lisbon's quarters as towns: the centre is still Lisbon...
    assert place_at(38.7167, -9.1333) == Place("Lisbon", "Lisbon", "Portugal")
    # ...and a town of its own next to it stays itself
    assert place_at(38.758, -9.2247).city == "Amadora"
    assert place_at(43.77, 11.25).label() == "Florence, Italy"


def test_no_place_at_sea_nor_at_an_impossible_position() -> None:
    assert place_at(0.0, -30.0) is None  # mid-Atlantic
    assert place_at(0.0, 0.0) is None  # a GPS without a fix
    assert place_at(math.nan, 10.0) is None
    assert place_at(91.0, 10.0) is None


def test_the_place_names_work_with_the_network_blocked(monkeypatch) -> None:
    """The GeoNames data is in the wheel: nothing is fetched at run time."""
    places._gazetteer.cache_clear()
    places.known_places.cache_clear()

    def no_network(*args, **kwargs):
        raise AssertionError("places tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert place_at(43.77, 11.25) == Place("Florence", "Tuscany", "Italy")
    assert places.known_places()["tuscany"] == Place("", "Tuscany", "Italy")
