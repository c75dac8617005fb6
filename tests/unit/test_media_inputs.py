"""Conditioning media of a spec: auto size, decoding limits, safety, CRF, extend input (data URIs)."""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Sequence

import av
import numpy as np
import pytest
import torch
from PIL import Image

from service.domain.errors import ErrorType, JobError
from service.domain.geometry import AspectRatio, Resolution
from service.domain.specs import (
    AutoSizedSpec,
    DistilledMulticonditioningSpec,
    ExtendSpec,
    ImageConditionSpec,
    MulticonditioningSpec,
    VideoConditionSpec,
)
from service.inputs.media import PreparedInputs, prepare_conditioning_inputs, prepare_extend_input
from service.media.fetch import FetchLimits
from service.pipelines.conditioning import unit_pixels
from service.safety.checker import SafetyChecker

LIMITS = FetchLimits()


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png_uri(width: int, height: int, level: int = 128) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (level, level, level)).save(buffer, format="PNG")
    return _data_uri(buffer.getvalue(), "image/png")


def mp4_uri(count: int, width: int = 64, height: int = 32, fps: int = 24) -> str:
    """Frame k is a flat grey of level 5k + 10 (identifiable after decoding)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "1", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(count):
            pixels = np.full((height, width, 3), 5 * k + 10, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return _data_uri(buffer.getvalue(), "video/mp4")


SPEC = MulticonditioningSpec(
    prompt="p",
    negative_prompt="n",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.AUTO,
    width=0,
    height=0,
    num_frames=17,
    num_inference_steps=2,
    frame_rate=24,
    seed=0,
)


class FlagScorer:
    """Scores 1.0 (flagged) for images whose mean level is at least `min_level`, else 0."""

    def __init__(self, min_level: float = 0.0) -> None:
        self.min_level = min_level
        self.seen = 0

    def scores(self, images: Sequence[np.ndarray]) -> list[float]:
        self.seen += len(images)
        return [1.0 if image.mean() >= self.min_level else 0.0 for image in images]


def _checker(scorer: FlagScorer) -> SafetyChecker:
    return SafetyChecker(scorer, threshold=0.5, frames_to_sample=4)


def _prepare(spec: AutoSizedSpec, safety: SafetyChecker | None = None) -> PreparedInputs:
    return prepare_conditioning_inputs(spec, LIMITS, safety, lambda _: None)


def test_auto_size_follows_the_first_image_even_when_a_video_is_listed() -> None:
    spec = dataclasses.replace(
        SPEC,
        images=(ImageConditionSpec(png_uri(100, 200)), ImageConditionSpec(png_uri(300, 100), 8)),
        videos=(VideoConditionSpec(mp4_uri(9, 64, 32)),),
    )
    prepared = _prepare(spec)
    # 480p at 1:2: the short side 480 is the width, the height 960; both already multiples of 32.
    assert (prepared.spec.width, prepared.spec.height) == (480, 960)
    assert [m.pixels.shape[-2:] for m in prepared.media] == [(960, 480)] * 3
    assert [m.start_frame for m in prepared.media] == [0, 8, 0]


def test_auto_size_follows_the_first_video_without_images() -> None:
    prepared = _prepare(dataclasses.replace(SPEC, videos=(VideoConditionSpec(mp4_uri(9, 64, 32)),)))
    # 2:1 at 480p: 960x480.
    assert (prepared.spec.width, prepared.spec.height) == (960, 480)


def test_named_aspect_ratio_is_kept() -> None:
    image = ImageConditionSpec(png_uri(90, 30))
    spec = dataclasses.replace(SPEC, aspect_ratio=AspectRatio.R1_1, width=64, height=64, images=(image,))
    prepared = _prepare(spec)
    assert (prepared.spec.width, prepared.spec.height) == (64, 64)
    assert prepared.media[0].pixels.shape == (1, 3, 1, 64, 64)


@pytest.mark.parametrize(
    ("frames", "start", "max_num_frames", "expected"),
    [
        (30, 0, None, 17),  # trimmed to the 17-frame clip
        (30, 8, None, 9),  # 17 - 8 = 9 frames left after the start frame
        (30, 0, 12, 9),  # at most 12, then 8k + 1
        (6, 0, None, 1),  # 6 frames: the longest legal length is 1
    ],
)
def test_video_frames_are_limited_and_legal(
    frames: int, start: int, max_num_frames: int | None, expected: int
) -> None:
    video = VideoConditionSpec(mp4_uri(frames), start_frame=start, max_num_frames=max_num_frames)
    spec = dataclasses.replace(SPEC, aspect_ratio=AspectRatio.R1_1, width=64, height=64, videos=(video,))
    (media,) = _prepare(spec).media
    assert media.num_frames == expected


def test_target_fps_resamples_the_video() -> None:
    # 24 fps -> 12 fps keeps every other frame: source frames 0, 2, 4, ... (levels 10, 20, 30, ...).
    video = VideoConditionSpec(mp4_uri(30), target_fps=12)
    spec = dataclasses.replace(SPEC, aspect_ratio=AspectRatio.R1_1, width=64, height=64, videos=(video,))
    (media,) = _prepare(spec).media
    assert media.num_frames == 9  # 15 frames at 12 fps, of which 9 is the longest legal length
    assert media.pixels.dtype == torch.uint8  # videos are kept as uint8: a quarter of float32 (issue 8)
    levels = ((unit_pixels(media.pixels)[0, :, :3].mean(dim=(0, 2, 3)) + 1) * 127.5).tolist()
    assert levels == pytest.approx([10, 20, 30], abs=3)


def test_flagged_input_image_fails_naming_its_field() -> None:
    spec = dataclasses.replace(
        SPEC, images=(ImageConditionSpec(png_uri(64, 64, 20)), ImageConditionSpec(png_uri(64, 64, 200), 8))
    )
    with pytest.raises(JobError) as caught:
        _prepare(spec, _checker(FlagScorer(min_level=100)))
    assert caught.value.error_type is ErrorType.CONTENT_POLICY_VIOLATION
    assert caught.value.message.startswith("images[1].image_url")


def test_flagged_input_video_fails_naming_its_field() -> None:
    spec = dataclasses.replace(SPEC, videos=(VideoConditionSpec(mp4_uri(9)),))
    with pytest.raises(JobError) as caught:
        _prepare(spec, _checker(FlagScorer()))
    assert caught.value.error_type is ErrorType.CONTENT_POLICY_VIOLATION
    assert "videos[0].video_url" in caught.value.message


def test_unfetchable_input_fails_naming_its_field() -> None:
    spec = dataclasses.replace(SPEC, videos=(VideoConditionSpec("data:video/mp4;base64,AAAA"),))
    with pytest.raises(JobError) as caught:
        _prepare(spec)
    assert caught.value.error_type is ErrorType.INPUT_FETCH_FAILED
    assert caught.value.message.startswith("videos[0].video_url")


def _distilled(crf: int) -> DistilledMulticonditioningSpec:
    return DistilledMulticonditioningSpec(
        prompt="p", negative_prompt="n", resolution=Resolution.P480, aspect_ratio=AspectRatio.R1_1,
        width=64, height=64, num_frames=9, first_pass_num_inference_steps=2,
        second_pass_num_inference_steps=2, second_pass_skip_initial_steps=1, frame_rate=24, seed=0,
        temporal_adain_factor=0.5, tone_map_compression_ratio=0.0, constant_rate_factor=crf,
        images=(ImageConditionSpec(_noise_png()),),
    )  # fmt: skip


def _noise_png() -> str:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return _data_uri(buffer.getvalue(), "image/png")


def test_constant_rate_factor_recompresses_the_distilled_inputs() -> None:
    raw = unit_pixels(_prepare(_distilled(0)).media[0].pixels)
    compressed = unit_pixels(_prepare(_distilled(40)).media[0].pixels)
    assert raw.shape == compressed.shape
    # Noise does not survive CRF 40: the mean error is many 8-bit steps (2/255 each).
    assert (raw - compressed).abs().mean() > 10 * 2 / 255


def _extend_spec(frames: int, start: int, **video: object) -> ExtendSpec:
    return ExtendSpec(
        prompt="p", negative_prompt="n", width=64, height=32, num_frames=25, frame_rate=24,
        num_inference_steps=2, seed=0,
        video=VideoConditionSpec(mp4_uri(frames), start_frame=start, **video),  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("frames", "start", "video", "expected"),
    [(20, 12, {}, 12), (8, 12, {}, 8), (20, 12, {"max_num_frames": 5}, 5), (20, 0, {}, 0)],
)
def test_extend_keeps_up_to_start_frame_num_input_frames(
    frames: int, start: int, video: dict[str, int], expected: int
) -> None:
    kept = prepare_extend_input(_extend_spec(frames, start, **video), LIMITS, None, lambda _: None)
    assert kept.shape == (3, expected, 32, 64)
    if expected:  # frame k of the input is grey level 5k + 10, in order
        levels = ((kept.mean(dim=(0, 2, 3)) + 1) * 127.5).tolist()
        assert levels == pytest.approx([5 * k + 10 for k in range(expected)], abs=3)


def test_extend_input_is_safety_checked() -> None:
    with pytest.raises(JobError) as caught:
        prepare_extend_input(_extend_spec(20, 12), LIMITS, _checker(FlagScorer()), lambda _: None)
    assert caught.value.error_type is ErrorType.CONTENT_POLICY_VIOLATION
    assert caught.value.message.startswith("video.video_url")


def test_video_pixels_are_uint8_and_convert_to_the_same_values() -> None:
    (media,) = _prepare(dataclasses.replace(SPEC, videos=(VideoConditionSpec(mp4_uri(12)),))).media
    assert media.pixels.dtype == torch.uint8
    unit = unit_pixels(media.pixels)
    assert unit.dtype == torch.float32 and unit.min() >= -1 and unit.max() <= 1
    assert torch.equal(((unit + 1) * 127.5).round().to(torch.uint8), media.pixels)


def test_pixels_are_in_range_and_float() -> None:
    (media,) = _prepare(dataclasses.replace(SPEC, images=(ImageConditionSpec(png_uri(64, 64)),))).media
    assert media.pixels.dtype == torch.float32
    assert media.pixels.min() >= -1 and media.pixels.max() <= 1


def test_inputs_whose_decoded_frames_exceed_the_budget_fail_before_decoding() -> None:
    video = VideoConditionSpec(mp4_uri(12))
    spec = dataclasses.replace(
        SPEC, aspect_ratio=AspectRatio.R1_1, width=64, height=64, videos=(video, video)
    )
    limits = dataclasses.replace(LIMITS, max_decoded_bytes=64 * 64 * 3 * 20)  # room for 20 frames, not 2 x 17
    with pytest.raises(JobError) as caught:
        prepare_conditioning_inputs(spec, limits, None, lambda _: None)
    assert caught.value.error_type is ErrorType.INPUT_FETCH_FAILED
    # The second video is the one that does not fit.
    assert (
        caught.value.message.startswith("videos[1].video_url: ")
        and "media.max_decoded_bytes" in caught.value.message
    )
