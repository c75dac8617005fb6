"""The latent upsampler of the distilled multiscale pipeline: a tiny seeded preset and local-dir loading.

The model is diffusers' `LTXLatentUpsamplerModel` (LTX-Video's `ltxv-spatial-upscaler-0.9.7`, 126 M
parameters with the real widths): 3D convolutions around a 2D pixel shuffle that doubles each side of
the latents. It works on denormalized latents, the VAE's own scale (see `TorchLatentUpsampler`).

Tiny preset: the same architecture with one residual block per stage and 32 middle channels (GroupNorm
needs a multiple of 32), and the tiny VAE's real latent channel count, so the shapes are those of the
real pipeline. Built inside the caller's seeded RNG fork, like the other tiny models.

Real weights come from a local diffusers-layout directory (`config.json` plus safetensors, what
`save_pretrained` writes and what the diffusers conversion of the 0.9.7 upscaler ships), or from
Lightricks' original single file (`ltxv-spatial-upscaler-0.9.7.safetensors`: the state dict under the
same module names, its config as JSON in the file's `config` metadata, as upstream
`LatentUpsampler.from_pretrained` reads it; diffusers has no single-file loader for it), looked up as:
`model.upsampler_dir` (a directory or that file) if set, else `<model.model_dir>/latent_upsampler`.
Nothing is fetched from a hub.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel
from safetensors import safe_open
from safetensors.torch import save_file

from service.config import ModelConfig

logger = logging.getLogger(__name__)

# Subfolder of a diffusers-layout model directory that holds the upsampler (as `LTXLatentUpsamplePipeline`
# lays out its `latent_upsampler` component).
UPSAMPLER_SUBFOLDER = "latent_upsampler"

SINGLE_FILE_SUFFIX = ".safetensors"
# The LatentUpsampler config keys upstream's `from_config` reads (and diffusers' model takes).
_SINGLE_FILE_CONFIG_KEYS = (
    "in_channels", "mid_channels", "num_blocks_per_stage", "dims", "spatial_upsample", "temporal_upsample",
)  # fmt: skip

TINY_UPSAMPLER_MID_CHANNELS = 32  # the smallest width GroupNorm(32, ...) accepts


def tiny_upsampler_config(latent_channels: int) -> dict[str, Any]:
    return {
        "in_channels": latent_channels,
        "mid_channels": TINY_UPSAMPLER_MID_CHANNELS,
        "num_blocks_per_stage": 1,
        "dims": 3,
        "spatial_upsample": True,
        "temporal_upsample": False,
    }


def build_tiny_upsampler(latent_channels: int) -> LTXLatentUpsamplerModel:
    """Random weights from the global torch RNG: call it inside a seeded `fork_rng`, as `_build_tiny` does."""
    return LTXLatentUpsamplerModel(**tiny_upsampler_config(latent_channels)).eval()


def upsampler_dir(cfg: ModelConfig) -> Path | None:
    """Where `cfg`'s upsampler lives, or None when no configured or conventional directory exists."""
    if cfg.upsampler_dir:
        path = Path(cfg.upsampler_dir)
        if not (path.is_dir() or (path.is_file() and path.suffix == SINGLE_FILE_SUFFIX)):
            raise ValueError(
                f"model.upsampler_dir: {path} is neither a directory nor a {SINGLE_FILE_SUFFIX} file"
            )
        return path
    if cfg.model_dir and (Path(cfg.model_dir) / UPSAMPLER_SUBFOLDER).is_dir():
        return Path(cfg.model_dir) / UPSAMPLER_SUBFOLDER
    return None


def load_upsampler(directory: str | Path, dtype: torch.dtype = torch.float32) -> LTXLatentUpsamplerModel:
    """A diffusers-layout upsampler directory (one holding a `latent_upsampler/` subfolder works too), or
    the original single file."""
    root = Path(directory)
    if root.is_file():
        return load_upsampler_single_file(root, dtype)
    subfolder = UPSAMPLER_SUBFOLDER if (root / UPSAMPLER_SUBFOLDER / "config.json").is_file() else None
    # float32 is how the files load anyway; naming it only makes diffusers log a casting warning.
    dtype_kwargs = {} if dtype == torch.float32 else {"torch_dtype": dtype}
    model = LTXLatentUpsamplerModel.from_pretrained(
        str(root), subfolder=subfolder, local_files_only=True, **dtype_kwargs
    )
    logger.info("loaded the latent upsampler from %s", root / (subfolder or ""))
    return model.eval()


def load_upsampler_single_file(path: Path, dtype: torch.dtype = torch.float32) -> LTXLatentUpsamplerModel:
    """Lightricks' original upsampler file: config from its `config` metadata, weights loaded strictly."""
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        metadata = handle.metadata() or {}
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a safe_open handle, not a dict)
    if "config" not in metadata:
        raise ValueError(f"model.upsampler_dir: {path} has no 'config' metadata (not an LTX upsampler file)")
    config = json.loads(metadata["config"])
    model = LTXLatentUpsamplerModel(**{key: config[key] for key in _SINGLE_FILE_CONFIG_KEYS if key in config})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"model.upsampler_dir: {path} does not fit its config: {exc}") from exc
    logger.info("loaded the latent upsampler from the single file %s", path)
    return model.to(dtype).eval()


def save_upsampler_single_file(model: LTXLatentUpsamplerModel, path: str | Path) -> Path:
    """`model` as an original single file (what `load_upsampler_single_file` reads)."""
    config = {key: model.config[key] for key in _SINGLE_FILE_CONFIG_KEYS}
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(config)})
    return Path(path)


def save_upsampler(model: LTXLatentUpsamplerModel, model_dir: str | Path) -> Path:
    """Write `model` into `<model_dir>/latent_upsampler`, where `upsampler_dir` looks by default."""
    target = Path(model_dir) / UPSAMPLER_SUBFOLDER
    model.save_pretrained(target, safe_serialization=True)
    return target
