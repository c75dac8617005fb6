"""What one run builds and measures: the real shapes on a GPU, or a reduced copy of them for `--smoke`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from service.models import presets
from service.models import upsampler as upsampler_models

# LTX-Video 0.9.7 13B (diffusers' scripts/convert_ltx_to_diffusers.py, version 0.9.7).
LTXV_13B_TRANSFORMER: dict[str, Any] = {
    "in_channels": 128,
    "out_channels": 128,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "cross_attention_dim": 4096,
    "num_layers": 48,
    "activation_fn": "gelu-approximate",
    "qk_norm": "rms_norm_across_heads",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 4096,
    "attention_bias": True,
    "attention_out_bias": True,
}

LTXV_097_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "block_out_channels": (128, 256, 512, 1024, 2048),
    "down_block_types": ("LTXVideo095DownBlock3D",) * 4,
    "decoder_block_out_channels": (256, 512, 1024),
    "layers_per_block": (4, 6, 6, 2, 2),
    "decoder_layers_per_block": (5, 5, 5, 5),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "timestep_conditioning": True,
    "patch_size": 4,
    "patch_size_t": 1,
    "resnet_norm_eps": 1e-6,
    "scaling_factor": 1.0,
    "encoder_causal": True,
    "decoder_causal": False,
    "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
}

LTXV_097_UPSAMPLER: dict[str, Any] = {
    "in_channels": 128,
    "mid_channels": 512,
    "num_blocks_per_stage": 4,
    "dims": 3,
    "spatial_upsample": True,
    "temporal_upsample": False,
}

# Reduced depth and width for --smoke: two blocks, 64 wide (FP8 needs widths divisible by 16).
SMOKE_TRANSFORMER: dict[str, Any] = {
    **presets.TINY_TRANSFORMER_CONFIG,
    "num_attention_heads": 2,
    "attention_head_dim": 32,
    "cross_attention_dim": 64,
    "num_layers": 2,
    "caption_channels": 64,
}


@dataclass(frozen=True)
class RunPlan:
    name: str
    device: str
    dtype: torch.dtype
    transformer: dict[str, Any]
    vae: dict[str, Any]
    upsampler: dict[str, Any]
    width: int  # the distilled request's output size and length
    height: int
    num_frames: int
    warmups: int  # calls before timing (compile and capture happen here)
    repeats: int  # timed calls; the median is reported
    budget_s: float  # rows that would start after this are skipped, and say so
    matmul_size: int  # the square bf16 matmul that measures the peak
    anchor_s: float = 10.0  # Lightricks: the 13B distilled model makes "HD videos in 10 seconds" on an H100
    text_max_length: int = presets.LTX_VIDEO_TEXT_MAX_LENGTH
    seed: int = 0
    # torch.compile options of the compile rows; the smoke run uses dynamo's eager backend (the same regional
    # capture without inductor's code generation, which takes minutes on 2 shared CPU cores).
    compile_options: dict[str, Any] = field(default_factory=dict)

    @property
    def text_dim(self) -> int:
        return int(self.transformer["caption_channels"])


def real_plan(budget_s: float) -> RunPlan:
    return RunPlan(
        name="LTX-Video 0.9.7 13B distilled, random weights at the real shapes",
        device="cuda",
        dtype=torch.bfloat16,
        transformer=LTXV_13B_TRANSFORMER,
        vae=LTXV_097_VAE,
        upsampler=LTXV_097_UPSAMPLER,
        width=1216,
        height=704,
        num_frames=121,
        warmups=2,
        repeats=3,
        budget_s=budget_s,
        matmul_size=8192,
    )


def smoke_plan() -> RunPlan:
    return RunPlan(
        name="smoke: the same code at reduced depth and size, on a CPU",
        device="cpu",
        dtype=torch.float32,  # bf16 matmuls are emulated on CPUs without AVX512-BF16, ~100x slower
        transformer=SMOKE_TRANSFORMER,
        vae=presets.TINY_VAE_CONFIG,
        upsampler=upsampler_models.tiny_upsampler_config(presets.TINY_LATENT_CHANNELS),
        width=288,
        height=192,
        num_frames=9,
        warmups=1,
        repeats=1,
        budget_s=120.0,
        matmul_size=256,
        compile_options={"backend": "eager"},
    )
