"""The one typed configuration object, built once at start-up and passed down whole.

Values come from defaults, then an optional TOML file, then command-line flags. Nothing reads the
environment at import time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from service.media.fetch import FetchLimits
from service.prompting.config import PromptExpansionConfig
from service.safety.config import SafetyConfig


class EngineKind(StrEnum):
    LOCAL = "local"
    TRITON = "triton"


@dataclass(frozen=True)
class ModelConfig:
    """Which weights to run: a `tiny-*` preset (seeded random weights) or a local checkpoint."""

    preset: str = "tiny"  # "tiny" or "ltx-video-0.9.7" (real weights from `model_dir`)
    model_dir: str | None = None  # diffusers layout, or a single file plus `config_dir`
    single_file: str | None = None  # original LTX checkpoint (.safetensors), loaded with `config_dir`
    config_dir: str | None = None  # local diffusers config for `from_single_file` (offline)
    upsampler_dir: str | None = None  # latent upsampler, diffusers layout; default model_dir/latent_upsampler
    seed: int = 0  # seed of the tiny presets' random weights
    dtype: str = "float32"  # torch dtype name for the in-process engine
    device: str = "cpu"


@dataclass(frozen=True)
class Ltx2ModelConfig:
    """The LTX-2.3 model family (`ltx-2.3-22b/text-to-video/lora`), served beside the LTX-Video models.

    `tiny-ltx2` builds seeded random weights in the 2.3 layout; `ltx-2.3` loads a local diffusers-layout
    directory (`model_dir`: transformer/, connectors/, vae/, audio_vae/, vocoder/, text_encoder/,
    tokenizer/, latent_upsampler/), or the original single file with a local config (`config_dir`);
    `none` leaves the endpoint unserved (Submit answers FAILED_PRECONDITION).
    """

    preset: str = "tiny-ltx2"  # "tiny-ltx2", "ltx-2.3" or "none"
    model_dir: str | None = None
    single_file: str | None = None  # original LTX-2.3 checkpoint, loaded with `config_dir`
    config_dir: str | None = None
    upsampler_dir: str | None = None  # default model_dir/latent_upsampler
    distilled_lora: str | None = None  # default model_dir/ltx-2.3-22b-distilled-lora-384-1.1.safetensors
    camera_lora_dir: str | None = None  # the seven camera-control LoRAs (see service/models/ltx2_loras.py)
    seed: int = 0  # seed of the tiny preset's random weights
    dtype: str = "float32"  # "bfloat16" on a GPU
    device: str = "cpu"


@dataclass(frozen=True)
class LoraConfig:
    max_bytes: int = 2 * 1024**3  # refuse LoRA downloads larger than this
    download_timeout_s: float = 60.0
    cache_dir: str = "var/lora-cache"
    allow_local_paths: bool = True  # local safetensors paths (trusted deployments only)
    allow_private_networks: bool = False  # LoRA URLs on loopback/private addresses (tests, trusted setups)


@dataclass(frozen=True)
class QueueConfig:
    max_queued: int = 64  # Submit answers RESOURCE_EXHAUSTED past this many waiting jobs
    workers: int = 1  # jobs run at once (one per accelerator)
    retention_s: float = 24 * 3600.0  # how long finished jobs and their files are kept
    requeue_interrupted: bool = True  # on restart: re-run jobs that were running (else fail them)


@dataclass(frozen=True)
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    http_port: int = 8080  # serves stored results; 0 picks a free port
    public_base_url: str | None = None  # how clients reach the HTTP server; default http://host:port
    data_dir: str = "var"  # SQLite job store and local result storage live here
    engine: EngineKind = EngineKind.LOCAL
    triton_url: str = "127.0.0.1:8001"
    model: ModelConfig = field(default_factory=ModelConfig)
    ltx2: Ltx2ModelConfig = field(default_factory=Ltx2ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    media: FetchLimits = field(default_factory=FetchLimits)  # fetching image_url / video_url inputs
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    prompt_expansion: PromptExpansionConfig = field(default_factory=PromptExpansionConfig)

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / "jobs.sqlite3"

    @property
    def storage_dir(self) -> Path:
        return Path(self.data_dir) / "results"

    def model_hash(self) -> str:
        """Stable hash of the model settings; keys caches such as built engines."""
        models = {"model": dataclasses.asdict(self.model), "ltx2": dataclasses.asdict(self.ltx2)}
        blob = json.dumps(models, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_config(path: str | Path | None = None, **overrides: Any) -> ServiceConfig:
    """Defaults, then the TOML file at `path` (sections `model`, `lora`, `queue`, `media`, `safety`,
    `prompt_expansion`), then `overrides`.

    Overrides with value None are ignored, so CLI flags that were not given change nothing. Nested
    settings are overridden with dotted keys, e.g. `**{"model.preset": "tiny"}`.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = tomllib.loads(Path(path).read_text())
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        (data.setdefault(section, {}) if section else data)[name] = value
    return _build(ServiceConfig, data)


def _build(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    nested_types = typing.get_type_hints(ServiceConfig)
    for name, value in data.items():
        if isinstance(value, dict) and dataclasses.is_dataclass(nested_types.get(name)):
            kwargs[name] = _build(nested_types[name], value)
        elif name == "engine":
            kwargs[name] = EngineKind(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
