"""Long videos (up to 1441 frames) as a chain of overlapping clips, in memory bounded by one clip.

Chunks. `chunking.plan_chunks` over the legal length (8k + 1) that holds the request, with
`DEFAULT_CHUNK_FRAMES` = 121 (LTX-Video 0.9.7's native clip, about 5 s at 24 fps) and
`DEFAULT_OVERLAP_FRAMES` = 25 (about 1 s: 4 latent frames of context). A request of up to 121 frames is
one chunk; longer ones take the fewest chunks of at most 121 frames, each after the first adding a
multiple of 8 new frames (1441 frames: 15 chunks, 12 of 121 and 3 of 113 frames).

Conditioning. Chunk i > 0 is a clip conditioned, at its frame 0 with strength 1, on the last
`overlap_frames` output frames of chunk i - 1 (a video condition, through `conditioning`), so motion and
content continue across the seam. The client's image and video conditions go to the chunk whose own
(kept) frames hold them, at the chunk-local frame; a video condition that spans chunks is split.
Chunk i's first `overlap_frames` frames re-generate the conditioning tail and are dropped; the seams are
where `chunking.seams` says.

Colour drift. Each chunk after the first has its final latents AdaIN-normalized toward the first chunk's
per-channel statistics by `temporal_adain_factor` (0: as generated, 1: the first chunk's statistics), as
LTX's looping sampler does, before it is decoded.

Memory. Only what the next chunk needs survives a chunk: the first chunk's final latents (the AdaIN
reference, one clip's worth) and the previous chunk's `overlap_frames` uint8 frames. Finished frames are
written to the output as each chunk ends; for more than one chunk the output lives in an unlinked
temporary file (`FrameStore.TEMP_FILE`) written with `pwrite`, and the caller gets a read-only
`np.memmap` of it, so the frames do not sit in this process's memory either.

The clip itself is the caller's (`ClipRenderer`): the distilled two-pass pipeline renders each chunk.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import IO, NamedTuple, Protocol

import numpy as np
import torch

from service.contract.frames import frames_to_generate, unit_from_uint8
from service.domain.context import JobContext
from service.domain.geometry import FrameSize
from service.pipelines.adain import adain_filter_latent
from service.pipelines.chunking import Chunk, plan_chunks
from service.pipelines.conditioning import ConditioningMedia

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_FRAMES = 121
DEFAULT_OVERLAP_FRAMES = 25
# The generator of chunk i is seeded with seed + its first frame: chunk 0 draws exactly what a one-clip
# run with the same seed draws, and no two chunks share noise. Wrapped to torch's seed range.
_SEED_RANGE = 2**63


class FrameStore(StrEnum):
    AUTO = "auto"  # in memory for one chunk, a temporary file for more
    MEMORY = "memory"
    TEMP_FILE = "temp_file"


@dataclass(frozen=True)
class LongVideoOptions:
    chunk_frames: int = DEFAULT_CHUNK_FRAMES  # 8k + 1
    overlap_frames: int = DEFAULT_OVERLAP_FRAMES  # 8m + 1, less than chunk_frames
    frame_store: FrameStore = FrameStore.AUTO


class ClipRequest(NamedTuple):
    """One chunk to render as a clip of `num_frames` (8k + 1) frames."""

    chunk_index: int
    num_chunks: int
    num_frames: int
    conditions: tuple[ConditioningMedia, ...]  # at chunk-local frames, output size
    generator: torch.Generator  # used for the sampling noise, then the decode noise

    @property
    def label(self) -> str:
        return f"chunk {self.chunk_index + 1}/{self.num_chunks}" if self.num_chunks > 1 else ""


class ClipRenderer(Protocol):
    def latents(self, request: ClipRequest) -> torch.Tensor:
        """The clip's final latents [1, C, f, h, w] (normalized), not yet decoded."""
        ...

    def frames(self, latents: torch.Tensor, request: ClipRequest) -> np.ndarray:
        """Decoded uint8 frames [num_frames, H, W, 3] at the output size."""
        ...


class LongVideoRequest(NamedTuple):
    num_frames: int  # exactly the frames of the output
    size: FrameSize
    seed: int
    temporal_adain_factor: float
    reverse: bool = False


def chunk_plan(num_frames: int, options: LongVideoOptions) -> list[Chunk]:
    """The chunks a request of `num_frames` is generated in (over its legal length, then trimmed)."""
    return plan_chunks(frames_to_generate(num_frames), options.chunk_frames, options.overlap_frames)


