"""Long conditioning videos are VAE-encoded in temporal tiles (issue 8: memory bounded by the output, not
the inputs): the result is diffusers' own temporal tiled encode at the same tile sizes, a video of one
tile is encoded whole as before, and the encoder's peak memory stays at one tile's."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from bench.torch_memory import LiveTensorMeter
from service.config import ModelConfig
from service.engines import torch_bindings
from service.pipelines.components import Components
from service.pipelines.conditioning import ENCODE_TILE_FRAMES, ENCODE_TILE_STRIDE, encode_media, unit_pixels
from service.pipelines.latents import normalize

CPU = torch.device("cpu")
ONE_TILE = ENCODE_TILE_FRAMES + 1  # 33 frames


@pytest.fixture(scope="module")
def components() -> Components:
    return torch_bindings.load_components(ModelConfig())


def _video(frames: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, frames, 64, 64), generator=generator, dtype=torch.uint8)


def _diffusers_tiled(components: Components, pixels: torch.Tensor) -> torch.Tensor:
    """The reference: diffusers' AutoencoderKLLTXVideo._temporal_tiled_encode at our tile sizes."""
    vae = components.vae_encoder.module.vae  # type: ignore[union-attr]
    vae.tile_sample_min_num_frames, vae.tile_sample_stride_num_frames = ENCODE_TILE_FRAMES, ENCODE_TILE_STRIDE
    with torch.inference_mode():
        moments = vae._temporal_tiled_encode(unit_pixels(pixels))
    return normalize(DiagonalGaussianDistribution(moments).mode(), components.geometry)


@pytest.mark.parametrize("frames", [57, 97, 105])  # 2, 4 and 5 tiles (the last short)
def test_a_long_video_is_encoded_as_diffusers_tiles_it(components: Components, frames: int) -> None:
    pixels = _video(frames)
    ours = encode_media(components, pixels, CPU)
    expected = _diffusers_tiled(components, pixels)
    assert ours.shape == expected.shape == (1, 8, (frames - 1) // 8 + 1, 2, 2)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)
    whole = normalize(components.vae_encoder.encode(unit_pixels(pixels)), components.geometry)  # type: ignore[union-attr]
    assert (ours - whole).abs().max() > 1e-3  # tiling is really in effect: not the whole encode


def test_a_video_of_one_tile_is_encoded_whole(components: Components) -> None:
    pixels = _video(ONE_TILE)
    whole = normalize(components.vae_encoder.encode(unit_pixels(pixels)), components.geometry)  # type: ignore[union-attr]
    assert torch.equal(encode_media(components, pixels, CPU), whole)


def _peak_bytes(run: object) -> int:
    meter = LiveTensorMeter()
    with meter:
        run()  # type: ignore[operator]
    return meter.peak_bytes


def test_encoder_memory_stays_at_one_tile(components: Components) -> None:
    one_tile, long = _video(ONE_TILE), _video(4 * ENCODE_TILE_STRIDE + 1)
    peak_tile = _peak_bytes(lambda: encode_media(components, one_tile, CPU))
    peak_long = _peak_bytes(lambda: encode_media(components, long, CPU))
    peak_whole = _peak_bytes(lambda: components.vae_encoder.encode(unit_pixels(long)))  # type: ignore[union-attr]
    assert peak_whole > 2 * peak_tile  # the meter sees a whole encode of the long video grow
    assert peak_long < 1.3 * peak_tile
