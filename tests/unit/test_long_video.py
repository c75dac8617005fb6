"""Long videos in overlapping chunks: plan, seams, tail conditioning, temporal AdaIN, output store.

Most tests drive `generate_long_video` with a fake clip renderer whose frames say which chunk and which
chunk-local frame they are, so where each output frame came from can be read off the pixels. The last
ones run the real distilled pipeline on the tiny preset with tiny chunks (17 frames, 9 overlapping).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from service.config import ModelConfig
from service.domain.context import JobContext
from service.domain.errors import Cancelled
from service.domain.geometry import AspectRatio, FrameSize, Resolution
from service.domain.specs import DistilledMulticonditioningSpec
from service.engines import torch_bindings
from service.pipelines.chunking import seams
from service.pipelines.components import Components
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.distilled import DistilledOptions, generate_distilled
from service.pipelines.long_video import (
    ClipRequest,
    FrameStore,
    LongVideoOptions,
    LongVideoRequest,
    chunk_plan,
    generate_long_video,
)

TINY_CHUNKS = LongVideoOptions(chunk_frames=17, overlap_frames=9)
SIZE = FrameSize(width=8, height=4)


class LabelledRenderer:
    """Frame k of chunk i has red = i and green = k; latents of chunk i have mean i and std i + 1."""

    def __init__(self) -> None:
        self.requests: list[ClipRequest] = []
        self.decoded_latents: list[torch.Tensor] = []

    def latents(self, request: ClipRequest) -> torch.Tensor:
        self.requests.append(request)
        noise = torch.randn(1, 2, 4, 4, 4, generator=torch.Generator().manual_seed(request.chunk_index))
        return noise * (request.chunk_index + 1) + request.chunk_index

    def frames(self, latents: torch.Tensor, request: ClipRequest) -> np.ndarray:
        self.decoded_latents.append(latents)
        frames = np.zeros((request.num_frames, SIZE.height, SIZE.width, 3), dtype=np.uint8)
        frames[..., 0] = request.chunk_index
        frames[..., 1] = np.arange(request.num_frames)[:, None, None]
        return frames


def _generate(
    num_frames: int,
    renderer: LabelledRenderer,
    conditions: tuple[ConditioningMedia, ...] = (),
    options: LongVideoOptions = TINY_CHUNKS,
    **request: object,
) -> np.ndarray:
    settings = {"seed": 0, "temporal_adain_factor": 0.0, **request}
    video_request = LongVideoRequest(num_frames=num_frames, size=SIZE, **settings)  # type: ignore[arg-type]
    return generate_long_video(renderer, video_request, conditions, JobContext.detached(), options)


def test_exact_frame_count_and_seams_where_chunking_says() -> None:
    renderer = LabelledRenderer()
    video = _generate(49, renderer)
    assert video.shape == (49, SIZE.height, SIZE.width, 3)
    # 17-frame chunks overlapping by 9 add 8 frames each: chunk i starts at 8i; its own frames begin
    # where the previous chunk ends, 8(i - 1) + 17.
    expected_seams = [8 * i + 9 for i in range(1, 5)]
    assert seams(chunk_plan(49, TINY_CHUNKS)) == expected_seams
    chunk_of_frame = video[:, 0, 0, 0].astype(int)
    assert [f for f in range(1, 49) if chunk_of_frame[f] != chunk_of_frame[f - 1]] == expected_seams
    local_frame = video[:, 0, 0, 1].astype(int)
    assert np.array_equal(local_frame, np.arange(49) - 8 * chunk_of_frame)  # each chunk starts at 8i


def test_an_illegal_length_is_generated_legal_and_trimmed() -> None:
    renderer = LabelledRenderer()
    video = _generate(45, renderer)  # 49 generated
    assert video.shape[0] == 45
    assert [r.num_frames for r in renderer.requests] == [17] * 5


def test_each_chunk_after_the_first_is_conditioned_on_the_previous_tail() -> None:
    renderer = LabelledRenderer()
    _generate(33, renderer)
    assert renderer.requests[0].conditions == ()
    for previous, request in zip(renderer.requests, renderer.requests[1:]):
        (tail,) = request.conditions
        assert (tail.start_frame, tail.strength, tail.num_frames) == (0, 1.0, 9)
        # The previous chunk's frames 8..16 (green) from chunk `previous.chunk_index` (red), as [-1, 1] pixels.
        red, green = tail.pixels[0, 0, :, 0, 0], tail.pixels[0, 1, :, 0, 0]
        assert torch.allclose(red, torch.full((9,), previous.chunk_index / 127.5 - 1))
        assert torch.allclose(green, torch.arange(8, 17) / 127.5 - 1)


def test_chunks_get_their_own_seeds_the_first_the_request_seed() -> None:
    renderer = LabelledRenderer()
    _generate(33, renderer, seed=100)
    assert [r.generator.initial_seed() for r in renderer.requests] == [100, 108, 116]


def test_client_conditions_go_to_the_chunks_that_own_their_frames() -> None:
    renderer = LabelledRenderer()
    clip = torch.arange(20, dtype=torch.float32).view(1, 1, 20, 1, 1).expand(1, 3, 20, 2, 2)
    image = torch.zeros(1, 3, 1, 2, 2)
    conditions = (
        ConditioningMedia(pixels=clip, start_frame=12, strength=0.8),
        ConditioningMedia(pixels=image, start_frame=40, strength=1.0),
    )
    _generate(49, renderer, conditions)
    # Own frames: chunk 0 [0, 17), chunk 1 [17, 25), chunk 2 [25, 33), chunk 3 [33, 41), chunk 4 [41, 49).
    # The video covers output frames 12..31; the image frame 40 (chunk 3, which starts at 24).
    expected = {
        0: [(12, 0, 5)],  # (chunk-local start, first frame of the video used, frames)
        1: [(9, 5, 8)],
        2: [(9, 13, 7)],
        3: [(16, None, 1)],
        4: [],
    }
    for request in renderer.requests:
        own = [c for c in request.conditions if not (c.start_frame == 0 and c.num_frames == 9)]
        got = [
            (c.start_frame, int(c.pixels[0, 0, 0, 0, 0]) if c.num_frames > 1 else None, c.num_frames)
            for c in own
        ]
        assert got == expected[request.chunk_index], request.chunk_index
        assert all(c.strength == (0.8 if c.num_frames > 1 else 1.0) for c in own)


@pytest.mark.parametrize("factor", [0.0, 1.0])
def test_temporal_adain_moves_later_chunks_toward_the_first(factor: float) -> None:
    renderer = LabelledRenderer()
    _generate(33, renderer, temporal_adain_factor=factor)
    first = renderer.decoded_latents[0]
    ref_std, ref_mean = torch.std_mean(first, dim=(2, 3, 4))
    for index, latents in enumerate(renderer.decoded_latents[1:], start=1):
        std, mean = torch.std_mean(latents, dim=(2, 3, 4))
        if factor == 1.0:
            assert torch.allclose(std, ref_std, atol=1e-5) and torch.allclose(mean, ref_mean, atol=1e-5)
        else:  # as rendered: mean about `index`, far from the first chunk's
            assert torch.all((mean - ref_mean).abs() > 0.5 * index)


@pytest.mark.parametrize("store", [FrameStore.MEMORY, FrameStore.TEMP_FILE])
def test_both_stores_give_the_same_frames_and_reverse(store: FrameStore) -> None:
    options = dataclasses.replace(TINY_CHUNKS, frame_store=store)
    in_memory = dataclasses.replace(TINY_CHUNKS, frame_store=FrameStore.MEMORY)
    reference = _generate(41, LabelledRenderer(), options=in_memory)
    video = _generate(41, LabelledRenderer(), options=options)
    assert isinstance(video, np.memmap) == (store is FrameStore.TEMP_FILE)
    assert np.array_equal(video, reference)
    assert np.array_equal(_generate(41, LabelledRenderer(), options=options, reverse=True), reference[::-1])


def test_more_than_one_chunk_goes_to_a_temporary_file_by_default() -> None:
    assert isinstance(_generate(25, LabelledRenderer()), np.memmap)
    assert not isinstance(_generate(17, LabelledRenderer()), np.memmap)


def test_cancel_between_chunks() -> None:
    renderer = LabelledRenderer()
    request = LongVideoRequest(num_frames=33, size=SIZE, seed=0, temporal_adain_factor=0.0)
    with pytest.raises(Cancelled):
        generate_long_video(renderer, request, (), JobContext("test", lambda _: None, lambda: len(renderer.requests) >= 1), TINY_CHUNKS)
    assert len(renderer.requests) == 1


# --- the real distilled pipeline, tiny preset, tiny chunks ---

SPEC = DistilledMulticonditioningSpec(
    prompt="a lighthouse at dusk, waves rolling in",
    negative_prompt="worst quality",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.R1_1,
    width=64,
    height=64,
    num_frames=49,
    first_pass_num_inference_steps=2,  # one step per pass: the chunking, not the sampling, is tested here
    second_pass_num_inference_steps=2,
    second_pass_skip_initial_steps=1,
    frame_rate=24,
    seed=11,
    temporal_adain_factor=0.5,
    tone_map_compression_ratio=0.0,
    constant_rate_factor=29,
)
TINY_CHUNK_OPTIONS = DistilledOptions(long_video=TINY_CHUNKS)


@pytest.fixture(scope="module")
def components() -> Components:
    return torch_bindings.load_components(ModelConfig())


def test_distilled_long_video_has_exactly_the_requested_frames(components: Components) -> None:
    video = generate_distilled(components, SPEC, (), JobContext.detached(), TINY_CHUNK_OPTIONS)
    assert video.frames.shape == (49, 64, 64, 3)
    # Chunk 0 is seeded with the request's seed and sees no AdaIN: its frames are a one-clip run's.
    one_clip = dataclasses.replace(SPEC, num_frames=17)
    alone = generate_distilled(components, one_clip, (), JobContext.detached(), TINY_CHUNK_OPTIONS)
    assert np.array_equal(video.frames[:17], alone.frames)
