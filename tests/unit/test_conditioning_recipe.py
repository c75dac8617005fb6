"""Issue 10, item 4: conditioning frames are blurred (3x3 Gaussian, sigma 1) and re-compressed (CRF 29)
as upstream `ltx_video/inference.py` does, on every LTX-Video endpoint that takes media.

The expected values come from an independent implementation of upstream's steps written here: scipy's
Gaussian filter (sigma 1, radius 1, mirrored borders = torchvision's reflect padding) and upstream's
`crf_compressor` (each frame its own one-frame libx264 MP4, preset veryfast, yuv420p), applied to the
decoded input. The service's pixels must match it within one uint8 level, and must differ from the
un-preprocessed decode by far more (so the test fails without the preprocessing).
"""

from __future__ import annotations

import base64
import io

import av
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from service.domain.geometry import AspectRatio, Resolution
from service.domain.specs import (
    DistilledMulticonditioningSpec,
    ExtendSpec,
    ImageConditionSpec,
    MulticonditioningSpec,
    VideoConditionSpec,
)
from service.inputs.conditioning_recipe import blur_video
from service.inputs.prepare import prepare_endpoint_inputs
from service.media.decode import decode_image
from service.media.fetch import FetchLimits

WIDTH, HEIGHT = 64, 64


def _textured_frame(seed: int) -> np.ndarray:
    """Smooth colour plus fine detail: what the blur and the codec both visibly change."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([128 + 80 * np.sin(x / 9 + c + seed) * np.cos(y / 7) for c in range(3)], axis=-1)
    detail = rng.integers(-40, 41, (HEIGHT, WIDTH, 1))
    return np.clip(base + detail, 0, 255).astype(np.uint8)


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _png_uri(frame: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return _uri(buffer.getvalue(), "image/png")


def _lossless_mp4_uri(frames: list[np.ndarray]) -> str:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264rgb", rate=24, options={"crf": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "rgb24"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return _uri(buffer.getvalue(), "video/mp4")


def _upstream_blur(frame: np.ndarray) -> np.ndarray:
    """TVF.gaussian_blur(kernel_size=3, sigma=1.0) on one uint8 frame [H, W, 3], rounded to uint8."""
    blurred = gaussian_filter(frame.astype(np.float64), sigma=(1.0, 1.0, 0.0), truncate=1.0, mode="mirror")
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8)


def _upstream_crf(frame: np.ndarray, crf: int) -> np.ndarray:
    """crf_compressor.compress: the frame alone as a one-frame MP4 at `crf`, decoded back."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1, options={"crf": str(crf), "preset": "veryfast"})
        stream.height, stream.width = frame.shape[:2]
        av_frame = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
        container.mux(stream.encode(av_frame))
        container.mux(stream.encode())
    with av.open(io.BytesIO(buffer.getvalue()), mode="r") as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def _upstream(frame: np.ndarray, crf: int) -> np.ndarray:
    blurred = _upstream_blur(frame)
    return blurred if crf == 0 else _upstream_crf(blurred, crf)


def _levels(pixels: torch.Tensor) -> np.ndarray:
    """Prepared pixels [1, 3, F, H, W] (float in [-1, 1] or uint8) -> uint8 frames [F, H, W, 3] as int."""
    if pixels.dtype.is_floating_point:
        pixels = ((pixels + 1) * 127.5).round()
    return pixels[0].permute(1, 2, 3, 0).numpy().astype(np.int32)


