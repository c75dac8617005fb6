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
from service.observability.config import MetricsConfig
from service.prompting.config import PromptExpansionConfig
from service.safety.config import SafetyConfig
from service.security.config import AuthConfig


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
    # latent upsampler: a diffusers-layout directory or the original .safetensors file; default
    # model_dir/latent_upsampler
    upsampler_dir: str | None = None
    seed: int = 0  # seed of the tiny presets' random weights
    dtype: str = "float32"  # torch dtype name for the in-process engine
    device: str = "cpu"


class AttentionBackend(StrEnum):
    DEFAULT = "default"  # torch's own choice per call
    MATH = "math"
    FLASH = "flash"
    EFFICIENT = "efficient"
    CUDNN = "cudnn"


FAST_PATH_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class FastPathConfig:
    """PyTorch speed-ups of the transformer (service/models/fast_path.py; `python -m bench.gpu` measures
    each on a GPU). All off by default, which is right on a CPU."""

    dtype: str | None = None  # dtype of the models, overriding model.dtype ("bfloat16" on a GPU)
    attention_backend: AttentionBackend = AttentionBackend.DEFAULT  # SDPA backend tried first
    compile: bool = False  # regional torch.compile: one block's compiled code, reused by every block
    fp8: bool = False  # block linears in FP8 (e4m3 weights and activations) through torch._scaled_mm
    cuda_graphs: bool = False  # capture the transformer forward per input shape, replay it (CUDA only)

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in FAST_PATH_DTYPES:
            raise ValueError(f"fast_path.dtype: {self.dtype!r} is not one of {', '.join(FAST_PATH_DTYPES)}")
        try:
            object.__setattr__(self, "attention_backend", AttentionBackend(self.attention_backend))
        except ValueError:
            known = ", ".join(b.value for b in AttentionBackend)
            raise ValueError(
                f"fast_path.attention_backend: {self.attention_backend!r} is not one of {known}"
            ) from None
        for name in ("compile", "fp8", "cuda_graphs"):
            if type(getattr(self, name)) is not bool:
                raise ValueError(f"fast_path.{name}: {getattr(self, name)!r} is not a boolean")

    @property
    def enabled(self) -> bool:
        """Whether anything changes the transformer (the dtype is applied when the models load)."""
        return (
            self.attention_backend is not AttentionBackend.DEFAULT
            or self.compile
            or self.fp8
            or self.cuda_graphs
        )


