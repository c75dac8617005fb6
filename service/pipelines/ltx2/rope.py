"""RoPE coordinates of the LTX-2.3 transformer's video and audio tokens, from diffusers' own
`LTX2AudioVideoRotaryPosEmbed.prepare_*_coords` built from the model's geometry (no weights), so that the
in-process and the Triton bindings send the transformer the coordinates it would compute itself."""

from __future__ import annotations

from functools import lru_cache

import torch
from diffusers.models.transformers.transformer_ltx2 import LTX2AudioVideoRotaryPosEmbed

from service.contract.ltx2_components import Ltx2Geometry
from service.pipelines.ltx2.components import RopeCoords
from service.pipelines.ltx2.shapes import LatentShape


@lru_cache(maxsize=8)
def _ropes(geometry: Ltx2Geometry) -> tuple[LTX2AudioVideoRotaryPosEmbed, LTX2AudioVideoRotaryPosEmbed]:
    time, space = geometry.temporal_compression, geometry.spatial_compression
    video = LTX2AudioVideoRotaryPosEmbed(
        dim=2,  # coordinates do not depend on the embedding width
        patch_size=geometry.patch_size,
        patch_size_t=geometry.patch_size_t,
        scale_factors=(time, space, space),
        causal_offset=geometry.rope_causal_offset,
        modality="video",
    )
    audio = LTX2AudioVideoRotaryPosEmbed(
        dim=2,
        patch_size_t=1,
        sampling_rate=geometry.audio_sample_rate,
        hop_length=geometry.audio_hop_length,
        scale_factors=(geometry.audio_temporal_compression,),
        causal_offset=geometry.rope_causal_offset,
        modality="audio",
    )
    return video, audio


def rope_coords(geometry: Ltx2Geometry, shape: LatentShape, batch: int, device: torch.device) -> RopeCoords:
    video, audio = _ropes(geometry)
    return RopeCoords(
        video.prepare_video_coords(batch, shape.frames, shape.height, shape.width, device, fps=shape.fps),
        audio.prepare_audio_coords(batch, shape.audio_frames, device),
    )
