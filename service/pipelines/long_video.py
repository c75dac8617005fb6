"""Long videos (up to 1441 frames) by the reference method: latent windows, one tiled decode.

The method is LTX-Video's own for long shots (ComfyUI-LTXVideo's `LTXVLoopingSampler`, which the 0.9.8
release points to, ported to diffusers as `LTXI2VLongMultiPromptPipeline`); the building blocks are in
service/pipelines/latent_windows.py:

- Every denoising pass runs over the whole video's latents in windows of `window_latent_frames` (16: 121
  frames, the native clip) overlapping by `overlap_latent_frames` (3: 24 frames, the reference default).
- Window i > 0 is conditioned on the last `overlap` latent frames fused so far, appended as extra tokens
  at strength `tail_strength` (0.5) at the window's first `overlap` frame positions. The conditioning
  mechanism is LTX-Video's (service/pipelines/conditioning.py): those tokens start at lerp(noise, tail,
  0.5), are seen at timestep min(sigma, 0.5) and dropped after sampling.
- The window's output without its first latent frame is AdaIN-normalized toward the first window by
  `temporal_adain_factor` (the spec's meaning: 0 keeps each window's colours, 1 the first window's) and
  crossfaded linearly over the `overlap - 1` latent frames it shares with the video so far.
- Window i draws its noise from a generator seeded with `seed + its first latent frame` (the reference's
  rule), which it keeps across passes: window 0 draws exactly what a one-clip run with the seed draws;
  a later window draws its grid's and its tail tokens' starting noise as one `randn` over
  [1, C, length + overlap, h, w], as the reference does (its `init_rand`).
- The client's images and videos go, at window-local frames, to every window whose frames hold them.
- The latents (small: 1441 frames at 720p are 181 latent frames) are decoded once, in temporal tiles
  whose frames are written to the output as soon as they are final (`decode_in_tiles`).

Memory. Peak memory is one window's sampling or one decode tile, not the video's length: the video's
latents are all that grows. For more than one window the uint8 output lives in an unlinked temporary
file (`FrameStore.TEMP_FILE`) written with `pwrite`, and the caller gets a read-only `np.memmap` of it.

Measured (bench/README.md, issue 10): the seam metric at 241 frames is no worse than the reference
pipeline's, where our earlier method (pixel chunks, each decoded, a strength-1 re-encoded tail, a hard
cut) had visible seams.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import IO, NamedTuple

import numpy as np
import torch

from service.domain.errors import Cancelled
from service.domain.geometry import FrameSize
from service.domain.job_context import FrameOutput, JobContext
from service.domain.progress import CancelCheck
from service.pipelines.adain import adain_filter_latent
from service.pipelines.conditioning import ConditioningMedia, LatentCondition
from service.pipelines.latent_windows import Window, fuse, plan_windows
from service.pipelines.seeding import seeded_generator

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_LATENT_FRAMES = 16  # 121 frames, LTX-Video 0.9.7's native clip
DEFAULT_OVERLAP_LATENT_FRAMES = 3  # 24 frames: LTXVLoopingSampler's default temporal_overlap
DEFAULT_TAIL_STRENGTH = 0.5  # LTXVLoopingSampler's temporal_overlap_cond_strength
DEFAULT_DECODE_TILE_LATENT_FRAMES = 16
# 25 pixel frames crossfaded between decode tiles: on the tiny VAE, 3 latent frames leave 8% mean error
# against one whole decode, 4 leave 6% (tests/unit/test_long_video.py), at 4/3 of the decode work.
DEFAULT_DECODE_OVERLAP_LATENT_FRAMES = 4


class FrameStore(StrEnum):
    AUTO = "auto"  # in memory for one window, a temporary file for more
    MEMORY = "memory"
    TEMP_FILE = "temp_file"


@dataclass(frozen=True)
class LongVideoOptions:
    window_latent_frames: int = DEFAULT_WINDOW_LATENT_FRAMES
    overlap_latent_frames: int = DEFAULT_OVERLAP_LATENT_FRAMES
    tail_strength: float = DEFAULT_TAIL_STRENGTH
    decode_tile_latent_frames: int = DEFAULT_DECODE_TILE_LATENT_FRAMES
    decode_overlap_latent_frames: int = DEFAULT_DECODE_OVERLAP_LATENT_FRAMES
    frame_store: FrameStore = FrameStore.AUTO


class WindowRequest(NamedTuple):
    """One window of one pass to sample."""

    window_index: int
    window_count: int
    window: Window
    conditions: tuple[ConditioningMedia, ...]  # the client's, at window-local pixel frames
    tail: LatentCondition | None  # what the window continues (None for the first)
    initial: torch.Tensor | None  # this pass's starting latents for the window (None: pure noise)
    generator: torch.Generator

    @property
    def label(self) -> str:
        return f"window {self.window_index + 1}/{self.window_count}" if self.window_count > 1 else ""


# WindowRequest -> the window's sampled latents [1, C, window.length, h, w] (normalized)
WindowSampler = Callable[[WindowRequest], torch.Tensor]


def window_plan(latent_frames: int, options: LongVideoOptions) -> list[Window]:
    return plan_windows(latent_frames, options.window_latent_frames, options.overlap_latent_frames)


def window_generators(seed: int, windows: Sequence[Window]) -> list[torch.Generator]:
    """One generator per window, seeded `seed + window.start`; window 0's is the request's seed."""
    return [seeded_generator(seed, w.start) for w in windows]


def sample_in_windows(
    sampler: WindowSampler,
    windows: Sequence[Window],
    generators: Sequence[torch.Generator],
    conditions: Sequence[ConditioningMedia],
    adain_factor: float,
    is_cancelled: CancelCheck,
    options: LongVideoOptions,
    initial: torch.Tensor | None = None,
    temporal_compression: int = 8,
) -> torch.Tensor:
    """One pass over the whole video: the fused latents [1, C, F, h, w] (see the module docstring)."""
    fused: torch.Tensor | None = None
    first: torch.Tensor | None = None
    overlap = options.overlap_latent_frames
    for index, window in enumerate(windows):
        if is_cancelled():
            raise Cancelled()
        tail = None if fused is None else LatentCondition(fused[:, :, -overlap:], options.tail_strength)
        request = WindowRequest(
            window_index=index,
            window_count=len(windows),
            window=window,
            conditions=_window_conditions(window, conditions, temporal_compression),
            tail=tail,
            initial=None if initial is None else initial[:, :, window.start : window.end],
            generator=generators[index],
        )
        out = sampler(request)
        if fused is None or first is None:
            fused = first = out
            continue
        new = adain_filter_latent(out[:, :, 1:], first, adain_factor)
        fused = fuse(fused, new, overlap - 1)
    assert fused is not None
    return fused


def _window_conditions(
    window: Window, conditions: Sequence[ConditioningMedia], temporal_compression: int
) -> tuple[ConditioningMedia, ...]:
    """The frames of each condition within the window's pixel frames, at window-local positions."""
    first_frame = window.start * temporal_compression  # window-local frame 0
    last_frame = (window.end - 1) * temporal_compression  # inclusive
    parts = []
    for media in conditions:
        first = max(media.start_frame, first_frame)
        last = min(media.start_frame + media.num_frames - 1, last_frame)
        if first > last:
            continue
        offset = first - media.start_frame
        pixels = media.pixels[:, :, offset : offset + last - first + 1]
        parts.append(replace(media, pixels=pixels, start_frame=first - first_frame))
    return tuple(parts)


