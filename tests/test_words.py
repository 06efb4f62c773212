"""A search in words read as a user means it: what, when, where and who."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from petwatch import concepts, words
from petwatch.errors import PetwatchError
from petwatch.words import UnknownWords, parse, parse_taken

NOW = datetime(2026, 12, 7, 10, 30)
DOGS = frozenset(range(151, 269))


def _day(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def _kinds(query: words.WordQuery) -> list[tuple[str, str]]:
    return [(r.words, r.kind) for r in query.readings]


def test_rex_at_the_beach_in_lisbon_2023() -> None:
    query = parse("rex at the beach in lisbon 2023", pets=["Rex"], places=["Lisbon", "Portugal"], now=NOW)
    assert query.pets == ("Rex",)
    assert query.places == ("Lisbon",)
    assert query.taken == (_day("2023-01-01"), _day("2024-01-01"))
    assert [c.word for c in query.concepts] == ["beach"]
    assert 978 in query.concepts[0].classes  # seashore
    assert _kinds(query) == [
        ("rex", "pet"),
        ("at the", "ignored"),
        ("beach", "concept"),
        ("in", "ignored"),
        ("lisbon", "place"),
        ("2023", "taken"),
    ]


@pytest.mark.parametrize("word", ["dog", "dogs", "Dogs", "puppy", "puppies"])
def test_dog_is_every_dog_breed(word) -> None:
    (concept,) = parse(word).concepts
    assert concept.classes == DOGS


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("golden retriever", {"golden retriever"}),
        ("golden retrievers", {"golden retriever"}),
        ("cowboy boots", {"cowboy boot"}),
        ("alsatian", {"German shepherd"}),  # a synonym in ImageNet's lemmas
        ("teapots", {"teapot"}),
        ("boxes", {"pencil box"}),  # "es" plural, by its last word
        ("hot dog", {"hotdog"}),  # a phrase wins over its words
        ("t-shirt", {"jersey"}),
    ],
)
def test_imagenet_names_synonyms_and_plurals(text, names) -> None:
    (concept,) = parse(text).concepts
    assert names <= {concepts.concept_name(i) for i in concept.classes}


def test_a_last_word_names_every_class_it_ends(text: str = "retrievers") -> None:
    (concept,) = parse(text).concepts
    named = {concepts.concept_name(i) for i in concept.classes}
    assert {"golden retriever", "Labrador retriever", "flat-coated retriever"} <= named


def test_roll_ups_people_type() -> None:
    cat = parse("cats").concepts[0].classes
    assert cat == frozenset(range(281, 286))
    assert parse("couch").concepts[0].classes == parse("sofa").concepts[0].classes
    assert 805 in parse("ball").concepts[0].classes  # soccer ball
    assert 970 in parse("snow").concepts[0].classes  # alp


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2023", "2023-01-01", "2024-01-01"),
        ("june 2023", "2023-06-01", "2023-07-01"),
        ("jun 2023", "2023-06-01", "2023-07-01"),
        ("summer 2022", "2022-06-01", "2022-09-01"),
        ("winter 2022", "2022-12-01", "2023-03-01"),
        ("last year", "2025-01-01", "2026-01-01"),
        ("this year", "2026-01-01", "2027-01-01"),
        ("last month", "2026-11-01", "2026-12-01"),
        ("yesterday", "2026-12-06", "2026-12-07"),
        ("2021 to 2023", "2021-01-01", "2024-01-01"),
        ("2021-2023", "2021-01-01", "2024-01-01"),
        ("since 2022", "2022-01-01", "2026-12-08"),
        ("2023-06", "2023-06-01", "2023-07-01"),
        ("2023-06-14", "2023-06-14", "2023-06-15"),
        ("from march 2020 to may 2020", "2020-03-01", "2020-06-01"),
        ("14 june 2023", "2023-06-14", "2023-06-15"),
        ("June 14th, 2023", "2023-06-14", "2023-06-15"),
        ("last summer", "2026-06-01", "2026-09-01"),
        ("last winter", "2025-12-01", "2026-03-01"),
        ("this winter", "2026-12-01", "2027-03-01"),  # under way on 7 December
        ("last december", "2025-12-01", "2026-01-01"),
    ],
)
def test_dates(text, start, end) -> None:
    assert parse_taken(text, NOW) == (_day(start), _day(end))
    assert parse(text, now=NOW).taken == (_day(start), _day(end))


def test_before_is_everything_earlier() -> None:
    start, end = parse_taken("before 2020", NOW)
    assert start < _day("1900-01-01") and end == _day("2020-01-01")


@pytest.mark.parametrize("text", ["june", "2023-13", "31 june 2023", "2023 beach", "soon", ""])
def test_an_unreadable_date_says_what_to_type(text) -> None:
    with pytest.raises(PetwatchError, match="2021 to 2023"):
        parse_taken(text, NOW)


def test_pets_and_places_are_matched_whatever_the_case() -> None:
    query = parse("MR BISCUIT in new york", pets=["Mr Biscuit"], places=["New York", "United States"], now=NOW)
    assert query.pets == ("Mr Biscuit",)
    assert query.places == ("New York",)
    assert parse("zurich", places=["Zürich"]).places == ("Zürich",)


def test_a_pet_named_like_a_concept_is_the_pet() -> None:
    query = parse("bear", pets=["Bear"])
    assert query.pets == ("Bear",) and not query.concepts


def test_a_real_place_without_photos_is_a_place_that_finds_nothing() -> None:
    query = parse("dogs in tuscany", places=["Lisbon"])
    assert query.places == ("Tuscany",)
    assert "no photo" in query.readings[-1].meaning


def test_an_unknown_word_is_named_with_what_can_be_typed() -> None:
    with pytest.raises(UnknownWords) as caught:
        parse("rex on the beech with xyzzyq", pets=["Rex"])
    assert caught.value.words == ("beech", "xyzzyq")
    message = str(caught.value)
    assert "'beech' (did you mean beach?)" in message
    assert "'xyzzyq'" in message and "a pet's name" in message and "2023" in message


def test_many_unknown_words_are_counted_not_listed() -> None:
    with pytest.raises(UnknownWords) as caught:
        parse(" ".join(f"zzq{n}" for n in range(30)))
    assert len(caught.value.words) == 30 and "and 22 more" in str(caught.value)


def test_dates_that_do_not_overlap_ask_for_a_range() -> None:
    assert parse("june 2023 2023", now=NOW).taken == (_day("2023-06-01"), _day("2023-07-01"))
    with pytest.raises(PetwatchError, match="2020 to 2021"):
        parse("2020 and 2021", now=NOW)


def test_a_month_without_its_year_asks_for_it() -> None:
    with pytest.raises(UnknownWords, match="did you mean june 2026"):
        parse("june", now=NOW)


def test_stop_words_alone_ask_for_nothing() -> None:
    query = parse("photos of the")
    assert query.empty and {r.kind for r in query.readings} == {"ignored"}


def test_top_concepts_keeps_the_best_few() -> None:
    import numpy as np

    probs = np.full(1000, 0.0001, dtype=np.float32)
    probs[[207, 208, 978, 500]] = [0.6, 0.2, 0.1, 0.01]
    assert [i for i, _ in concepts.top_concepts(probs, k=5, min_prob=0.02)] == [207, 208, 978]
    assert concepts.top_concepts(probs, k=2)[0] == (207, pytest.approx(0.6))
    assert concepts.concept_name(207) == "golden retriever"


def test_the_vocabulary_needs_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from petwatch import words; words.parse('dogs at the beach 2023');"
        "print('torch' in sys.modules, 'timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


REAL_PHOTOS = {
    "beagle": ("oxford-pets-sample", "beagle", "beagle_121.jpg"),
    "persian": ("oxford-pets-sample", "Persian", "Persian_106.jpg"),
    "pug with a ball": ("oxford-pets-sample", "pug", "pug_127.jpg"),
    "flower": ("landscapes", "YellowFlower.jpg"),
    "mountains": ("photo-fixtures", "immich-test-assets", "formats", "webp", "denali.webp"),
    "car": ("photo-fixtures", "exif-samples", "jpg", "tests", "32-lens_data.jpeg"),
    "iguana": ("photo-fixtures", "exif-samples", "jpg", "Canon_40D.jpg"),
}


@pytest.fixture(scope="module")
def kept_concepts() -> dict[str, dict[int, float]]:
    """What the index keeps of each real photo's classifier pass (concepts.top_concepts)."""
    from tests.conftest import TEST_MODEL, dataset

    from petwatch import photos
    from petwatch.embed import Embedder

    paths = {name: dataset(*parts) for name, parts in REAL_PHOTOS.items()}
    embedder = Embedder(TEST_MODEL, pet_focus=None, whiten=False)
    images = [
        photos.open_upright(path, 100_000_000, embedder.decode_min_side).convert("RGB") for path in paths.values()
    ]
    probs = embedder._features([embedder.transform(image) for image in images])[1]
    assert probs is not None
    rows = np.asarray(probs, np.float32)
    return {name: dict(concepts.top_concepts(row)) for name, row in zip(paths, rows, strict=True)}


@pytest.mark.parametrize(
    ("text", "best"),
    [
        ("dogs", {"beagle", "pug with a ball"}),
        ("beagle", {"beagle"}),
        ("cat", {"persian"}),
        ("persian cat", {"persian"}),
        ("tennis ball", {"pug with a ball"}),
        ("flowers", {"flower"}),
        ("mountains", {"mountains"}),
        ("car", {"car"}),
        ("lizard", {"iguana"}),
    ],
)
def test_a_word_finds_the_real_photo_that_shows_it(kept_concepts, text, best) -> None:
    (concept,) = parse(text).concepts
    scores = {name: sum(p for i, p in kept.items() if i in concept.classes) for name, kept in kept_concepts.items()}
    top = max(scores, key=lambda name: scores[name])
    assert top in best and scores[top] > 0.05, scores


def test_every_roll_up_word_reads_as_its_classes() -> None:
    """concepts.toml's words all parse, each to the classes its entry names."""
    import tomllib
    from importlib import resources

    table = tomllib.loads(resources.files("petwatch").joinpath("concepts.toml").read_text())
    for word, entry in table.items():
        for name in [word, *entry.get("also", [])]:
            (concept,) = parse(name).concepts
            assert concept.classes == parse(word).concepts[0].classes, name
