"""Encoding generated frames (and audio, when a model makes some) to MP4 with PyAV.

`encode_frames` takes the frames as an iterator of chunks [n, H, W, 3], so a caller can feed it from
wherever the frames are (a file, a stream of responses) holding one chunk at a time; `encode_mp4` feeds it
a whole `GeneratedVideo` chunk by chunk.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from service.domain.outputs import GeneratedVideo

logger = logging.getLogger(__name__)

# x264's CRF 18 is near visually lossless; "fast" keeps CPU encoding of long 720p clips to seconds with a
# small size cost over "medium".
DEFAULT_CRF = 18
DEFAULT_PRESET = "fast"
# x264's macroblock-tree rate control, run across frame threads, gave different bits for the same frames
# from run to run (measured: 3 encodes of one clip, 3 different streams). Without it the same request and
# seed give the same MP4, at a small cost in compression.
DETERMINISTIC_X264_PARAMS = "mbtree=0"
AUDIO_BIT_RATE = 192_000
_AUDIO_LAYOUTS = {1: "mono", 2: "stereo"}


def frame_rate_fraction(frame_rate: float) -> Fraction:
    """25.0 -> 25, 23.976 -> 24000/1001: the exact rational rate a container stores."""
    if float(frame_rate).is_integer():
        return Fraction(int(frame_rate))
    ntsc = round(frame_rate * 1.001)  # 23.976, 29.97 and 59.94 are N * 1000 / 1001
    if abs(frame_rate - ntsc / 1.001) < 1e-3:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(frame_rate).limit_denominator(1001)


ENCODE_CHUNK_FRAMES = 16  # frames read and converted at a time: 44 MB at 720p


def encode_mp4(
    video: GeneratedVideo,
    path: Path,
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
    chunk_filter: Callable[[Iterator[np.ndarray]], Iterable[np.ndarray]] | None = None,
) -> None:
    """H.264 (yuv420p) MP4 with exactly `len(video.frames)` frames at `video.frame_rate`, the moov atom
    first (`+faststart`, so players can start before the download ends), and AAC audio if `video.audio`.
    `chunk_filter` sees the chunks on their way to the encoder (the job runner stops a cancelled
    encode between two chunks there)."""
    frames = video.frames
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    chunks: Iterable[np.ndarray] = frame_chunks(frames, ENCODE_CHUNK_FRAMES)
    if chunk_filter is not None:
        chunks = chunk_filter(frame_chunks(frames, ENCODE_CHUNK_FRAMES))
    encode_frames(chunks, width, height, video, path, crf=crf, preset=preset)


def encode_frames(
    chunks: Iterable[np.ndarray],
    width: int,
    height: int,
    video: GeneratedVideo,
    path: Path,
    crf: int = DEFAULT_CRF,
    preset: str = DEFAULT_PRESET,
) -> int:
    """Encode the chunks (uint8 [n, height, width, 3] each, in order) at `video`'s frame rate, with its
    audio if any; return the frame count. `video.frames` is not read."""
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even width and height, got {width}x{height}")
    rate = frame_rate_fraction(video.frame_rate)
    count = 0
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / rate  # one tick per frame: pts = frame index
        stream.options = {"crf": str(crf), "preset": preset, "x264-params": DETERMINISTIC_X264_PARAMS}
        audio_stream = _add_audio_stream(container, video)
        for chunk in chunks:
            if chunk.shape[1:] != (height, width, 3) or chunk.dtype != np.uint8:
                raise ValueError(
                    f"a chunk must be uint8 [n, {height}, {width}, 3], got {chunk.dtype} {chunk.shape}"
                )
            for pixels in chunk:
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = count
                container.mux(stream.encode(frame))
                count += 1
        container.mux(stream.encode(None))
        if audio_stream is not None and video.audio is not None:
            _encode_audio(container, audio_stream, video.audio, video.audio_sample_rate)
    logger.info("encoded %d frames %dx%d at %s fps to %s", count, width, height, rate, path)
    return count


def frame_chunks(frames: np.ndarray, chunk_frames: int) -> Iterator[np.ndarray]:
    """`frames` as consecutive copies of at most `chunk_frames` frames. For a memory-mapped video (a long
    one, kept in a temporary file) the pages of each chunk are dropped from this process once copied, so
    reading it through holds one chunk, not the whole file, in resident memory."""
    mapping = getattr(frames, "_mmap", None) if isinstance(frames, np.memmap) else None
    for start in range(0, len(frames), chunk_frames):
        view = frames[start : start + chunk_frames]
        chunk = np.array(view)
        if mapping is not None and view.flags.c_contiguous:
            _drop_pages(mapping, view)
        yield chunk


def _drop_pages(mapping: mmap.mmap, view: np.ndarray) -> None:
    """Forget the resident pages under `view`, a contiguous part of `mapping` (MADV_DONTNEED on a file
    mapping drops them from this process; the file keeps the data)."""
    base = np.frombuffer(mapping, dtype=np.uint8).ctypes.data
    offset = view.ctypes.data - base
    aligned = offset - offset % mmap.PAGESIZE
    mapping.madvise(mmap.MADV_DONTNEED, aligned, view.nbytes + offset - aligned)


def _add_audio_stream(
    container: av.container.OutputContainer, video: GeneratedVideo
) -> av.AudioStream | None:
    if video.audio is None:
        return None
    channels = video.audio.shape[0]
    if channels not in _AUDIO_LAYOUTS or video.audio_sample_rate <= 0:
        raise ValueError(f"audio must be mono or stereo with a sample rate, got {video.audio.shape}")
    stream = container.add_stream("aac", rate=video.audio_sample_rate)
    stream.layout = _AUDIO_LAYOUTS[channels]
    stream.bit_rate = AUDIO_BIT_RATE
    return stream


def _encode_audio(
    container: av.container.OutputContainer, stream: av.AudioStream, audio: np.ndarray, sample_rate: int
) -> None:
    samples = np.ascontiguousarray(np.clip(audio, -1.0, 1.0), dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=_AUDIO_LAYOUTS[samples.shape[0]])
    frame.sample_rate = sample_rate
    frame.pts = 0
    # PyAV re-chunks one long frame into the encoder's frame size (1024 samples for AAC).
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