def _decoded(frame: np.ndarray) -> np.ndarray:
    """The frame as the service decodes it at the output size (here: its own size, so unchanged)."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return _levels(decode_image(buffer.getvalue(), width=WIDTH, height=HEIGHT, field="f")[None])[0]


def _multiconditioning(
    images: tuple[ImageConditionSpec, ...] = (), videos: tuple[VideoConditionSpec, ...] = ()
) -> MulticonditioningSpec:
    return MulticonditioningSpec(
        prompt="p", negative_prompt="n", resolution=Resolution.P480, aspect_ratio=AspectRatio.R1_1,
        width=WIDTH, height=HEIGHT, num_frames=17, num_inference_steps=2, frame_rate=24, seed=0,
        images=images, videos=videos,
    )  # fmt: skip


def _distilled(crf: int, image: str) -> DistilledMulticonditioningSpec:
    return DistilledMulticonditioningSpec(
        prompt="p", negative_prompt="n", resolution=Resolution.P480, aspect_ratio=AspectRatio.R1_1,
        width=WIDTH, height=HEIGHT, num_frames=9, first_pass_num_inference_steps=2,
        second_pass_num_inference_steps=2, second_pass_skip_initial_steps=1, frame_rate=24, seed=0,
        temporal_adain_factor=0.5, tone_map_compression_ratio=0.0, constant_rate_factor=crf,
        images=(ImageConditionSpec(image),),
    )  # fmt: skip


def _assert_upstream(prepared: np.ndarray, inputs: list[np.ndarray], crf: int) -> None:
    expected = np.stack([_upstream(frame, crf) for frame in inputs]).astype(np.int32)
    raw = np.stack(inputs).astype(np.int32)
    assert prepared.shape == expected.shape
    assert np.abs(prepared - expected).max() <= 1, np.abs(prepared - expected).max()
    # Without the preprocessing the pixels would be the decoded input, many levels away.
    assert np.abs(raw - expected).mean() > 5


def test_multiconditioning_image_is_blurred_and_recompressed_at_crf_29() -> None:
    frame = _textured_frame(0)
    spec = _multiconditioning(images=(ImageConditionSpec(_png_uri(frame)),))
    inputs = prepare_endpoint_inputs(spec, FetchLimits(), None, lambda _: None)
    _assert_upstream(_levels(inputs.media[0].pixels), [_decoded(frame)], 29)


def test_multiconditioning_video_frames_are_each_blurred_and_recompressed() -> None:
    frames = [_textured_frame(k) for k in range(9)]
    spec = _multiconditioning(videos=(VideoConditionSpec(_lossless_mp4_uri(frames), start_frame=0),))
    inputs = prepare_endpoint_inputs(spec, FetchLimits(), None, lambda _: None)
    assert inputs.media[0].pixels.dtype == torch.uint8
    _assert_upstream(_levels(inputs.media[0].pixels), frames, 29)


@pytest.mark.parametrize("crf", [29, 40, 0])
def test_distilled_image_uses_the_specs_crf_and_is_always_blurred(crf: int) -> None:
    frame = _textured_frame(1)
    inputs = prepare_endpoint_inputs(_distilled(crf, _png_uri(frame)), FetchLimits(), None, lambda _: None)
    _assert_upstream(_levels(inputs.media[0].pixels), [_decoded(frame)], crf)


def test_extend_context_is_preprocessed_and_the_kept_frames_are_not() -> None:
    frames = [_textured_frame(k) for k in range(20)]
    spec = ExtendSpec(
        prompt="p", negative_prompt="n", width=WIDTH, height=HEIGHT, num_frames=33, frame_rate=24,
        num_inference_steps=2, seed=0,
        video=VideoConditionSpec(_lossless_mp4_uri(frames), start_frame=12, strength=0.9),
    )  # fmt: skip
    inputs = prepare_endpoint_inputs(spec, FetchLimits(), None, lambda _: None)
    assert inputs.kept_pixels is not None
    kept = _levels(inputs.kept_pixels[None])
    assert np.abs(kept - np.stack(frames[:12]).astype(np.int32)).max() <= 1  # copied as decoded
    (context,) = inputs.media  # the last 9 kept frames (the largest 8k + 1 <= 12) condition the clip
    assert (context.start_frame, context.strength) == (0, 0.9)
    _assert_upstream(_levels(context.pixels), frames[3:12], 29)


def test_blur_matches_scipy_on_float_and_uint8_pixels() -> None:
    frame = _textured_frame(2)
    expected = _upstream_blur(frame).astype(np.int32)
    as_uint8 = torch.from_numpy(frame).permute(2, 0, 1)[:, None]
    as_float = as_uint8.float() / 127.5 - 1
    assert np.abs(_levels(blur_video(as_uint8)[None]) - expected).max() <= 1  # float32 rounding at .5
    assert np.abs(_levels(blur_video(as_float)[None]) - expected).max() <= 1  # float32 rounding at .5