@dataclass(frozen=True)
class Ltx2ModelConfig:
    """The LTX-2.3 model family (`ltx-2.3-22b/text-to-video/lora`), served beside the LTX-Video models.

    `tiny-ltx2` builds seeded random weights in the 2.3 layout; `ltx-2.3` loads a local diffusers-layout
    directory (`model_dir`: transformer/, connectors/, vae/, audio_vae/, vocoder/, text_encoder/,
    tokenizer/, latent_upsampler/), or the original single file for the transformer with the rest in that
    layout at `config_dir`;
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
    # ltx-2.3 only (the tiny preset has its own): Gemma tokens per prompt (LTX2Pipeline's 1024) and the
    # transformer blocks STG perturbs (2.3: block 28 of 48); a smaller model in the same layout sets both.
    text_max_length: int = 1024
    stg_blocks: tuple[int, ...] = (28,)


@dataclass(frozen=True)
class LoraConfig:
    max_bytes: int = 2 * 1024**3  # refuse LoRA downloads larger than this
    download_timeout_s: float = 60.0
    cache_dir: str = "lora-cache"  # a relative path is under data_dir
    cache_max_bytes: int = 20 * 1024**3  # least recently used downloads are evicted past this
    cache_ttl_s: float = 24 * 3600.0  # a cached download older than this is fetched again
    allow_local_paths: bool = False  # local safetensors paths, confined to `local_roots` (trusted setups)
    local_roots: tuple[str, ...] = ()  # directories local LoRA paths must lie in (symlinks resolved)
    allow_private_networks: bool = False  # LoRA URLs on loopback/private addresses (tests, trusted setups)
    trusted_prefixes: tuple[str, ...] = ()  # the service's own upload URLs (set at start-up)


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
    max_backoff_s: float = 3600.0  # ... up to this: 10 attempts span about 2 hours
    signing_key_file: str | None = None  # Ed25519 private key (PEM); default data_dir/webhook_key.pem
    allow_private_networks: bool = False  # webhook URLs on loopback/private addresses (tests only)
    poll_s: float = 1.0


@dataclass(frozen=True)
class StagesConfig:
    """Worker pools of the job stages around the accelerator (`queue.workers` is its slot count):
    while one job generates, up to `prepare_workers` next jobs are prepared (fetch, decode, safety, LoRA
    download) and up to `finish_workers` earlier ones are checked, encoded and stored."""

    prepare_workers: int = 1
    finish_workers: int = 1

    def __post_init__(self) -> None:
        for name in ("prepare_workers", "finish_workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"stages.{name} must be an integer of at least 1, got {value!r}")


@dataclass(frozen=True)
class TransportConfig:
    """gRPC server settings. The receive limit fits one data URI at `media.max_bytes` (base64 is 4/3 of
    the bytes) with room for the rest of the request; each data URI is bounded at validation."""

    max_receive_message_bytes: int = 400 * 1024**2
    max_send_message_bytes: int = 64 * 1024**2
    keepalive_time_s: float = 60.0  # the server pings idle connections this often
    keepalive_timeout_s: float = 20.0  # and drops them when a ping goes unanswered this long
    min_ping_interval_s: float = 10.0  # clients may ping this often (more often: GOAWAY too_many_pings)
    max_concurrent_streams: int = 1000  # per connection (Watch streams included)
    graceful_stop_s: float = 2.0  # open RPCs (Watch streams) get this long once the server stops


@dataclass(frozen=True)
class ShutdownConfig:
    grace_s: float = 30.0  # SIGTERM: running jobs get this long to finish, then are cancelled and re-queued


@dataclass(frozen=True)
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    http_port: int = 8080  # serves stored results; 0 picks a free port
    admin_port: int | None = None  # plaintext gRPC health + reflection for probes; None = main port only
    public_base_url: str | None = None  # how clients reach the HTTP server; default http://host:port
    data_dir: str = "var"  # SQLite job store and local result storage live here
    engine: EngineKind = EngineKind.LOCAL
    triton_url: str = "127.0.0.1:8001"
    model: ModelConfig = field(default_factory=ModelConfig)
    ltx2: Ltx2ModelConfig = field(default_factory=Ltx2ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    media: FetchLimits = field(default_factory=FetchLimits)  # fetching image_url / video_url inputs
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    prompt_expansion: PromptExpansionConfig = field(default_factory=PromptExpansionConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    role: Role = Role.ALL
    database_url: str | None = None  # postgresql://...; default SQLite at data_dir/jobs.sqlite3
    storage_url: str | None = None  # s3://bucket/prefix; default the local directory data_dir/results
    s3: S3Config = field(default_factory=S3Config)
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    max_upload_bytes: int = 256 * 1024**2  # the Upload RPC refuses larger files
    fast_path: FastPathConfig = field(default_factory=FastPathConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

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
    """Defaults, then the TOML file at `path` (sections `model`, `lora`, `queue`, `stages`, `media`,
    `safety`, `prompt_expansion`, `fast_path`), then `overrides`.

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
    return _with_paths_under_data_dir(build(ServiceConfig, data))


def _with_paths_under_data_dir(config: ServiceConfig) -> ServiceConfig:
    """Relative cache paths live in data_dir, not wherever the process happened to start."""
    cache = Path(config.lora.cache_dir)
    if cache.is_absolute():
        return config
    lora = dataclasses.replace(
        config.lora, cache_dir=str(Path(config.data_dir) / cache), local_roots=tuple(config.lora.local_roots)
    )
    return dataclasses.replace(config, lora=lora)
