"""Latent shapes, packing, rope coordinates and the sigma schedule of the LTX-Video pipeline."""

from __future__ import annotations

import pytest
import torch

from service.config import ModelConfig
from service.contract.frames import frames_to_generate
from service.engines import torch_bindings
from service.pipelines import latents
from service.pipelines.components import ModelGeometry
from service.pipelines.sampling import LTX_VIDEO_SCHEDULER_CONFIG, make_scheduler, set_schedule


@pytest.fixture(scope="module")
def geometry() -> ModelGeometry:
    return torch_bindings.load_components(ModelConfig()).geometry


@pytest.mark.parametrize(("requested", "generated"), [(1, 1), (4, 9), (9, 9), (10, 17), (89, 89), (90, 97)])
def test_generated_frame_count_is_the_next_8k_plus_1(requested: int, generated: int) -> None:
    assert frames_to_generate(requested, 8) == generated


def test_latent_shape_of_the_720p_example(geometry: ModelGeometry) -> None:
    shape = latents.latent_shape(geometry, 1, 89, 704, 1280)
    assert (shape.frames, shape.height, shape.width) == (12, 22, 40)
    assert shape.num_tokens == 12 * 22 * 40


def test_latent_shape_refuses_sizes_the_vae_cannot_take(geometry: ModelGeometry) -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        latents.latent_shape(geometry, 1, 9, 70, 64)
    with pytest.raises(ValueError, match="8k\\+1"):
        latents.latent_shape(geometry, 1, 10, 64, 64)


def test_pack_then_unpack_is_the_identity(geometry: ModelGeometry) -> None:
    shape = latents.latent_shape(geometry, 2, 17, 64, 96)
    grid = torch.randn(tuple(shape))
    tokens = latents.pack(grid, geometry)
    assert tokens.shape == (2, shape.num_tokens, geometry.latent_channels)
    assert torch.equal(latents.unpack(tokens, shape, geometry), grid)


def test_denormalize_inverts_normalize(geometry: ModelGeometry) -> None:
    grid = torch.randn(1, geometry.latent_channels, 2, 2, 2)
    assert torch.allclose(latents.denormalize(latents.normalize(grid, geometry), geometry), grid, atol=1e-6)


def test_video_coords_are_pixel_positions_and_seconds(geometry: ModelGeometry) -> None:
    shape = latents.latent_shape(geometry, 1, 17, 64, 96)  # 3 x 2 x 3 latent grid
    coords = latents.video_coords(shape, geometry, frame_rate=25, device=torch.device("cpu"))
    assert coords.shape == (1, 3, shape.num_tokens)
    frame_times = sorted(set(coords[0, 0].tolist()))
    # Causal VAE: latent frame 0 is pixel frame 0, latent frame k ends at pixel frame 8k (start 8k - 7).
    assert frame_times == pytest.approx([0.0, 1 / 25, 9 / 25])
    assert sorted(set(coords[0, 1].tolist())) == [0.0, 32.0]
    assert sorted(set(coords[0, 2].tolist())) == [0.0, 32.0, 64.0]


def test_schedule_descends_from_one_and_shifts_up_with_more_tokens() -> None:
    small = set_schedule(make_scheduler(None), 30, num_tokens=64, device=torch.device("cpu"))
    large = set_schedule(make_scheduler(None), 30, num_tokens=12 * 22 * 40, device=torch.device("cpu"))
    assert small[0].item() == pytest.approx(1.0)
    assert torch.all(small[1:] < small[:-1])
    assert len(small) == 30
    # A longer token sequence spends more steps at high noise (the resolution-dependent shift); both are
    # stretched to end at the configured terminal sigma.
    assert torch.all(large[1:-1] > small[1:-1])
    assert small[-1].item() == pytest.approx(LTX_VIDEO_SCHEDULER_CONFIG["shift_terminal"])
    assert large[-1].item() == pytest.approx(LTX_VIDEO_SCHEDULER_CONFIG["shift_terminal"])
