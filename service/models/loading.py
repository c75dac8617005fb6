"""Load a preset's models (their binding to the pipeline's Protocols: service/engines/torch_bindings.py).

Real checkpoints and the tiny preset go through the same objects: diffusers' `LTXVideoTransformer3DModel`
and `AutoencoderKLLTXVideo`, transformers' T5 encoder and a tokenizer. Real weights come from a local
diffusers-layout directory (`from_pretrained`) or from the original single-file checkpoint
(`from_single_file` with a local `config=` directory); nothing is ever fetched from a hub.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from diffusers.models.autoencoders.autoencoder_kl_ltx import AutoencoderKLLTXVideo
from diffusers.models.transformers.transformer_ltx import LTXVideoTransformer3DModel
from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5EncoderModel

from service.config import FastPathConfig, ModelConfig
from service.contract.assets import LTX_VIDEO_SCHEDULER_CONFIG
from service.contract.geometry import ModelGeometry
from service.models import presets
from service.models import upsampler as upsampler_models
from service.models.fast_path import apply_fast_path
from service.models.tokenizer import build_byte_tokenizer, byte_tokenizer_vocab_size

logger = logging.getLogger(__name__)

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)

SUBFOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")


@dataclass(eq=False)
class LoadedModels:
    """The torch modules of one model config. `lock` serializes jobs, which mutate them (LoRA adapters)."""

    transformer: LTXVideoTransformer3DModel
    vae: AutoencoderKLLTXVideo
    text_encoder: T5EncoderModel
    tokenizer: PreTrainedTokenizerBase
    scheduler_config: dict[str, Any]
    upsampler: LTXLatentUpsamplerModel | None = None  # the distilled two-pass pipeline needs it
    lock: threading.Lock = field(default_factory=threading.Lock)


_cache: dict[tuple[ModelConfig, FastPathConfig], LoadedModels] = {}
_cache_lock = threading.Lock()


def load_models(cfg: ModelConfig, fast_path: FastPathConfig | None = None) -> LoadedModels:
    """The models of `cfg` with `fast_path` applied, built or loaded once per process and configs."""
    fast_path = fast_path or FastPathConfig()
    with _cache_lock:
        key = (cfg, fast_path)
        if key not in _cache:
            started = time.monotonic()
            model_cfg = dataclasses.replace(cfg, dtype=fast_path.dtype) if fast_path.dtype else cfg
            tiny = model_cfg.preset == presets.Preset.TINY
            models = _build_tiny(model_cfg) if tiny else _load_checkpoint(model_cfg)
            _check_compatible(models)
            if fast_path.enabled:
                apply_fast_path(models.transformer, fast_path)
            _cache[key] = models
            logger.info("loaded model preset %s in %.2f s", cfg.preset, time.monotonic() - started)
        return _cache[key]


def model_geometry(models: LoadedModels) -> ModelGeometry:
    vae, transformer = models.vae, models.transformer
    return ModelGeometry(
        latent_channels=int(vae.config["latent_channels"]),
        spatial_compression=int(vae.spatial_compression_ratio),
        temporal_compression=int(vae.temporal_compression_ratio),
        patch_size=int(transformer.config["patch_size"]),
        patch_size_t=int(transformer.config["patch_size_t"]),
        transformer_blocks=len(transformer.transformer_blocks),
        text_max_length=presets.LTX_VIDEO_TEXT_MAX_LENGTH,
        text_dim=int(transformer.config["caption_channels"]),
        latents_mean=tuple(vae.latents_mean.float().tolist()),
        latents_std=tuple(vae.latents_std.float().tolist()),
        scaling_factor=float(vae.config["scaling_factor"]),
        decode_timestep_conditioning=bool(vae.config["timestep_conditioning"]),
    )


def save_diffusers_layout(models: LoadedModels, directory: str | Path) -> Path:
    """Write `models` as a diffusers-layout checkpoint directory (what `model_dir` points at)."""
    root = Path(directory)
    models.transformer.save_pretrained(root / "transformer", safe_serialization=True)
    models.vae.save_pretrained(root / "vae", safe_serialization=True)
    models.text_encoder.save_pretrained(root / "text_encoder", safe_serialization=True)
    models.tokenizer.save_pretrained(root / "tokenizer")
    FlowMatchEulerDiscreteScheduler.from_config(models.scheduler_config).save_pretrained(root / "scheduler")
    if models.upsampler is not None:
        upsampler_models.save_upsampler(models.upsampler, root)
    return root


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"model.dtype: {name!r} is not one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def _build_tiny(cfg: ModelConfig) -> LoadedModels:
    # A private RNG stream: same seed, same weights, whatever else the process has drawn.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        statistics_generator = torch.Generator().manual_seed(cfg.seed)
        text_encoder = presets.build_tiny_text_encoder(byte_tokenizer_vocab_size())
        transformer = presets.build_tiny_transformer()
        vae = presets.build_tiny_vae(statistics_generator)
        # Built last, so adding it left the other tiny models' weights as they were.
        upsampler = upsampler_models.build_tiny_upsampler(presets.TINY_LATENT_CHANNELS)
    dtype, device = torch_dtype(cfg.dtype), torch.device(cfg.device)
    return LoadedModels(
        transformer=_place(transformer, device, dtype),
        vae=_place(vae, device, dtype),
        text_encoder=_place(text_encoder, device, dtype),
        tokenizer=build_byte_tokenizer(presets.LTX_VIDEO_TEXT_MAX_LENGTH),
        scheduler_config=dict(LTX_VIDEO_SCHEDULER_CONFIG),
        upsampler=_place(upsampler, device, dtype),
    )


def _place(module: ModuleT, device: torch.device, dtype: torch.dtype = torch.float32) -> ModuleT:
    # diffusers warns on any `.to(dtype)`, even a no-op one; cast only when the dtype really changes.
    module.to(device)
    if dtype != torch.float32:
        module.to(dtype)
    return module


def _load_checkpoint(cfg: ModelConfig) -> LoadedModels:
    if cfg.preset != presets.Preset.LTX_VIDEO_097:
        known = ", ".join(p.value for p in presets.Preset)
        raise ValueError(f"model.preset: unknown preset {cfg.preset!r} (known: {known})")
    dtype, device = torch_dtype(cfg.dtype), torch.device(cfg.device)
    if cfg.single_file:
        transformer, vae = _load_single_file(cfg, dtype)
    else:
        model_dir = _require_dir(cfg.model_dir, "model.model_dir")
        transformer = LTXVideoTransformer3DModel.from_pretrained(
            model_dir, subfolder="transformer", local_files_only=True, **_dtype_kwargs(dtype)
        )
        vae = AutoencoderKLLTXVideo.from_pretrained(
            model_dir, subfolder="vae", local_files_only=True, **_dtype_kwargs(dtype)
        )
    # The text encoder, tokenizer and scheduler live in the diffusers-layout directory either way.
    text_dir = _require_dir(cfg.model_dir or cfg.config_dir, "model.model_dir (or model.config_dir)")
    text_encoder = T5EncoderModel.from_pretrained(
        text_dir, subfolder="text_encoder", dtype=dtype, local_files_only=True
    )
    tokenizer = AutoTokenizer.from_pretrained(text_dir, subfolder="tokenizer", local_files_only=True)
    return LoadedModels(
        transformer=_place(transformer, device).eval(),
        vae=_place(vae, device).eval(),
        text_encoder=_place(text_encoder, device).eval(),
        tokenizer=tokenizer,
        scheduler_config=_scheduler_config(Path(text_dir)),
        upsampler=_load_upsampler(cfg, dtype, device),
    )


def _load_single_file(
    cfg: ModelConfig, dtype: torch.dtype
) -> tuple[LTXVideoTransformer3DModel, AutoencoderKLLTXVideo]:
    """The original LTX checkpoint holds transformer and VAE; diffusers converts its keys while loading.
    Offline, `from_single_file` needs the diffusers configs from a local directory (`config=`)."""
    checkpoint = Path(cfg.single_file or "")
    if not checkpoint.is_file():
        raise ValueError(f"model.single_file: {checkpoint} is not a file")
    config_dir = _require_dir(cfg.config_dir or cfg.model_dir, "model.config_dir")
    transformer = LTXVideoTransformer3DModel.from_single_file(
        str(checkpoint),
        config=config_dir,
        subfolder="transformer",
        local_files_only=True,
        **_dtype_kwargs(dtype),
    )
    vae = AutoencoderKLLTXVideo.from_single_file(
        str(checkpoint), config=config_dir, subfolder="vae", local_files_only=True, **_dtype_kwargs(dtype)
    )
    return transformer, vae


def _dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    # float32 is what the files load as anyway; passing it only makes diffusers log a casting warning.
    return {} if dtype == torch.float32 else {"torch_dtype": dtype}


def _scheduler_config(directory: Path) -> dict[str, Any]:
    path = directory / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        logger.info("no %s; using LTX-Video's scheduler config", path)
        return dict(LTX_VIDEO_SCHEDULER_CONFIG)
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def _load_upsampler(
    cfg: ModelConfig, dtype: torch.dtype, device: torch.device
) -> LTXLatentUpsamplerModel | None:
    directory = upsampler_models.upsampler_dir(cfg)
    if directory is None:
        logger.info("no latent upsampler configured: the distilled two-pass endpoint is not served")
        return None
    return _place(upsampler_models.load_upsampler(directory, dtype), device)


def _require_dir(path: str | None, setting: str) -> str:
    if not path or not Path(path).is_dir():
        raise ValueError(
            f"{setting}: {path!r} is not a directory (the ltx-video-0.9.7 preset needs local weights)"
        )
    return path


def _check_compatible(models: LoadedModels) -> None:
    text_dim = int(models.text_encoder.config.d_model)
    caption_dim = int(models.transformer.config["caption_channels"])
    if text_dim != caption_dim:
        raise ValueError(f"text encoder width {text_dim} != transformer caption_channels {caption_dim}")
    if models.vae.config["latent_channels"] != models.transformer.config["in_channels"]:
        raise ValueError("VAE latent_channels and transformer in_channels differ: mismatched checkpoints")
    upsampler = models.upsampler
    if upsampler is not None and upsampler.config["in_channels"] != models.vae.config["latent_channels"]:
        raise ValueError("upsampler in_channels and VAE latent_channels differ: mismatched checkpoints")
