"""Issue 10, item 9: each pass of the distilled pipeline encodes its conditions resized as upstream's
`LTXVideoPipeline.resize_tensor` resizes them: plain bilinear (half-pixel centres, no antialiasing) from
the prepared frames. The expected pixels come from a bilinear resize written here in numpy."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from service.config import ModelConfig
from service.domain.geometry import AspectRatio, Resolution
from service.domain.job_context import JobContext
from service.domain.specs import DistilledMulticonditioningSpec
from service.engines import torch_bindings
from service.models import loading
from service.pipelines.conditioning import ConditioningMedia, resize_media
from service.pipelines.distilled import DistilledOptions, generate_distilled

SPEC = DistilledMulticonditioningSpec(
    prompt="a lighthouse in a storm", negative_prompt="", resolution=Resolution.P480,
    aspect_ratio=AspectRatio.R1_1, width=96, height=96, num_frames=9, first_pass_num_inference_steps=2,
    second_pass_num_inference_steps=2, second_pass_skip_initial_steps=1, frame_rate=24, seed=3,
    temporal_adain_factor=0.0, tone_map_compression_ratio=0.0, constant_rate_factor=29,
)  # fmt: skip


def _bilinear_axis(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a half-pixel-centre linear resize along one axis."""
    source = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    source = np.clip(source, 0, None)
    low = np.minimum(np.floor(source).astype(int), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, source - low


def numpy_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """[..., H, W] -> [..., height, width]."""
    y0, y1, wy = _bilinear_axis(image.shape[-2], height)
    x0, x1, wx = _bilinear_axis(image.shape[-1], width)
    rows = image[..., y0, :] * (1 - wy)[:, None] + image[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


class RecordingEncoder:
    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.pixels: list[torch.Tensor] = []

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        self.pixels.append(video.clone())
        return self.inner.encode(video)  # type: ignore[attr-defined]


def _image() -> torch.Tensor:
    """[1, 3, 1, 96, 96]: fine detail, so that antialiasing would show."""
    return torch.rand(1, 3, 1, 96, 96, generator=torch.Generator().manual_seed(5)) * 2 - 1


def test_each_pass_encodes_a_plain_bilinear_resize_of_the_prepared_frames() -> None:
    components = torch_bindings.bind_components(loading.load_models(ModelConfig()))
    recorder = RecordingEncoder(components.vae_encoder)
    image = _image()
    generate_distilled(
        dataclasses.replace(components, vae_encoder=recorder),
        SPEC,
        [ConditioningMedia(pixels=image, start_frame=0, strength=1.0)],
        JobContext.create(),
        DistilledOptions(),
    )
    first, second = recorder.pixels  # 96x96 -> first pass int(96 * 0.6666666) floored to 32 = 32, second 64
    source = image.numpy().astype(np.float64)
    for encoded, side in ((first, 32), (second, 64)):
        expected = numpy_bilinear(source, side, side)
        assert encoded.shape == (1, 3, 1, side, side)
        assert np.abs(encoded.numpy() - expected).max() < 1e-5
    # The antialiased resize used before differs visibly when the pass is smaller than the frames.
    flat = image[:, :, 0].float()
    antialiased = F.interpolate(flat, size=(32, 32), mode="bilinear", antialias=True)
    assert (antialiased - first[:, :, 0]).abs().max() > 0.05


def test_uint8_videos_resize_to_the_same_values_rounded() -> None:
    video = ((_image().repeat(1, 1, 9, 1, 1) + 1) * 127.5).round().to(torch.uint8)
    resized = resize_media(ConditioningMedia(pixels=video, start_frame=0, strength=1.0), 40, 56)
    expected = numpy_bilinear(video.numpy().astype(np.float64), 56, 40)
    assert resized.pixels.dtype == torch.uint8 and resized.pixels.shape == (1, 3, 9, 56, 40)
    assert np.abs(resized.pixels.numpy().astype(np.float64) - expected).max() <= 0.5 + 1e-3
