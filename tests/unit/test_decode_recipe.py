"""Issue 10, items 7, 8 and 11 (uint8): how the LTX-Video pipelines turn final latents into frames, as
upstream (`LTXVideoPipeline`, `LTXMultiScalePipeline`, `inference.py`) does. Expected values are computed
here from upstream's formulas, independently of the code under test:

- 8: decode noise is mixed in NORMALIZED latent space, `latents * (1 - s) + noise * s`, then the latents
  are denormalized (`latents * std / scaling_factor + mean`) for the decoder (diffusers mixes after
  denormalizing);
- 7: the distilled output is clamped to [-1, 1] first, then resized bilinearly to the output size;
- 11: uint8 frames are truncated, `(x / 2 + 0.5).clamp(0, 1) * 255` cast down (diffusers rounds).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from service.config import ModelConfig
from service.domain.geometry import FrameSize
from service.engines import torch_bindings
from service.models import loading
from service.pipelines.distilled import to_output_frames
from service.pipelines.latents import latent_shape, pack
from service.pipelines.text_to_video import DecodeOptions, decode_chunks, to_uint8_frames
from tests.unit.test_conditioning_resize import numpy_bilinear
from tests.unit.test_parity_dev import RecordingDecoder


def _upstream_uint8(video: np.ndarray) -> np.ndarray:
    """inference.py: `(images * 255).astype(np.uint8)` of `(x / 2 + 0.5).clamp(0, 1)` (truncation)."""
    return (np.clip(video / 2 + 0.5, 0, 1) * 255).astype(np.uint8)


def test_dev_decode_noise_is_mixed_in_normalized_space() -> None:
    components = torch_bindings.bind_components(loading.load_models(ModelConfig()))
    geometry = components.geometry
    assert geometry.decode_timestep_conditioning
    shape = latent_shape(geometry, 1, 9, 64, 64)
    latents = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(1))
    recorder = RecordingDecoder(components.vae_decoder)
    components = dataclasses.replace(components, vae_decoder=recorder)
    scale = 0.25
    chunks = decode_chunks(
        components,
        pack(latents, geometry),
        shape,
        torch.Generator().manual_seed(2),
        DecodeOptions(0.05, scale),
    )
    assert len(list(chunks)) == 1  # 9 frames: one tile
    (seen,) = recorder.latents
    noise = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(2))
    mean = torch.tensor(geometry.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(geometry.latents_std).view(1, -1, 1, 1, 1)
    mixed = latents * (1 - scale) + noise * scale
    expected = mixed * std / geometry.scaling_factor + mean
    assert torch.allclose(seen, expected, atol=1e-5)
    vae_space = (latents * std / geometry.scaling_factor + mean) * (1 - scale) + noise * scale  # diffusers
    assert (seen - vae_space).abs().max() > 1e-2


def test_distilled_frames_are_clamped_then_resized_then_truncated() -> None:
    generator = torch.Generator().manual_seed(3)
    video = torch.randn(1, 3, 2, 24, 36, generator=generator) * 1.5  # a third of the values outside [-1, 1]
    source = video.clone()  # to_output_frames converts in place
    frames = to_output_frames(video, FrameSize(20, 14))
    video = source
    clamped = np.clip(video[0].permute(1, 0, 2, 3).double().numpy(), -1, 1)  # [F, 3, H, W]
    expected = _upstream_uint8(numpy_bilinear(clamped, 14, 20)).transpose(0, 2, 3, 1)
    assert frames.shape == expected.shape == (2, 14, 20, 3)
    difference = np.abs(frames.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.01  # float32 against float64 at the level edges
    resized_first = _upstream_uint8(
        np.clip(numpy_bilinear(video[0].permute(1, 0, 2, 3).double().numpy(), 14, 20), -1, 1)
    )
    assert np.abs(resized_first.transpose(0, 2, 3, 1).astype(int) - frames.astype(int)).mean() > 1


def test_dev_frames_are_truncated_not_rounded() -> None:
    levels = torch.arange(256, dtype=torch.float32)
    video = ((levels + 0.75) / 127.5 - 1).view(1, 1, 1, 16, 16).repeat(1, 3, 1, 1, 1)  # 0.75 above each level
    expected = _upstream_uint8(video[0].permute(1, 2, 3, 0).double().numpy())
    frames = to_uint8_frames(video)  # converts in place (a decoded clip is gigabytes in float)
    assert np.array_equal(frames, expected)
    assert np.array_equal(frames[0, :, :, 0].reshape(-1), np.arange(256))  # rounding would give +1
