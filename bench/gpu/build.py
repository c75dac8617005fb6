"""Models at a plan's shapes, built on the meta device, then allocated and initialised on the target device.

Nothing at the real size is ever materialised on the host: `to_empty` allocates the parameters on the GPU in
the run's dtype and a seeded generator on that device fills them (the same seed, the same weights, so each
configuration's output can be compared with eager's). Random weights at the real shapes time like the real
ones; the T5 encoder is replaced by random embeddings of its real shape (it runs once per request).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
from diffusers.models.autoencoders.autoencoder_kl_ltx import AutoencoderKLLTXVideo
from diffusers.models.transformers.transformer_ltx import LTXVideoTransformer3DModel
from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel
from torch import nn

from bench.gpu.plan import RunPlan
from service.contract.assets import LTX_VIDEO_SCHEDULER_CONFIG
from service.contract.geometry import ModelGeometry
from service.models import torch_components as tc
from service.pipelines.components import Components

ModuleT = TypeVar("ModuleT", bound=nn.Module)

# Parameters that are neither matrices, norm weights nor biases, and the value their module starts with.
_SCALARS = {"timestep_scale_multiplier": 1000.0}


def on_meta(cls: type[ModuleT], config: dict[str, Any]) -> ModuleT:
    with torch.device("meta"):
        return cls(**config).eval()


def materialize(module: ModuleT, device: torch.device, dtype: torch.dtype, seed: int) -> ModuleT:
    """Allocate `module` (built on meta) on `device` in `dtype` and fill it with seeded random weights."""
    module = module.to(dtype=dtype).to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            _init_parameter(name, parameter, generator)
        for name, buffer in module.named_buffers():
            _init_buffer(name, buffer)
    return module.requires_grad_(False)


def _init_parameter(name: str, parameter: torch.Tensor, generator: torch.Generator) -> None:
    leaf = name.rsplit(".", 1)[-1]
    if leaf in _SCALARS:
        parameter.fill_(_SCALARS[leaf])
    elif leaf == "weight" and parameter.ndim >= 2:
        # Variance-preserving (1 / fan_in), so 48 residual blocks stay finite in bf16.
        fan_in = math.prod(parameter.shape[1:])
        parameter.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
    elif leaf == "weight":
        parameter.fill_(1.0)  # norm scales
    elif leaf == "bias":
        parameter.normal_(0.0, 0.02, generator=generator)
    elif leaf.endswith("scale_shift_table"):
        parameter.normal_(0.0, 1.0 / math.sqrt(parameter.shape[-1]), generator=generator)
    else:
        raise ValueError(f"no initialisation rule for parameter {name} {tuple(parameter.shape)}")


def _init_buffer(name: str, buffer: torch.Tensor) -> None:
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "latents_mean":
        buffer.zero_()
    elif leaf == "latents_std":
        buffer.fill_(1.0)
    else:
        raise ValueError(f"no initialisation rule for buffer {name} {tuple(buffer.shape)}")


def build_transformer(plan: RunPlan, device: torch.device | None = None) -> LTXVideoTransformer3DModel:
    meta = on_meta(LTXVideoTransformer3DModel, plan.transformer)
    return materialize(meta, device or torch.device(plan.device), plan.dtype, plan.seed)


def build_vae(plan: RunPlan) -> AutoencoderKLLTXVideo:
    meta = on_meta(AutoencoderKLLTXVideo, plan.vae)
    return materialize(meta, torch.device(plan.device), plan.dtype, plan.seed + 1)


def build_upsampler(plan: RunPlan) -> LTXLatentUpsamplerModel:
    meta = on_meta(LTXLatentUpsamplerModel, plan.upsampler)
    return materialize(meta, torch.device(plan.device), plan.dtype, plan.seed + 2)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class RandomTextEncoder:
    """The `TextEncoder` seam with T5-XXL's output shape [1, L, 4096] and no padding, seeded by prompt count."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        device = torch.device(self.plan.device)
        generator = torch.Generator(device=device).manual_seed(self.plan.seed + len(prompts))
        shape = (len(prompts), self.plan.text_max_length, self.plan.text_dim)
        embeds = torch.randn(shape, generator=generator, device=device).to(self.plan.dtype)
        mask = torch.ones(shape[:2], dtype=torch.long, device=device)
        return embeds, mask


def geometry(
    plan: RunPlan, transformer: LTXVideoTransformer3DModel, vae: AutoencoderKLLTXVideo
) -> ModelGeometry:
    channels = int(vae.config["latent_channels"])
    return ModelGeometry(
        latent_channels=channels,
        spatial_compression=int(vae.spatial_compression_ratio),
        temporal_compression=int(vae.temporal_compression_ratio),
        patch_size=int(transformer.config["patch_size"]),
        patch_size_t=int(transformer.config["patch_size_t"]),
        transformer_blocks=len(transformer.transformer_blocks),
        text_max_length=plan.text_max_length,
        text_dim=plan.text_dim,
        latents_mean=(0.0,) * channels,
        latents_std=(1.0,) * channels,
        scaling_factor=float(vae.config["scaling_factor"]),
        decode_timestep_conditioning=bool(vae.config["timestep_conditioning"]),
    )


def components(
    plan: RunPlan,
    transformer: LTXVideoTransformer3DModel,
    vae: AutoencoderKLLTXVideo,
    upsampler: LTXLatentUpsamplerModel,
) -> Components:
    """The pipeline's seams bound to these modules exactly as the in-process engine binds them."""
    return Components(
        geometry=geometry(plan, transformer, vae),
        text_encoder=RandomTextEncoder(plan),
        transformer=tc.TorchTransformer(transformer),
        vae_decoder=tc.TorchVaeDecoder(vae),
        upsampler=tc.TorchLatentUpsampler(upsampler),
        scheduler_config=dict(LTX_VIDEO_SCHEDULER_CONFIG),
    )