def frame_store_for(options: LongVideoOptions, num_windows: int) -> FrameStore:
    if options.frame_store is not FrameStore.AUTO:
        return options.frame_store
    return FrameStore.TEMP_FILE if num_windows > 1 else FrameStore.MEMORY


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


class _ReversedOutput:
    """Frame k of the video written at position F - 1 - k of `inner` (reverse_video)."""

    def __init__(self, inner: FrameOutput, num_frames: int) -> None:
        self._inner, self._num_frames = inner, num_frames

    def write(self, start: int, frames: np.ndarray) -> None:
        frames = frames[: max(0, self._num_frames - start)][::-1]
        self._inner.write(self._num_frames - start - len(frames), np.ascontiguousarray(frames))

    def result(self) -> np.ndarray:
        return self._inner.result()


def output_frames(
    ctx: JobContext, num_frames: int, size: FrameSize, reverse: bool, store: FrameStore
) -> FrameOutput:
    """Where a pipeline writes the job's output frames as they are decoded: the context's
    `frame_output` (ltx_pipeline streams them to its client), else a FrameSink kept in `store`."""
    if ctx.frame_output is None:
        return FrameSink(num_frames, size, reverse, store)
    output = ctx.frame_output(num_frames, size)
    return _ReversedOutput(output, num_frames) if reverse else output


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    # One pwrite may write less than asked (Linux stops at about 2 GiB); write on from where it stopped.
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written
