"""The seams between pipeline math and the models that run it.

A pipeline takes its components behind these Protocols. `LocalEngine` binds them to torch modules in
this process; the Triton model `ltx_pipeline` binds them to BLS calls on the component models (TensorRT
plans on a GPU). One pipeline, two bindings. All tensors are torch tensors on the pipeline's device.

Tensor names used here are the names used everywhere (ONNX graphs, TensorRT profiles, config.pbtxt):
the component declarations of service/contract/components.py, which also define `Perturbation` (STG's
two optional transformer inputs). `ModelGeometry` is the contract's too; both are re-exported here because
every pipeline needs them with the Protocols.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from service.contract.components import Perturbation
from service.contract.geometry import ModelGeometry

__all__ = [
    "Components",
    "LatentUpsampler",
    "ModelGeometry",
    "PerturbableTransformer",
    "Perturbation",
    "TextEncoder",
    "Transformer",
    "VaeDecoder",
    "VaeEncoder",
]


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
