"""Long videos by the reference method: latent windows, tail tokens, AdaIN, crossfade, tiled decode.

The building blocks are checked against diffusers' port of the reference (`LTXI2VLongMultiPromptPipeline`'s
module functions) on the same tensors; the window loop with a fake sampler whose outputs say which
window they are; the tiled decode against one whole decode on the tiny VAE; the distilled pipeline end
to end with tiny windows.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.pipelines.ltx import pipeline_ltx_i2v_long_multi_prompt as reference

from service.config import ModelConfig
from service.domain.errors import Cancelled
from service.domain.geometry import AspectRatio, Resolution
from service.domain.job_context import JobContext
from service.domain.specs import DistilledMulticonditioningSpec
from service.engines import torch_bindings
from service.pipelines.components import Components
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.distilled import DistilledOptions, generate_distilled
from service.pipelines.latent_windows import Window, decode_in_tiles, fuse, plan_windows
from service.pipelines.long_video import (
    LongVideoOptions,
    WindowRequest,
    sample_in_windows,
    window_generators,
    window_plan,
)

TINY_WINDOWS = LongVideoOptions(
    window_latent_frames=3,
    overlap_latent_frames=2,
    decode_tile_latent_frames=3,
    decode_overlap_latent_frames=2,
)


@pytest.mark.parametrize(("frames", "window", "overlap"), [(16, 16, 3), (31, 16, 3), (181, 16, 3), (7, 3, 2)])
def test_windows_are_the_references(frames: int, window: int, overlap: int) -> None:
    expected = reference.split_into_temporal_windows(frames, window, overlap, 8)
    assert [tuple(w) for w in plan_windows(frames, window, overlap)] == expected


@pytest.mark.parametrize("shared", [2, 3, 5])
def test_fuse_is_the_references_linear_overlap_fuse(shared: int) -> None:
    generator = torch.Generator().manual_seed(shared)
    before, new = (
        torch.randn(1, 4, 9, 2, 3, generator=generator),
        torch.randn(1, 4, 7, 2, 3, generator=generator),
    )
    expected = reference.linear_overlap_fuse(before, new, shared)
    assert torch.allclose(fuse(before, new, shared), expected, atol=1e-6)
    assert fuse(before, new, shared).shape[2] == 9 + 7 - shared


class FakeSampler:
    """Window i's latents are all i (so what went where can be read off), and the requests are kept."""

    def __init__(self) -> None:
        self.requests: list[WindowRequest] = []

    def __call__(self, request: WindowRequest) -> torch.Tensor:
        self.requests.append(request)
        base = torch.full((1, 2, request.window.length, 2, 2), float(request.window_index))
        return base + 0.1 * torch.randn(
            base.shape, generator=torch.Generator().manual_seed(request.window_index)
        )


def _sample(
    sampler: FakeSampler, frames: int, conditions: tuple[ConditioningMedia, ...] = (), **kw: object
) -> torch.Tensor:
    options = LongVideoOptions(window_latent_frames=5, overlap_latent_frames=3)
    windows = window_plan(frames, options)
    settings: dict[str, Any] = {"adain_factor": 0.0, "is_cancelled": lambda: False, **kw}
    return sample_in_windows(
        sampler, windows, window_generators(7, windows), conditions, options=options, **settings
    )


def test_each_window_continues_the_fused_tail_at_strength_half() -> None:
    sampler = FakeSampler()
    fused = _sample(sampler, 11)
    assert fused.shape[2] == 11
    assert [tuple(r.window) for r in sampler.requests] == [(0, 5), (2, 7), (4, 9), (6, 11)]
    assert sampler.requests[0].tail is None
    for request in sampler.requests[1:]:
        assert request.tail is not None and request.tail.strength == 0.5
        assert request.tail.latents.shape[2] == 3  # the overlap
    # Window 1's tail: the last three frames of window 0's output, which the fuse had not touched yet.
    assert sampler.requests[1].tail is not None
    assert torch.allclose(sampler.requests[1].tail.latents.mean(), torch.tensor(0.0), atol=0.1)
    # The final latents: window 0's at the start, the last window's at the end, crossfades between.
    assert fused[:, :, 0].mean().item() == pytest.approx(0.0, abs=0.1)
    assert fused[:, :, -1].mean().item() == pytest.approx(3.0, abs=0.1)


