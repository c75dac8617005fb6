"""The one typed configuration object, built once at start-up and passed down whole.

Values come from defaults, then an optional TOML file, then command-line flags. Nothing reads the
environment at import time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from service.config_types import build
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
    max_retries: int = 2  # re-queues of an interrupted job before it fails as retries_exhausted
    lease_s: float = 30.0  # a running job's lease; a worker silent this long loses the job to the queue
    heartbeat_s: float = 5.0  # how often workers renew their leases (and sweep expired ones)
    worker_id: str | None = None  # this worker's name in leases and logs (e.g. the pod name); default random


class Role(StrEnum):
    ALL = "all"  # one process: API and jobs (the embedded default)
    GATEWAY = "gateway"  # the API from the shared store; runs no jobs
    WORKER = "worker"  # claims and runs jobs; serves only health


@dataclass(frozen=True)
class S3Config:
    """S3-compatible result storage (`storage_url = "s3://bucket/prefix"`). Unset credentials and region
    come from boto3's standard chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION, profiles,
    instance roles)."""

    endpoint_url: str | None = None  # e.g. http://minio:9000; None = AWS
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    url_expiry_s: int = 24 * 3600  # presigned GET URLs of results; at most 7 days (S3's limit)
    multipart_threshold_bytes: int = 8 * 1024**2
    multipart_chunk_bytes: int = 8 * 1024**2


@dataclass(frozen=True)
class WebhookConfig:
    timeout_s: float = 15.0
    max_attempts: int = 10
    first_backoff_s: float = 15.0  # doubles after every failure ...
    max_backoff_s: float = 1800.0  # ... up to this, so 10 attempts span about 2 hours
    signing_key_file: str | None = None  # Ed25519 private key (PEM); default data_dir/webhook_key.pem
    allow_private_networks: bool = False  # webhook URLs on loopback/private addresses (tests only)
    poll_s: float = 1.0


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
    lora: LoraConfig = field(default_factory=LoraConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    media: FetchLimits = field(default_factory=FetchLimits)  # fetching image_url / video_url inputs
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    prompt_expansion: PromptExpansionConfig = field(default_factory=PromptExpansionConfig)
    role: Role = Role.ALL
    database_url: str | None = None  # postgresql://...; default SQLite at data_dir/jobs.sqlite3
    storage_url: str | None = None  # s3://bucket/prefix; default the local directory data_dir/results
    s3: S3Config = field(default_factory=S3Config)
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    max_upload_bytes: int = 256 * 1024**2  # the Upload RPC refuses larger files

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / "jobs.sqlite3"

    @property
    def storage_dir(self) -> Path:
        return Path(self.data_dir) / "results"

    def model_hash(self) -> str:
        """Stable hash of the model settings; keys caches such as built engines."""
        blob = json.dumps(dataclasses.asdict(self.model), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_config(path: str | Path | None = None, **overrides: Any) -> ServiceConfig:
    """Defaults, then the TOML file at `path` (sections `model`, `lora`, `queue`, `media`, `safety`,
    `prompt_expansion`), then `overrides`.

    Overrides with value None are ignored, so CLI flags that were not given change nothing. Nested
    settings are overridden with dotted keys, e.g. `**{"model.preset": "tiny"}`. Every value is checked
    against its field's type (service/config_types.py): ConfigError names the key and the expected type.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = tomllib.loads(Path(path).read_text())
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        (data.setdefault(section, {}) if section else data)[name] = value
    return build(ServiceConfig, data)
