"""The seams between pipeline math and the models that run it.

A pipeline takes its components behind these Protocols. `LocalEngine` binds them to torch modules in
this process; the Triton model `ltx_pipeline` binds them to BLS calls on the component models (TensorRT
plans on a GPU). One pipeline, two bindings. All tensors are torch tensors on the pipeline's device.

Tensor names used here are the names used everywhere (ONNX graphs, TensorRT profiles, config.pbtxt):
  text encoder:  input_ids [B, L] int64, attention_mask [B, L] int64 -> text_embeds [B, L, D]
  transformer:   hidden_states [B, N, C], timestep [B, N], video_coords [B, 3, N],
                 encoder_hidden_states [B, L, D], encoder_attention_mask [B, L] -> velocity [B, N, C]
  vae decoder:   latents [B, C, f, h, w] (denormalized), decode_timestep [B] -> video [B, 3, F, H, W]
  vae encoder:   video [B, 3, F, H, W] in [-1, 1] -> latents [B, C, f, h, w] (not normalized)
  upsampler:     latents [B, C, f, h, w] -> upsampled_latents [B, C, f, 2h, 2w] (both denormalized)
  STG (optional transformer inputs): stg_skip_blocks [num_blocks] bool, stg_rows [B] bool
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class ModelGeometry:
    """Fixed facts about a model family that pipelines need for shapes and normalization."""

    latent_channels: int
    spatial_compression: int  # pixels per latent cell, each side (32 for LTX)
    temporal_compression: int  # frames per latent frame after the first (8 for LTX)
    patch_size: int  # transformer patch size (1 for LTX-Video)
    patch_size_t: int
    transformer_blocks: int  # the range of STG skip blocks (`Perturbation.skip_blocks`)
    text_max_length: int  # tokens per prompt (256 for LTX-Video 0.9.7)
    text_dim: int  # width of the text embeddings the transformer takes
    latents_mean: tuple[float, ...]  # per-channel VAE latent statistics, for (de)normalization
    latents_std: tuple[float, ...]
    scaling_factor: float
    decode_timestep_conditioning: bool  # the 0.9.5+ VAE decoder takes a timestep and adds noise


class TextEncoder(Protocol):
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> (text_embeds [B, L, D], attention_mask [B, L]), padded to text_max_length."""
        ...


class Transformer(Protocol):
    def velocity(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        video_coords: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """One denoiser call on packed latents; `timestep` is per token in [0, 1]."""
        ...


@dataclass(frozen=True, eq=False)
class Perturbation:
    """Spatio-temporal guidance (STG): self-attention of `skip_blocks` perturbed for the rows in `rows`."""

    skip_blocks: tuple[int, ...]  # transformer block indices, each in [0, num_blocks)
    rows: torch.Tensor  # bool [B]: the batch rows of the perturbed pass; other rows are left exact


@runtime_checkable
class PerturbableTransformer(Protocol):
    """Optional: a transformer binding that can run STG's perturbed pass (the torch and the Triton BLS
    bindings both do). Pipelines check for it with isinstance and go without STG when a binding does not
    offer it."""

    @property
    def num_blocks(self) -> int:
        """Transformer blocks, the range of `Perturbation.skip_blocks`."""
        ...

    def velocity(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        video_coords: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        perturbation: Perturbation | None = None,
    ) -> torch.Tensor:
        """`Transformer.velocity`, with the rows of `perturbation` perturbed when it is given."""
        ...


class VaeDecoder(Protocol):
    def decode(self, latents: torch.Tensor, decode_timestep: torch.Tensor) -> torch.Tensor:
        """Denormalized latents -> video [B, 3, F, H, W] in [-1, 1]."""
        ...


class VaeEncoder(Protocol):
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video [B, 3, F, H, W] in [-1, 1] -> latents (not normalized), the distribution's mode."""
        ...


class LatentUpsampler(Protocol):
    def upsample(self, latents: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Components:
    """What a pipeline runs on. Optional members are present only where an endpoint needs them."""

    geometry: ModelGeometry
    text_encoder: TextEncoder
    transformer: Transformer
    vae_decoder: VaeDecoder
    vae_encoder: VaeEncoder | None = None
    upsampler: LatentUpsampler | None = None
    # The checkpoint's diffusers scheduler config (scheduler/scheduler_config.json); None: LTX-Video's.
    scheduler_config: Mapping[str, Any] | None = None
