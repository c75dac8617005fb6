"""The seams between the LTX-2.3 sampling loop and the models that run it.

The pipeline calls only these Protocols. In process they are bound to the torch adapters
(service/models/ltx2_bindings.py); inside Triton's `ltx_pipeline` to BLS calls on the component models
(service/engines/triton_backend/ltx2_bls.py). Tensor names and units are the declarations' of
service/contract/ltx2_components.py: latents cross every boundary normalized, packed for the transformer
([B, tokens, C]) and the audio decoder, unpacked ([B, C, f, h, w]) for the video decoder and the upsampler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch

from service.contract.ltx2_components import Ltx2Geometry, Ltx2Perturbation, Ltx2TextContext

__all__ = [
    "Ltx2AudioDecoder",
    "Ltx2Components",
    "Ltx2Geometry",
    "Ltx2LatentUpsampler",
    "Ltx2Perturbation",
    "Ltx2TextContext",
    "Ltx2TextEncoder",
    "Ltx2Transformer",
    "Ltx2VaeDecoder",
    "RopeCoords",
]


class RopeCoords(NamedTuple):
    """RoPE patch bounds: video [B, 3, N, 2] (frame time in seconds, pixel rows, columns), audio [B, 1, Na, 2]."""

    video: torch.Tensor
    audio: torch.Tensor


class Ltx2TextEncoder(Protocol):
    def encode(self, prompt: str) -> Ltx2TextContext:
        """One prompt -> Gemma-3 -> the text connectors' video and audio contexts and their mask ([1, L, ...])."""
        ...


class Ltx2Transformer(Protocol):
    @property
    def num_blocks(self) -> int: ...

    def velocity(
        self,
        latents: tuple[torch.Tensor, torch.Tensor],
        context: Ltx2TextContext,
        timestep: torch.Tensor,
        coords: RopeCoords,
        perturbation: Ltx2Perturbation | None = None,
        isolate_modalities: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(video [B, N, C], audio [B, Na, Ca]) packed latents, batched contexts, timestep [B] (sigma * 1000)
        -> (video, audio) velocities in fp32."""
        ...


class Ltx2VaeDecoder(Protocol):
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized latents [1, C, f, h, w] -> video [1, 3, F, H, W] in [-1, 1]."""
        ...


class Ltx2AudioDecoder(Protocol):
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized packed audio latents [1, Na, Ca] -> waveform [1, channels, samples] in [-1, 1]."""
        ...


class Ltx2LatentUpsampler(Protocol):
    def upsample(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized latents [1, C, f, h, w] -> normalized [1, C, f, 2h, 2w]."""
        ...


@dataclass
class Ltx2Components:
    """What the LTX-2.3 pipeline runs on."""

    geometry: Ltx2Geometry
    text_encoder: Ltx2TextEncoder
    transformer: Ltx2Transformer
    vae_decoder: Ltx2VaeDecoder
    audio_decoder: Ltx2AudioDecoder
    upsampler: Ltx2LatentUpsampler | None = None
    # The per-stage LoRA hooks the pipeline's stage switch calls (the registry's LTX-2.3 entry, in
    # service/engines/endpoint_pipelines.py), each None where the bindings have no use for it:
    # - Where the bindings own the LoRA adapters (Triton: the component models keep the distilled LoRA and
    #   take its scale per call), it sets the distilled LoRA's scale through `set_distilled_scale`.
    # - In process the job's adapters (its own LoRAs, the camera and distilled ones) are peft adapters on
    #   the shared modules: the engine binds a copy per job whose `set_stage_adapters(stage)` mixes them
    #   at that stage's scales (service/engines/ltx2_local.py).
    set_distilled_scale: Callable[[float], None] | None = None
    set_stage_adapters: Callable[[int], None] | None = None
