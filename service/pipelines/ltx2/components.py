"""What the LTX-2.3 pipeline needs from its models (service.models.ltx2.Ltx2Models provides it)."""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Ltx2Models(Protocol):
    transformer: Any  # diffusers LTX2VideoTransformer3DModel
    connectors: Any  # LTX2TextConnectors
    text_encoder: Any  # Gemma-3
    tokenizer: Any
    vae: Any  # AutoencoderKLLTX2Video
    audio_vae: Any  # AutoencoderKLLTX2Audio
    vocoder: Any  # LTX2VocoderWithBWE
    upsampler: Any | None  # LTX2LatentUpsamplerModel
    text_max_length: int
    stg_blocks: tuple[int, ...]

    @property
    def device(self) -> torch.device: ...
