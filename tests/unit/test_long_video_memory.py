"""Peak memory of a long video is bounded by one window or decode tile, not its length (tiny preset).

Torch memory is counted op by op (`bench.torch_memory.LiveTensorMeter`: live tensor bytes and the largest
tensor); numpy and Python memory with tracemalloc. A 41-frame video (4 windows of 17 frames) must peak no
higher than a 25-frame one (2 windows). Each measure is also shown to catch growth where there is some.
"""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import pytest
import torch

from bench.torch_memory import LiveTensorMeter
from service.config import ModelConfig
from service.domain.geometry import AspectRatio, Resolution
from service.domain.job_context import JobContext
from service.domain.specs import DistilledMulticonditioningSpec
from service.engines import torch_bindings
from service.pipelines.components import Components
from service.pipelines.distilled import DistilledOptions, generate_distilled
from service.pipelines.long_video import FrameStore, LongVideoOptions

SHORT, LONG = 25, 41  # 2 and 4 windows (and decode tiles) of 3 latent frames (17 frames) overlapping by 2
SPEC = DistilledMulticonditioningSpec(
    prompt="a lighthouse at dusk, waves rolling in",
    negative_prompt="worst quality",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.R1_1,
    width=64,
    height=64,
    num_frames=SHORT,
    first_pass_num_inference_steps=2,  # one step per pass: memory, not quality, is measured here
    second_pass_num_inference_steps=2,
    second_pass_skip_initial_steps=1,
    frame_rate=24,
    seed=3,
    temporal_adain_factor=0.5,
    tone_map_compression_ratio=0.0,
    constant_rate_factor=29,
)
TINY_CHUNKS = LongVideoOptions(
    window_latent_frames=3,
    overlap_latent_frames=2,
    decode_tile_latent_frames=3,
    decode_overlap_latent_frames=2,
)
FRAME_BYTES = SPEC.width * SPEC.height * 3  # one uint8 output frame


class Peaks(NamedTuple):
    torch_live: int
    torch_largest: int
    traced: int  # tracemalloc: numpy arrays and Python objects


@contextmanager
def _measured() -> Iterator[list[Peaks]]:
    meter, result = LiveTensorMeter(), list[Peaks]()
    tracemalloc.start()
    try:
        with meter:
            yield result
        result.append(Peaks(meter.peak_bytes, meter.largest_bytes, tracemalloc.get_traced_memory()[1]))
    finally:
        tracemalloc.stop()


def _peaks(components: Components, num_frames: int, store: FrameStore = FrameStore.AUTO) -> Peaks:
    options = DistilledOptions(long_video=dataclasses.replace(TINY_CHUNKS, frame_store=store))
    spec = dataclasses.replace(SPEC, num_frames=num_frames)
    with _measured() as peaks:
        video = generate_distilled(components, spec, (), JobContext.create(), options)
        assert video.frames.shape[0] == num_frames
    return peaks[0]


@pytest.fixture(scope="module")
def components() -> Components:
    components = torch_bindings.load_components(ModelConfig())
    _peaks(components, SHORT)  # warm up lazy initialisation (kernels, dispatch caches) outside the measures
    return components


@pytest.fixture(scope="module")
def default_peaks(components: Components) -> tuple[Peaks, Peaks]:
    return _peaks(components, SHORT), _peaks(components, LONG)


class HoardingDecoder:
    """A leak on purpose: keeps every decoded clip alive."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.kept = inner, list[torch.Tensor]()

    def decode(self, latents: torch.Tensor, decode_timestep: torch.Tensor) -> torch.Tensor:
        decoded = self.inner.decode(latents, decode_timestep)
        self.kept.append(decoded.clone())  # its own copy: the pipeline blends tiles in place
        return decoded


def test_torch_peak_and_largest_tensor_do_not_grow_with_length(default_peaks: tuple[Peaks, Peaks]) -> None:
    short, long = default_peaks
    assert long.torch_largest == short.torch_largest
    assert long.torch_live <= short.torch_live * 1.02


def test_the_torch_meter_sees_decoded_tiles_that_are_kept(components: Components) -> None:
    short = _peaks(
        dataclasses.replace(components, vae_decoder=HoardingDecoder(components.vae_decoder)), SHORT
    )
    long = _peaks(dataclasses.replace(components, vae_decoder=HoardingDecoder(components.vae_decoder)), LONG)
    decoded_clip_bytes = 17 * SPEC.height * SPEC.width * 3 * 4  # float32 [1, 3, 17, 64, 64]
    assert long.torch_live - short.torch_live >= 2 * decoded_clip_bytes  # two more decode tiles kept


def test_output_frames_stay_out_of_memory_by_default(
    components: Components, default_peaks: tuple[Peaks, Peaks]
) -> None:
    extra_output = (LONG - SHORT) * FRAME_BYTES
    short, long = default_peaks
    assert long.traced - short.traced < extra_output / 2
    # The same measure sees the output when it is kept in memory.
    short, long = _peaks(components, SHORT, FrameStore.MEMORY), _peaks(components, LONG, FrameStore.MEMORY)
    assert long.traced - short.traced >= extra_output * 0.9
