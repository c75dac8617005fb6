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
    LatentGridPadding,
    Resolution,
    VideoSizePreset,
    audio_samples,
    custom_size,
    duration_seconds,
    frame_size,
    ltx2_preset_size,
    multiscale_sizes,
    padded_to_latent_grid,
    size_for,
)


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "expected"),
    [
        # the nominal frames: 480 * 16 / 9 = 853.3 -> 854 (even)
        (Resolution.P480, AspectRatio.R16_9, FrameSize(854, 480)),
        (Resolution.P480, AspectRatio.R9_16, FrameSize(480, 854)),
        (Resolution.P480, AspectRatio.R1_1, FrameSize(480, 480)),
        (Resolution.P720, AspectRatio.R16_9, FrameSize(1280, 720)),
        (Resolution.P720, AspectRatio.R9_16, FrameSize(720, 1280)),
        (Resolution.P720, AspectRatio.R1_1, FrameSize(720, 720)),
    ],
)
def test_named_aspect_ratios_give_the_nominal_frame(
    resolution: Resolution, aspect_ratio: AspectRatio, expected: FrameSize
) -> None:
    assert frame_size(resolution, aspect_ratio) == expected


@pytest.mark.parametrize(
    ("resolution", "ratio", "expected"),
    [
        (Resolution.P480, 4 / 3, FrameSize(640, 480)),
        (Resolution.P720, 4 / 3, FrameSize(960, 720)),
        (Resolution.P720, 3 / 4, FrameSize(720, 960)),
        (Resolution.P720, 1.5, FrameSize(1080, 720)),  # 3:2 photo
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


@pytest.mark.parametrize(
    ("side", "first_pass"),
    # upstream LTXMultiScalePipeline: int(side * 0.6666666) floored to 32
    [(480, 288), (704, 448), (1280, 832), (832, 544), (864, 544), (96, 32)],
)
def test_distilled_first_pass_side_is_upstreams(side: int, first_pass: int) -> None:
    sizes = multiscale_sizes(FrameSize(side, side), DISTILLED_FIRST_PASS_DOWNSCALE)
    assert sizes.first_pass == FrameSize(first_pass, first_pass)


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


@pytest.mark.parametrize(
    ("output", "generated", "padding"),
    [
        # upstream inference.py: pad up to 32, half before (rounded down), the rest after
        (FrameSize(854, 480), FrameSize(864, 480), (5, 5, 0, 0)),
        (FrameSize(1280, 720), FrameSize(1280, 736), (0, 0, 8, 8)),
        (FrameSize(720, 720), FrameSize(736, 736), (8, 8, 8, 8)),
        (FrameSize(1080, 720), FrameSize(1088, 736), (4, 4, 8, 8)),
        (FrameSize(480, 480), FrameSize(480, 480), (0, 0, 0, 0)),
        (FrameSize(70, 33), FrameSize(96, 64), (13, 13, 15, 16)),
    ],
)
def test_the_model_generates_the_frame_padded_up_to_32(
    output: FrameSize, generated: FrameSize, padding: tuple[int, int, int, int]
) -> None:
    assert padded_to_latent_grid(output) == generated
    assert tuple(LatentGridPadding.of(output)) == padding
