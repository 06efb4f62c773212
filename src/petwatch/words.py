"""A search in words, read: "rex at the beach in lisbon 2023" is a pet (rex), a concept
(beach: ImageNet's seashore and sandbar classes), a place (Lisbon) and a time (2023).

Each word or phrase is read, longest phrase first, as one of:
- a date ("taken"): 2023, june 2023, jun 2023, 2023-06, 2023-06-14, 14 june 2023, june 14
  2023, summer 2022 (seasons are the northern hemisphere's: summer is June-August, winter
  December-February), last summer, this winter, last june, last year, this year, last month,
  this month, last week, yesterday, today, 2021 to 2023, 2021-2023, since 2022, after 2020,
  before 2020, until 2020, from 2020 to 2022;
- a pet's name (the pets' profiles), case-insensitive;
- a place in the library (a city, region or country some photo was taken in), case- and
  accent-insensitive, multi-word ("new york");
- a concept: what a photo shows ("dog", "beach", "golden retriever", "teapots": concepts.py);
- a stop word ("a", "the", "at", "in", "near", "photos", ...), ignored;
- a real place with no photo there yet ("paris": a country, region or town of 100,000+
  people), read as a place, so the search finds nothing and says why.
Anything else is an unknown word: ``UnknownWords`` names each one and what can be typed.

Times are wall-clock times, as petwatch stores a photo's EXIF time: Unix seconds of that
wall-clock time read as if it were UTC (photos.py), so "2023" is the same year in every zone.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from petwatch import concepts, places
from petwatch.errors import PetwatchError

KINDS = ("concept", "pet", "taken", "place", "ignored")
LONGEST_PHRASE = 6  # words ("yellow lady's slipper", "united states minor outlying islands")
STOP_WORDS = frozenset(
    """a an the at in on of with and near by around from to my our me her his their its this that
    these those photo photos picture pictures pic pics image images shot shots snap snaps show
    find all any some every taken during while when where who what is are was were be being
    having playing sitting lying outside inside""".split()
)
MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
# Northern-hemisphere meteorological seasons, three months from this one; winter 2022 is
# December 2022 to February 2023.
SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}
EARLIEST = date(1826, 1, 1)  # the first photograph: "before 2020" has a start
RANGE_WORDS = frozenset({"to", "until", "till", "through", "thru", "-", "–", "and"})
DATE_WORDS = sorted(
    {*MONTHS, *SEASONS, "today", "yesterday", "this", "last", "year", "month", "week", "since", "before", "after"}
)
YEAR = re.compile(r"^(1[89]\d\d|2[01]\d\d)$")
YEAR_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
DAY = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
YEAR_SPAN = re.compile(r"^(\d{4})[-–](\d{4})$")
NAMED_UNKNOWN = 8  # unknown words the message names; the rest are counted
TYPE_THIS = (
    "type what a photo shows (dog, beach, snow, golden retriever), a pet's name, a place "
    "(a city, region or country) or a date (2023, june 2023, summer 2022, last year, 2021 to 2023)"
)


class UnknownWords(PetwatchError):
    """Words the query cannot read; the message names each and says what can be typed."""

    def __init__(self, words: Collection[str], hints: dict[str, str] | None = None) -> None:
        self.words = tuple(words)
        hints = hints or {}
        shown = self.words[:NAMED_UNKNOWN]
        named = ", ".join(f"'{w}'" + (f" (did you mean {hints[w]}?)" if w in hints else "") for w in shown)
        if len(self.words) > len(shown):
            named += f" and {len(self.words) - len(shown)} more"
        super().__init__(f"petwatch does not know {named}: {TYPE_THIS}")


@dataclass(frozen=True)
class Reading:
    """How one word (or phrase) of the query was read, for --explain and the TUI."""

    words: str  # as typed: "at the", "beach", "june 2023"
    kind: str  # one of KINDS
    meaning: str  # "seashore, sandbar (ImageNet classes)", "1 Jun 2023 - 30 Jun 2023", "place Lisbon", "pet Rex"


@dataclass(frozen=True)
class Concept:
    word: str  # as typed
    classes: frozenset[int]  # ImageNet-1k class indices: a photo matches by the probability mass on them


@dataclass(frozen=True)
class WordQuery:
    text: str
    concepts: tuple[Concept, ...]  # every concept must match (AND); within one, any class (OR)
    taken: tuple[int, int] | None  # [start, end) in wall-clock Unix seconds (see the module's doc)
    places: tuple[str, ...]  # names as places.Place stores them (city, region or country): any of them
    pets: tuple[str, ...]  # pet profile names as the pets store them
    readings: tuple[Reading, ...]

    @property
    def empty(self) -> bool:
        """Nothing to search for: only stop words (or nothing) were typed."""
        return not (self.concepts or self.taken or self.places or self.pets)


# ---------------------------------------------------------------------------------------
# Dates


def _today(now: datetime | None) -> date:
    """Today's date on the wall clock (``now``'s own zone when it has one)."""
    return (now or datetime.now()).date()


def _seconds(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _next_month(year: int, month: int) -> date:
    return date(year + month // 12, month % 12 + 1, 1)


def _atom(tokens: list[str], i: int, today: date) -> tuple[int, date, date] | None:
    """One date at ``tokens[i]``: (words used, first day, day after the last)."""
    word = tokens[i]
    after = tokens[i + 1] if i + 1 < len(tokens) else ""
    try:
        if YEAR.match(word):
            year = int(word)
            return 1, date(year, 1, 1), date(year + 1, 1, 1)
        if match := YEAR_MONTH.match(word):
            year, month = int(match[1]), int(match[2])
            return 1, date(year, month, 1), _next_month(year, month)
        if match := DAY.match(word):
            day = date(int(match[1]), int(match[2]), int(match[3]))
            return 1, day, day + timedelta(days=1)
        if match := YEAR_SPAN.match(word):
            first, last = int(match[1]), int(match[2])
            if first <= last:
                return 1, date(first, 1, 1), date(last + 1, 1, 1)
            return None
    except ValueError:  # 2023-13, 2023-02-30
        return None
    third = tokens[i + 2] if i + 2 < len(tokens) else ""
    try:
        if _day_number(word) and after in MONTHS and YEAR.match(third):  # 14 june 2023
            day = date(int(third), MONTHS[after], _day_number(word))
            return 3, day, day + timedelta(days=1)
        if word in MONTHS and _day_number(after) and YEAR.match(third):  # june 14 2023
            day = date(int(third), MONTHS[word], _day_number(after))
            return 3, day, day + timedelta(days=1)
    except ValueError:  # 31 june
        return None
    if word in MONTHS and YEAR.match(after):
        year, month = int(after), MONTHS[word]
        return 2, date(year, month, 1), _next_month(year, month)
    if word in SEASONS and YEAR.match(after):
        year, month = int(after), SEASONS[word]
        start = date(year, month, 1)
        return 2, start, _add_months(start, 3)
    if word == "today":
        return 1, today, today + timedelta(days=1)
    if word == "yesterday":
        return 1, today - timedelta(days=1), today
    if word in ("this", "last") and (after in MONTHS or after in SEASONS):  # last summer, this june
        first, length = (MONTHS[after], 1) if after in MONTHS else (SEASONS[after], 3)
        for year in (today.year, today.year - 1, today.year - 2):
            start = date(year, first, 1)
            end = _add_months(start, length)
            # this: the one under way, else this year's; last: the latest one over
            if (word == "this" and start <= today < end) or (word == "last" and end <= today):
                return 2, start, end
        start = date(today.year, first, 1)
        return 2, start, _add_months(start, length)
    if word in ("this", "last") and after in ("year", "month", "week"):
        back = word == "last"
        if after == "year":
            start = date(today.year - back, 1, 1)
            return 2, start, date(start.year + 1, 1, 1)
        if after == "month":
            start = _add_months(today.replace(day=1), -1 if back else 0)
            return 2, start, _add_months(start, 1)
        monday = today - timedelta(days=today.weekday() + (7 if back else 0))
        return 2, monday, monday + timedelta(days=7)
    return None


def _day_number(word: str) -> int:
    """The day of the month in "14", "14th", "1st"; 0 when it is not one."""
    digits = word[:-2] if word[-2:] in ("st", "nd", "rd", "th") else word
    return int(digits) if digits.isdigit() and 1 <= int(digits) <= 31 and len(digits) <= 2 else 0


def _add_months(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    return date(year, month + 1, 1)


def _when(tokens: list[str], i: int, today: date) -> tuple[int, date, date] | None:
    """A date phrase at ``tokens[i]``: an atom, a range of two, or since/after/before/until one."""
    word = tokens[i]
    lead = 1 if word in ("since", "after", "before", "until", "from", "between") else 0
    first = _atom(tokens, i + lead, today) if i + lead < len(tokens) else None
    if first is None:
        return None
    used, start, end = lead + first[0], first[1], first[2]
    j = i + used
    if j + 1 < len(tokens) and tokens[j] in RANGE_WORDS and word not in ("before", "after", "since"):
        second = _atom(tokens, j + 1, today)
        if second is not None and second[1] >= start and (tokens[j] != "and" or word == "between"):
            return used + 1 + second[0], start, second[2]
    if word == "since":
        return used, start, today + timedelta(days=1)
    if word == "after":
        return used, end, max(end, today + timedelta(days=1))
    if word == "before":
        return used, EARLIEST, start
    if word == "until":
        return used, EARLIEST, end
    if word in ("from", "between"):
        return None if word == "between" else (used, start, today + timedelta(days=1))
    return used, start, end


def _date_text(day: date) -> str:
    return f"{day.day} {day.strftime('%b')} {day.year}"


def _span_text(start: date, end: date) -> str:
    last = end - timedelta(days=1)
    if start == EARLIEST:
        return f"before {_date_text(end)}"
    return _date_text(start) if last == start else f"{_date_text(start)} - {_date_text(last)}"


def parse_taken(text: str, now: datetime | None = None) -> tuple[int, int]:
    """A date phrase alone (``--taken``) as [start, end) wall-clock Unix seconds."""
    tokens = [token.word.lower() for token in _tokens(text)]
    found = _when(tokens, 0, _today(now)) if tokens else None
    if found is None or found[0] != len(tokens):
        raise PetwatchError(
            f"petwatch cannot read {text!r} as a date: type a year (2023), a month (june 2023, "
            "2023-06), a day (2023-06-14), a season (summer 2022), last year, this month, "
            "yesterday, 2021 to 2023, since 2022 or before 2020"
        )
    return _seconds(found[1]), _seconds(found[2])


# ---------------------------------------------------------------------------------------
# Words


@dataclass(frozen=True)
class _Token:
    word: str  # the word as typed, outer punctuation off
    start: int  # where it is in the text
    end: int


def _tokens(text: str) -> list[_Token]:
    """The words as typed: split on spaces and commas, outer punctuation off, hyphenated words
    split ("t-shirt") unless they are a date ("2021-2023", "2023-06-14")."""
    tokens = []
    for match in re.finditer(r"[^\s,;]+", text):
        raw = match.group()
        word = raw.strip('.!?"()[]{}:')
        if not word:
            continue
        start = match.start() + raw.index(word)
        if "-" in word.strip("-–") and not (YEAR_SPAN.match(word) or YEAR_MONTH.match(word) or DAY.match(word)):
            for part in re.finditer(r"[^-–]+", word):
                tokens.append(_Token(part.group(), start + part.start(), start + part.end()))
        else:
            tokens.append(_Token(word, start, start + len(word)))
    return tokens


def _names(names: Collection[str]) -> dict[str, str]:
    """Folded name -> the name as given (the first of names that fold alike)."""
    folded: dict[str, str] = {}
    for name in names:
        if name and name.strip():
            folded.setdefault(concepts.fold(name), name)
    return folded


def parse(
    text: str,
    *,
    pets: Collection[str] = (),
    places: Collection[str] = (),
    now: datetime | None = None,
) -> WordQuery:
    """Read a search in words; ``pets`` are the pets' profile names, ``places`` the place
    names the library's photos have. Raises ``UnknownWords`` naming every word it cannot read."""
    tokens = _tokens(text)
    pet_names, place_names = _names(pets), _names(places)
    try:
        return _read(text, tokens, pet_names, place_names, _today(now), gazetteer=False)
    except UnknownWords:  # a place with no photo yet? (loading the gazetteer costs ~2 s, once)
        return _read(text, tokens, pet_names, place_names, _today(now), gazetteer=True)


