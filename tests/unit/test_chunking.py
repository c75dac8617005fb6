"""Long-video chunk plans: exact totals, legal lengths, seams where documented, no duplicated frames."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from service.pipelines.chunking import Chunk, plan_chunks, seams, stitch

LEGAL_LENGTHS = range(9, 1442, 8)  # 9 .. 1441, every 8k + 1
CONFIGS = [(121, 25), (97, 9), (257, 33), (65, 17), (17, 9)]


def _labelled_chunk_video(chunk: Chunk) -> torch.Tensor:
    # Each frame carries the output frame index it covers: [1, F, 1, 1].
    return torch.arange(chunk.start, chunk.end, dtype=torch.float64).view(1, -1, 1, 1)


@pytest.mark.parametrize(("chunk_frames", "overlap"), CONFIGS)
def test_plans_cover_every_length_exactly(chunk_frames: int, overlap: int) -> None:
    for num_frames in LEGAL_LENGTHS:
        chunks = plan_chunks(num_frames, chunk_frames, overlap)
        assert chunks[0].start == 0 and chunks[0].overlap == 0
        assert chunks[-1].end == num_frames
        for chunk in chunks:
            assert (chunk.length - 1) % 8 == 0 and chunk.length <= chunk_frames
        for previous, chunk in pairwise(chunks):
            assert chunk.overlap == overlap
            assert chunk.start == previous.end - overlap  # conditioned on the previous chunk's tail
            assert chunk.conditioning_frames == slice(previous.end - overlap, previous.end)
        lengths = [c.length for c in chunks]
        assert max(lengths) - min(lengths) <= 8  # no short leftover chunk
        kept = sum(c.length - c.overlap for c in chunks)
        assert kept == num_frames


@pytest.mark.parametrize(("chunk_frames", "overlap"), CONFIGS)
def test_stitch_keeps_each_output_frame_once_in_order(chunk_frames: int, overlap: int) -> None:
    for num_frames in (9, 121, 129, 249, 481, 1441):
        chunks = plan_chunks(num_frames, chunk_frames, overlap)
        video = stitch(chunks, [_labelled_chunk_video(c) for c in chunks])
        assert video.shape == (1, num_frames, 1, 1)
        assert torch.equal(video.flatten(), torch.arange(num_frames, dtype=torch.float64))


def test_seams_are_at_the_end_of_the_previous_chunk() -> None:
    chunks = plan_chunks(1441, 121, 25)
    # 1441 - 25 = 1416 frames = 177 units over chunks of at most (121 - 25) / 8 = 12 units: 15 chunks.
    assert len(chunks) == 15
    assert seams(chunks) == [c.end for c in chunks[:-1]]
    # Which chunk each output frame comes from changes exactly at the seams.
    sources = torch.cat([torch.full((c.length - c.overlap,), i) for i, c in enumerate(chunks)])
    changes = (torch.nonzero(sources[1:] != sources[:-1]).flatten() + 1).tolist()
    assert changes == seams(chunks)


def test_hand_worked_plan() -> None:
    # 249 frames, chunks of 121, overlap 25: 224 / 8 = 28 units, 12 per chunk -> 3 chunks of 10, 9, 9.
    chunks = plan_chunks(249, 121, 25)
    assert [(c.start, c.length, c.overlap) for c in chunks] == [(0, 105, 0), (80, 97, 25), (152, 97, 25)]
    assert seams(chunks) == [105, 177]
    assert chunks[1].kept == slice(25, 97)


def test_short_video_is_one_chunk() -> None:
    assert plan_chunks(121, 121, 25) == [Chunk(start=0, length=121, overlap=0)]
    assert seams(plan_chunks(9, 121, 25)) == []


@pytest.mark.parametrize(
    ("num_frames", "chunk_frames", "overlap"),
    [(120, 121, 25), (249, 120, 25), (249, 121, 24), (249, 121, 121), (249, 33, 41)],
)
def test_illegal_plans_are_refused(num_frames: int, chunk_frames: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        plan_chunks(num_frames, chunk_frames, overlap)


def test_stitch_checks_frame_counts() -> None:
    chunks = plan_chunks(249, 121, 25)
    videos = [_labelled_chunk_video(c) for c in chunks]
    with pytest.raises(ValueError, match="chunk 1"):
        stitch(chunks, [videos[0], videos[1][:, :-8], videos[2]])
    with pytest.raises(ValueError):
        stitch(chunks, videos[:2])
