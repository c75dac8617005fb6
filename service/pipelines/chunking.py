"""Planning a long video (up to 1441 frames) as overlapping chunks, and stitching them back.

All counts are in output (pixel) frames and every length is legal for the VAE, 8k + 1.

Plan. A video of `num_frames` that fits in `chunk_frames` is one chunk. Otherwise chunk 0 starts at
frame 0 and chunk i > 0 starts `overlap_frames` before the end of chunk i - 1:

    start[i] = start[i-1] + length[i-1] - overlap_frames

Chunk i > 0 is generated with the previous chunk's last `overlap_frames` frames (its output frames
[start[i], start[i] + overlap_frames)) as a video condition at its own frame 0. Since `overlap_frames`
is 8m + 1, that tail is itself a legal conditioning clip, and every chunk adds a multiple of 8 new
frames. The number of chunks is the fewest that fit; the new frames are spread over them as evenly as
8-frame units allow (lengths differ by at most 8), so no chunk is a short leftover.

Stitch. Chunk 0 is kept whole. Of chunk i > 0, its first `overlap_frames` frames (its re-generation of
the conditioning tail) are dropped and the rest kept: the previous chunk's own frames stay. Each output
frame therefore comes from exactly one chunk, the total is exactly `num_frames`, and the seams, the
first output frame a chunk i > 0 contributes, are at

    seam[i] = start[i] + overlap_frames = start[i-1] + length[i-1]   (the end of the previous chunk).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from service.contract.frames import TEMPORAL_COMPRESSION, is_legal_frame_count

FRAMES_PER_LATENT = TEMPORAL_COMPRESSION  # legal lengths are 8k + 1 (contract/frames.py)


class Chunk(NamedTuple):
    start: int  # first output frame the chunk covers
    length: int  # frames the chunk generates (8k + 1)
    overlap: int  # leading frames conditioned on the previous chunk's tail (0 for the first chunk)

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def kept(self) -> slice:
        """The chunk's own frames that go into the output (chunk-local indices)."""
        return slice(self.overlap, self.length)

    @property
    def output_start(self) -> int:
        """Output frame of the first kept frame: 0 for the first chunk, else the seam."""
        return self.start + self.overlap

    @property
    def conditioning_frames(self) -> slice:
        """Output frames (of the previous chunk) this chunk is conditioned on; empty for the first."""
        return slice(self.start, self.start + self.overlap)


def _require_legal(name: str, frames: int) -> None:
    if not is_legal_frame_count(frames):
        raise ValueError(f"{name} must be 8k + 1 frames, got {frames}")


def plan_chunks(num_frames: int, chunk_frames: int, overlap_frames: int) -> list[Chunk]:
    """Splits `num_frames` into chunks of at most `chunk_frames` (see the module docstring)."""
    for name, value in (("num_frames", num_frames), ("chunk_frames", chunk_frames)):
        _require_legal(name, value)
    if num_frames <= chunk_frames:
        return [Chunk(start=0, length=num_frames, overlap=0)]
    _require_legal("overlap_frames", overlap_frames)
    if overlap_frames >= chunk_frames:
        raise ValueError(f"overlap_frames ({overlap_frames}) must be less than chunk_frames ({chunk_frames})")
    # Every chunk, the first included, contributes (length - overlap) frames beyond one overlap's worth.
    units_total = (num_frames - overlap_frames) // FRAMES_PER_LATENT
    units_per_chunk = (chunk_frames - overlap_frames) // FRAMES_PER_LATENT
    count = -(-units_total // units_per_chunk)
    base, extra = divmod(units_total, count)
    chunks: list[Chunk] = []
    start = 0
    for index in range(count):
        units = base + (1 if index < extra else 0)
        length = overlap_frames + units * FRAMES_PER_LATENT
        chunks.append(Chunk(start=start, length=length, overlap=overlap_frames if index else 0))
        start += length - overlap_frames
    return chunks


def seams(chunks: Sequence[Chunk]) -> list[int]:
    """Output frames where a new chunk's frames begin (none for a single chunk)."""
    return [chunk.output_start for chunk in chunks[1:]]


def stitch(chunks: Sequence[Chunk], videos: Sequence[torch.Tensor], frame_dim: int = 1) -> torch.Tensor:
    """Joins the chunks' videos (e.g. [3, F, H, W], F along `frame_dim`) into the output video."""
    if len(chunks) != len(videos):
        raise ValueError(f"{len(chunks)} chunks but {len(videos)} videos")
    parts = []
    for index, (chunk, video) in enumerate(zip(chunks, videos, strict=True)):
        if video.shape[frame_dim] != chunk.length:
            raise ValueError(f"chunk {index} has {video.shape[frame_dim]} frames, planned {chunk.length}")
        parts.append(video.narrow(frame_dim, chunk.overlap, chunk.length - chunk.overlap))
    return torch.cat(parts, dim=frame_dim)