def _read(
    text: str,
    tokens: list[_Token],
    pet_names: dict[str, str],
    place_names: dict[str, str],
    today: date,
    *,
    gazetteer: bool,
) -> WordQuery:
    lowered = [t.word.lower() for t in tokens]

    def typed(first: int, count: int) -> str:  # the words as typed, punctuation inside kept
        return text[tokens[first].start : tokens[first + count - 1].end]

    known_places = places.known_places() if gazetteer else {}
    readings: list[Reading] = []
    found_concepts: list[Concept] = []
    found_pets: list[str] = []
    found_places: list[str] = []
    spans: list[tuple[date, date]] = []
    unknown: list[str] = []
    ignored_from = 0  # the first word of the last run of stop words
    i = 0
    while i < len(tokens):
        when = _when(lowered, i, today)
        if when is not None:
            used, start, end = when
            spans.append((start, end))
            readings.append(Reading(typed(i, used), "taken", _span_text(start, end)))
            i += used
            continue
        for n in range(min(LONGEST_PHRASE, len(tokens) - i), 0, -1):
            words = typed(i, n)
            key = concepts.fold(" ".join(t.word for t in tokens[i : i + n]))
            if key in pet_names:
                found_pets.append(pet_names[key])
                readings.append(Reading(words, "pet", f"pet {pet_names[key]}"))
            elif key in place_names:
                found_places.append(place_names[key])
                readings.append(Reading(words, "place", f"place {place_names[key]}"))
            elif n == 1 and key in STOP_WORDS:
                if readings and readings[-1].kind == "ignored":  # "at the": one reading
                    readings[-1] = Reading(typed(ignored_from, i - ignored_from + 1), "ignored", "ignored")
                else:
                    ignored_from = i
                    readings.append(Reading(words, "ignored", "ignored"))
            elif (classes := concepts.lookup(key)) is not None:
                found_concepts.append(Concept(words, classes))
                readings.append(Reading(words, "concept", concepts.describe(classes)))
            elif key in known_places:
                place = known_places[key]
                found_places.append(place.city or place.region or place.country)
                readings.append(Reading(words, "place", f"place {place.label()} (no photo of yours is there)"))
            else:
                continue
            i += n
            break
        else:
            unknown.append(tokens[i].word)
            i += 1
    if unknown:
        raise UnknownWords(unknown, _hints(unknown, pet_names, place_names, today))
    taken = None
    if spans:  # several dates: photos in all of them ("june 2023" within "2023")
        start, end = max(s for s, _ in spans), min(e for _, e in spans)
        if start >= end:
            dates = [r.words for r in readings if r.kind == "taken"]
            raise PetwatchError(
                f"petwatch reads {' and '.join(repr(d) for d in dates)} as dates that do not overlap, so no "
                f"photo is in both: for photos of either, say a range ({dates[0]} to {dates[-1]})"
            )
        taken = (_seconds(start), _seconds(end))
    return WordQuery(
        text=text,
        concepts=tuple(found_concepts),
        taken=taken,
        places=tuple(dict.fromkeys(found_places)),
        pets=tuple(dict.fromkeys(found_pets)),
        readings=tuple(readings),
    )


def _hints(unknown: list[str], pet_names: dict[str, str], place_names: dict[str, str], today: date) -> dict[str, str]:
    """A close known word for each unknown one, where there is one ("beech": beach): the
    everyday words first (roll-ups, names, dates), then ImageNet's class names."""
    everyday = [*concepts.everyday_words(), *DATE_WORDS, *STOP_WORDS, *pet_names, *place_names]
    shown = {**{w: w for w in concepts.vocabulary_words()}, **{w: w for w in everyday}, **pet_names, **place_names}
    hints = {}
    for word in unknown[:NAMED_UNKNOWN]:  # difflib is slow over a pasted paragraph
        key = concepts.fold(word)
        if key in MONTHS or key in SEASONS:  # a month or season needs its year
            hints[word] = f"{key} {today.year}"
            continue
        for vocabulary in (everyday, concepts.vocabulary_words()):
            close = difflib.get_close_matches(key, vocabulary, n=1, cutoff=0.75)
            if close:
                hints[word] = shown[close[0]]
                break
    return hints
