"""Encoding generated frames (and audio, when a model makes some) to MP4 with PyAV."""

from __future__ import annotations

import logging
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


def encode_mp4(
    video: GeneratedVideo, path: Path, crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET
) -> None:
    """H.264 (yuv420p) MP4 with exactly `len(video.frames)` frames at `video.frame_rate`, the moov atom
    first (`+faststart`, so players can start before the download ends), and AAC audio if `video.audio`."""
    frames = video.frames
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even width and height, got {width}x{height}")
    rate = frame_rate_fraction(video.frame_rate)
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = 1 / rate  # one tick per frame: pts = frame index
        stream.options = {"crf": str(crf), "preset": preset, "x264-params": DETERMINISTIC_X264_PARAMS}
        audio_stream = _add_audio_stream(container, video)
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio_stream is not None and video.audio is not None:
            _encode_audio(container, audio_stream, video.audio, video.audio_sample_rate)
    logger.info("encoded %d frames %dx%d at %s fps to %s", len(frames), width, height, rate, path)


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