def test_window_seeds_are_the_references_and_window_zero_is_the_requests() -> None:
    windows = [Window(0, 5), Window(2, 7)]
    generators = window_generators(7, windows)
    assert [g.initial_seed() for g in generators] == [7, 9]


def test_adain_pulls_later_windows_toward_the_first() -> None:
    plain, adain = _sample(FakeSampler(), 11), _sample(FakeSampler(), 11, adain_factor=1.0)
    assert plain[:, :, -1].mean().item() == pytest.approx(3.0, abs=0.1)
    assert adain[:, :, -1].mean().item() == pytest.approx(0.0, abs=0.1)  # the first window's mean


def test_conditions_go_to_every_window_holding_their_frames_at_local_positions() -> None:
    sampler = FakeSampler()
    video = ConditioningMedia(pixels=torch.zeros(1, 3, 9, 4, 4), start_frame=20, strength=1.0)  # frames 20-28
    _sample(sampler, 11, (video,))
    # Window pixel spans: [0, 32], [16, 48], [32, 64], [48, 80].
    local = [[(c.start_frame, c.num_frames) for c in r.conditions] for r in sampler.requests]
    assert local == [[(20, 9)], [(4, 9)], [], []]


def test_cancel_between_windows() -> None:
    checks = iter([False, True])
    with pytest.raises(Cancelled):
        _sample(FakeSampler(), 11, is_cancelled=lambda: next(checks))


@pytest.fixture(scope="module")
def components() -> Components:
    return torch_bindings.load_components(ModelConfig())


def test_tiled_decode_covers_every_frame_once_and_is_close_to_one_decode(components: Components) -> None:
    latents = torch.randn(1, 8, 34, 1, 1, generator=torch.Generator().manual_seed(0))  # 265 frames, 32x32
    timestep = torch.tensor([0.05])
    with torch.inference_mode():
        whole = components.vae_decoder.decode(latents, timestep)[0]
        chunks = list(decode_in_tiles(components.vae_decoder, latents, timestep, tile=16, overlap=4))
        hard_cut = torch.cat(
            [c.video for c in decode_in_tiles(components.vae_decoder, latents, timestep, 16, 1)], 1
        )
    assert chunks[0].start == 0
    assert all(a.start + a.video.shape[1] == b.start for a, b in itertools.pairwise(chunks))
    tiled = torch.cat([c.video for c in chunks], dim=1)
    assert tiled.shape == whole.shape == (3, 265, 32, 32)
    # Tiles see less temporal context than one decode; the crossfade keeps them close (measured 6% of the
    # mean magnitude on the tiny VAE), and much closer than hard cuts between tiles.
    error, cut_error = (tiled - whole).abs().mean().item(), (hard_cut - whole).abs().mean().item()
    assert error < 0.1 * whole.abs().mean().item()
    assert error < 0.5 * cut_error


def test_one_tile_is_exactly_one_decode(components: Components) -> None:
    latents = torch.randn(1, 8, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    timestep = torch.tensor([0.05])
    (chunk,) = decode_in_tiles(components.vae_decoder, latents, timestep, tile=16, overlap=3)
    assert torch.equal(chunk.video, components.vae_decoder.decode(latents, timestep)[0])


SPEC = DistilledMulticonditioningSpec(
    prompt="a paper boat drifting down a rain gutter",
    negative_prompt="worst quality",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.R1_1,
    width=64,
    height=64,
    num_frames=49,
    first_pass_num_inference_steps=2,  # one step per pass: the windowing, not the sampling, is tested here
    second_pass_num_inference_steps=2,
    second_pass_skip_initial_steps=1,
    frame_rate=24,
    seed=11,
    temporal_adain_factor=0.5,
    tone_map_compression_ratio=0.0,
    constant_rate_factor=29,
)


def test_distilled_long_video_has_exactly_the_requested_frames_and_is_reproducible(
    components: Components,
) -> None:
    options = DistilledOptions(long_video=TINY_WINDOWS)
    video = generate_distilled(components, SPEC, (), JobContext.create(), options)
    assert video.frames.shape == (49, 64, 64, 3)
    again = generate_distilled(components, SPEC, (), JobContext.create(), options)
    assert np.array_equal(np.asarray(video.frames), np.asarray(again.frames))
    reversed_spec = dataclasses.replace(SPEC, reverse_video=True)
    backward = generate_distilled(components, reversed_spec, (), JobContext.create(), options)
    assert np.array_equal(np.asarray(backward.frames), np.asarray(video.frames)[::-1])
