"""The dev endpoints (text to video, multiconditioning, extend) decode in temporal tiles and write each
finished chunk to the job's frame output as it is decoded: a multi-tile decode holds one tile, not the
video, and a clip of one tile decodes as before (tests/unit/test_parity_*.py hold the exact parity).

Torch memory is counted op by op (`bench.torch_memory.LiveTensorMeter`), as in test_long_video_memory.py.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import pytest
import torch

from bench.torch_memory import LiveTensorMeter
from service.config import ModelConfig
from service.domain.geometry import FrameSize
from service.domain.job_context import JobContext
from service.domain.specs import ExtendSpec, TextToVideoSpec, VideoConditionSpec
from service.engines import torch_bindings
from service.inputs.media import extend_context
from service.pipelines.components import Components
from service.pipelines.extend import generate_extension
from service.pipelines.latents import latent_shape, pack
from service.pipelines.long_video import FrameSink, FrameStore
from service.pipelines.multiconditioning import DevSamplingOptions, generate_text_to_video
from service.pipelines.text_to_video import DecodeOptions, decode_chunks, to_uint8_frames

SIZE = 64
# Tiles of 2 latent frames (9 pixel frames) overlapping by 1: a 25-frame clip (4 latent frames) is 3 tiles.
TINY_TILES = DecodeOptions(tile_latent_frames=2, overlap_latent_frames=1)
TILED = DevSamplingOptions(decoding=TINY_TILES)
SPEC = TextToVideoSpec("a lighthouse at dusk", "blurry", SIZE, SIZE, 25, 2, 24, seed=5)


@pytest.fixture(scope="module")
def components() -> Components:
    return torch_bindings.load_components(ModelConfig())


class Peak(NamedTuple):
    live: int
    largest: int


def _decode_peak(components: Components, num_frames: int, options: DecodeOptions) -> Peak:
    """Torch memory of decoding a `num_frames` clip chunk by chunk into a frame sink (latents made first)."""
    geometry = components.geometry
    shape = latent_shape(geometry, 1, num_frames, SIZE, SIZE)
    latents = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(0))
    tokens = pack(latents, geometry)
    sink = FrameSink(num_frames, FrameSize(SIZE, SIZE), reverse=False, store=FrameStore.TEMP_FILE)
    meter = LiveTensorMeter()
    with torch.inference_mode(), meter:
        for chunk in decode_chunks(components, tokens, shape, torch.Generator().manual_seed(1), options):
            sink.write(chunk.start, to_uint8_frames(chunk.video[None]))
    assert sink.result().shape[0] == num_frames
    return Peak(meter.peak_bytes, meter.largest_bytes)


def test_a_multi_tile_decode_holds_one_tile_not_the_video(components: Components) -> None:
    _decode_peak(components, 25, TINY_TILES)  # warm up lazy initialisation outside the measures
    short, long = _decode_peak(components, 41, TINY_TILES), _decode_peak(components, 81, TINY_TILES)
    assert long.largest == short.largest  # 5 tiles or 10: the largest tensor is one tile's
    assert long.live <= short.live * 1.05  # only the (tiny) latents grow with the length
    # The meter sees the growth when the same clips are decoded whole (one tile as large as the video).
    whole = DecodeOptions(tile_latent_frames=64, overlap_latent_frames=1)
    whole_short, whole_long = _decode_peak(components, 41, whole), _decode_peak(components, 81, whole)
    assert whole_long.live >= whole_short.live * 1.6
    assert whole_short.live > short.live


def test_one_tile_by_default_up_to_121_frames() -> None:
    options = DecodeOptions()
    assert options.tiles(16) == 1  # 121 frames: decoded whole, as before
    assert options.tiles(17) == 2


class RecordingOutput:
    """A FrameOutput that keeps what it was given and the order it came in."""

    def __init__(self, num_frames: int, size: FrameSize) -> None:
        self.frames = np.zeros((num_frames, size.height, size.width, 3), dtype=np.uint8)
        self.writes: list[tuple[int, int]] = []

    def write(self, start: int, frames: np.ndarray) -> None:
        frames = frames[: max(0, len(self.frames) - start)]
        self.writes.append((start, len(frames)))
        self.frames[start : start + len(frames)] = frames

    def result(self) -> np.ndarray:
        return self.frames


def _recording_context() -> tuple[JobContext, list[RecordingOutput]]:
    outputs: list[RecordingOutput] = []

    def frame_output(num_frames: int, size: FrameSize) -> RecordingOutput:
        outputs.append(RecordingOutput(num_frames, size))
        return outputs[-1]

    return JobContext.create(frame_output=frame_output), outputs


def test_text_to_video_writes_each_tile_to_the_frame_output_as_it_is_decoded(components: Components) -> None:
    kept = generate_text_to_video(components, SPEC, JobContext.create(), TILED)  # the pipeline's own sink
    ctx, outputs = _recording_context()
    streamed = generate_text_to_video(components, SPEC, ctx, TILED)
    (output,) = outputs
    # Three tiles of 9 frames sharing one frame with the next: 8 + 8 + 9 frames, in order, each once.
    assert output.writes == [(0, 8), (8, 8), (16, 9)]
    assert np.array_equal(output.frames, kept.frames) and streamed.frames is output.frames
    # Reversed: the same frames, last first.
    ctx, outputs = _recording_context()
    backward = dataclasses.replace(SPEC, reverse_video=True)
    generate_text_to_video(components, backward, ctx, TILED)
    assert np.array_equal(outputs[0].frames, kept.frames[::-1])


def test_a_multi_tile_video_is_kept_out_of_memory(components: Components) -> None:
    video = generate_text_to_video(components, SPEC, JobContext.create(), TILED)
    assert isinstance(video.frames, np.memmap) and video.frames.shape == (25, SIZE, SIZE, 3)
    one_tile = generate_text_to_video(
        components, dataclasses.replace(SPEC, num_frames=9), JobContext.create()
    )
    assert not isinstance(one_tile.frames, np.memmap)


def test_extend_writes_the_kept_frames_then_the_new_ones_tile_by_tile(components: Components) -> None:
    spec = ExtendSpec(
        prompt="the camera keeps panning",
        negative_prompt="blurry",
        width=SIZE,
        height=SIZE,
        num_frames=33,
        frame_rate=24,
        num_inference_steps=2,
        seed=3,
        video=VideoConditionSpec("unused", start_frame=10),
    )
    frames = np.random.default_rng(0).integers(0, 256, (10, SIZE, SIZE, 3), dtype=np.uint8)
    pixels = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0
    context = extend_context(spec, pixels)  # as the prepare stage hands it over
    whole = generate_extension(components, spec, pixels, context, JobContext.create())
    ctx, outputs = _recording_context()
    generate_extension(components, spec, pixels, context, ctx, TILED)
    (output,) = outputs
    assert output.writes[0] == (0, 10) and len(output.writes) > 2  # the kept frames, then several tiles
    assert sum(count for _, count in output.writes) == spec.num_frames
    assert np.array_equal(output.frames[:10], frames) and np.array_equal(whole.frames[:10], frames)
    # Every output frame written once, in order (how close tiles are to one decode: test_long_video.py).
    ends = [start + count for start, count in output.writes]
    assert [start for start, _ in output.writes[1:]] == ends[:-1] and ends[-1] == spec.num_frames