def generate_long_video(
    renderer: ClipRenderer,
    request: LongVideoRequest,
    conditions: Sequence[ConditioningMedia],
    ctx: JobContext,
    options: LongVideoOptions = LongVideoOptions(),
) -> np.ndarray:
    """Exactly `request.num_frames` uint8 frames [F, H, W, 3], generated chunk by chunk."""
    chunks = chunk_plan(request.num_frames, options)
    logger.info(
        "%d frames in %d chunk(s) of at most %d frames, %d overlapping",
        request.num_frames,
        len(chunks),
        options.chunk_frames,
        options.overlap_frames,
    )
    sink = FrameSink(request.num_frames, request.size, request.reverse, _store(options, len(chunks)))
    reference: torch.Tensor | None = None  # the first chunk's final latents, for temporal AdaIN
    tail: np.ndarray | None = None  # the previous chunk's last `overlap` frames
    for index, chunk in enumerate(chunks):
        ctx.raise_if_cancelled()
        clip = ClipRequest(
            chunk_index=index,
            num_chunks=len(chunks),
            num_frames=chunk.length,
            conditions=_chunk_conditions(chunk, conditions, tail, is_first=index == 0),
            generator=torch.Generator("cpu").manual_seed((request.seed + chunk.start) % _SEED_RANGE),
        )
        tail = None
        latents = renderer.latents(clip)
        clip = clip._replace(conditions=())  # sampled: the conditioning pixels need not wait for the decode
        if reference is None:
            reference = latents
        else:
            latents = adain_filter_latent(latents, reference, request.temporal_adain_factor)
        frames = renderer.frames(latents, clip)
        del latents  # the decoded frames are all this chunk leaves behind
        sink.write(chunk.output_start, frames[chunk.kept])
        tail = frames[chunk.length - options.overlap_frames :].copy() if index + 1 < len(chunks) else None
    return sink.result()


def _store(options: LongVideoOptions, num_chunks: int) -> FrameStore:
    if options.frame_store is not FrameStore.AUTO:
        return options.frame_store
    return FrameStore.TEMP_FILE if num_chunks > 1 else FrameStore.MEMORY


def _chunk_conditions(
    chunk: Chunk, conditions: Sequence[ConditioningMedia], tail: np.ndarray | None, is_first: bool
) -> tuple[ConditioningMedia, ...]:
    """The previous chunk's tail at frame 0 (strength 1), then the client's conditions in this chunk."""
    own = tuple(part for media in conditions if (part := _part_in_chunk(media, chunk, is_first)) is not None)
    if tail is None:
        return own
    return (ConditioningMedia(pixels=frames_to_pixels(tail), start_frame=0, strength=1.0), *own)


def _part_in_chunk(media: ConditioningMedia, chunk: Chunk, is_first: bool) -> ConditioningMedia | None:
    """The frames of `media` that fall on `chunk`'s own (kept) frames, at chunk-local positions."""
    own_start = 0 if is_first else chunk.output_start
    first = max(media.start_frame, own_start)
    last = min(media.start_frame + media.num_frames, chunk.end)
    if first >= last:
        return None
    offset = first - media.start_frame
    pixels = media.pixels[:, :, offset : offset + last - first]
    return replace(media, pixels=pixels, start_frame=first - chunk.start)


def frames_to_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [F, H, W, 3] -> pixels [1, 3, F, H, W] in [-1, 1], as the VAE encoder takes them."""
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None]
    return unit_from_uint8(pixels.float())


class FrameSink:
    """The output video, filled chunk by chunk: in memory, or in an unlinked temporary file."""

    def __init__(self, num_frames: int, size: FrameSize, reverse: bool, store: FrameStore) -> None:
        self.shape = (num_frames, size.height, size.width, 3)
        self.reverse = reverse
        self.frame_bytes = size.height * size.width * 3
        self._memory: np.ndarray | None = None
        self._file: IO[bytes] | None = None
        if store is FrameStore.TEMP_FILE:
            # Unlinked from the start; it lives on in the memmap `result` returns, so no `with` here.
            self._file = tempfile.TemporaryFile(prefix="ltx-frames-")  # noqa: SIM115
            self._file.truncate(num_frames * self.frame_bytes)
        else:
            self._memory = np.empty(self.shape, dtype=np.uint8)

    def write(self, start: int, frames: np.ndarray) -> None:
        """Frames [n, H, W, 3] at output frames start..start + n; those past the end are dropped."""
        frames = frames[: max(0, self.shape[0] - start)]
        if self.reverse:  # frame k of the video goes to position F - 1 - k
            frames = frames[::-1]
            start = self.shape[0] - start - len(frames)
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if self._memory is not None:
            self._memory[start : start + len(frames)] = frames
            return
        assert self._file is not None
        _pwrite_all(self._file.fileno(), frames.reshape(-1).data, start * self.frame_bytes)

    def result(self) -> np.ndarray:
        if self._memory is not None:
            return self._memory
        assert self._file is not None
        self._file.flush()
        # The mapping holds its own descriptor, so the file lives exactly as long as the array.
        frames = np.memmap(self._file, dtype=np.uint8, mode="r", shape=self.shape)
        self._file.close()
        return frames


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    # One pwrite may write less than asked (Linux stops at about 2 GiB); write on from where it stopped.
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written
