"""Sizes and frame counts: the rules of service/domain/geometry.py and service/contract/frames.py, checked against hand-computed tables."""

from __future__ import annotations

import pytest

from service.contract.frames import frames_to_generate, latent_tokens
from service.contract.frames import latent_frame_count as latent_frames
from service.domain.geometry import (
    DISTILLED_FIRST_PASS_DOWNSCALE,
    LTX2_FIRST_PASS_DOWNSCALE,
    AspectRatio,
    FrameSize,
    Resolution,
    VideoSizePreset,
    audio_samples,
    custom_size,
    duration_seconds,
    frame_size,
    ltx2_preset_size,
    multiscale_sizes,
    size_for,
)


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "expected"),
    [
        # nominal 854x480 / 1280x720, each side rounded down to a multiple of 32
        (Resolution.P480, AspectRatio.R16_9, FrameSize(832, 480)),
        (Resolution.P480, AspectRatio.R9_16, FrameSize(480, 832)),
        (Resolution.P480, AspectRatio.R1_1, FrameSize(480, 480)),
        (Resolution.P720, AspectRatio.R16_9, FrameSize(1280, 704)),
        (Resolution.P720, AspectRatio.R9_16, FrameSize(704, 1280)),
        (Resolution.P720, AspectRatio.R1_1, FrameSize(704, 704)),
    ],
)
def test_named_aspect_ratios_round_each_side_down_to_32(
    resolution: Resolution, aspect_ratio: AspectRatio, expected: FrameSize
) -> None:
    assert frame_size(resolution, aspect_ratio) == expected


@pytest.mark.parametrize(
    ("resolution", "ratio", "expected"),
    [
        (Resolution.P480, 4 / 3, FrameSize(640, 480)),  # 640 is already on the grid
        (Resolution.P720, 4 / 3, FrameSize(960, 704)),
        (Resolution.P720, 3 / 4, FrameSize(704, 960)),
        (Resolution.P720, 1.5, FrameSize(1056, 704)),  # 3:2 photo: 1080 -> 1056
        (Resolution.P480, 5.0, FrameSize(1120, 480)),  # clamped to 21:9: 480 * 21/9 = 1120
        (Resolution.P480, 0.1, FrameSize(480, 1120)),  # clamped to 9:21
    ],
)
def test_size_for_any_ratio_uses_the_same_rounding(
    resolution: Resolution, ratio: float, expected: FrameSize
) -> None:
    assert size_for(resolution, ratio) == expected


@pytest.mark.parametrize("ratio", [0.0, -1.0, float("nan")])
def test_size_for_rejects_ratios_that_are_not_positive(ratio: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        size_for(Resolution.P720, ratio)


def test_auto_aspect_ratio_has_no_ratio_until_media_is_known() -> None:
    with pytest.raises(ValueError, match="auto"):
        frame_size(Resolution.P720, AspectRatio.AUTO)


@pytest.mark.parametrize(
    ("requested", "generated"),
    [(1, 1), (9, 9), (10, 17), (89, 89), (90, 97), (121, 121), (160, 161), (161, 161), (1441, 1441)],
)
def test_frames_to_generate_is_the_next_8k_plus_1(requested: int, generated: int) -> None:
    assert frames_to_generate(requested) == generated


def test_frames_to_generate_never_wastes_a_whole_latent_frame() -> None:
    for requested in range(1, 400):
        generated = frames_to_generate(requested)
        assert (generated - 1) % 8 == 0
        assert requested <= generated < requested + 8


def test_frames_to_generate_rejects_an_empty_video() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        frames_to_generate(0)


def test_latent_frames_and_tokens_follow_the_vae_compression() -> None:
    assert latent_frames(121) == 16  # (121 - 1) / 8 + 1
    assert latent_frames(90) == 13  # generates 97
    assert latent_tokens(FrameSize(1280, 704), 121) == 40 * 22 * 16


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        (VideoSizePreset.LANDSCAPE_16_9, FrameSize(1248, 704)),  # the LTX-2.3 spec's example output
        (VideoSizePreset.PORTRAIT_16_9, FrameSize(704, 1248)),
        (VideoSizePreset.LANDSCAPE_4_3, FrameSize(928, 704)),  # 704 * 4/3 = 938.7 -> nearest 32: 928
        (VideoSizePreset.PORTRAIT_4_3, FrameSize(704, 928)),
        (VideoSizePreset.SQUARE_HD, FrameSize(1024, 1024)),
        (VideoSizePreset.SQUARE, FrameSize(512, 512)),
    ],
)
def test_ltx2_presets(preset: VideoSizePreset, expected: FrameSize) -> None:
    assert ltx2_preset_size(preset) == expected


def test_custom_size_rounds_each_side_down_to_32() -> None:
    assert custom_size(1000, 500) == FrameSize(992, 480)
    assert custom_size(512, 512) == FrameSize(512, 512)
    assert custom_size(20, 20) == FrameSize(32, 32)  # never below one latent pixel


def test_distilled_multiscale_first_pass_is_two_thirds_on_the_grid() -> None:
    sizes = multiscale_sizes(FrameSize(1280, 704), DISTILLED_FIRST_PASS_DOWNSCALE)
    assert sizes.first_pass == FrameSize(832, 448)  # 853 -> 832, 469 -> 448
    assert sizes.second_pass == FrameSize(1664, 896)  # latent upsampler doubles each side
    assert sizes.output == FrameSize(1280, 704)


def test_ltx2_multiscale_first_pass_is_half_on_the_grid() -> None:
    sizes = multiscale_sizes(FrameSize(1248, 704), LTX2_FIRST_PASS_DOWNSCALE)
    assert sizes.first_pass == FrameSize(608, 352)  # 624 -> 608
    assert sizes.second_pass == FrameSize(1216, 704)


def test_duration_and_audio_length() -> None:
    assert duration_seconds(161, 25) == pytest.approx(6.44)  # the LTX-2.3 spec's example output
    assert audio_samples(121, 24.0, 48_000) == 242_000
    with pytest.raises(ValueError, match="positive"):
        duration_seconds(121, 0)
