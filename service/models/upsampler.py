"""The latent upsampler of the distilled multiscale pipeline: a tiny seeded preset and local-dir loading.

The model is diffusers' `LTXLatentUpsamplerModel` (LTX-Video's `ltxv-spatial-upscaler-0.9.7`, 126 M
parameters with the real widths): 3D convolutions around a 2D pixel shuffle that doubles each side of
the latents. It works on denormalized latents, the VAE's own scale (see `TorchLatentUpsampler`).

Tiny preset: the same architecture with one residual block per stage and 32 middle channels (GroupNorm
needs a multiple of 32), and the tiny VAE's real latent channel count, so the shapes are those of the
real pipeline. Built inside the caller's seeded RNG fork, like the other tiny models.

Real weights come from a local diffusers-layout directory (`config.json` plus safetensors, what
`save_pretrained` writes and what the diffusers conversion of the 0.9.7 upscaler ships), looked up as:
`model.upsampler_dir` if set, else `<model.model_dir>/latent_upsampler`. Nothing is fetched from a hub.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

from service.config import ModelConfig

logger = logging.getLogger(__name__)

# Subfolder of a diffusers-layout model directory that holds the upsampler (as `LTXLatentUpsamplePipeline`
# lays out its `latent_upsampler` component).
UPSAMPLER_SUBFOLDER = "latent_upsampler"

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
        if not path.is_dir():
            raise ValueError(f"model.upsampler_dir: {path} is not a directory")
        return path
    if cfg.model_dir and (Path(cfg.model_dir) / UPSAMPLER_SUBFOLDER).is_dir():
        return Path(cfg.model_dir) / UPSAMPLER_SUBFOLDER
    return None


def load_upsampler(directory: str | Path, dtype: torch.dtype = torch.float32) -> LTXLatentUpsamplerModel:
    """A diffusers-layout upsampler directory; one holding a `latent_upsampler/` subfolder works too."""
    root = Path(directory)
    subfolder = UPSAMPLER_SUBFOLDER if (root / UPSAMPLER_SUBFOLDER / "config.json").is_file() else None
    # float32 is how the files load anyway; naming it only makes diffusers log a casting warning.
    dtype_kwargs = {} if dtype == torch.float32 else {"torch_dtype": dtype}
    model = LTXLatentUpsamplerModel.from_pretrained(
        str(root), subfolder=subfolder, local_files_only=True, **dtype_kwargs
    )
    logger.info("loaded the latent upsampler from %s", root / (subfolder or ""))
    return model.eval()


def save_upsampler(model: LTXLatentUpsamplerModel, model_dir: str | Path) -> Path:
    """Write `model` into `<model_dir>/latent_upsampler`, where `upsampler_dir` looks by default."""
    target = Path(model_dir) / UPSAMPLER_SUBFOLDER
    model.save_pretrained(target, safe_serialization=True)
    return target
