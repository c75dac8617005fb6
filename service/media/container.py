"""Writing frames (streamed in chunks) and optional audio to the four LTX-2.3 output containers with PyAV.

| output type | container | video | audio |
|---|---|---|---|
| X264 (.mp4) | mp4, `+faststart` | libx264, yuv420p | AAC 192 kb/s |
| VP9 (.webm) | webm | libvpx-vp9, yuv420p, constant quality (`b=0`) | Opus 128 kb/s (48 kHz native) |
| PRORES4444 (.mov) | mov | prores_ks profile 4444, yuva444p10le (alpha-capable, opaque) | PCM s16le |
| GIF (.gif) | gif | one palette per clip (ffmpeg palettegen over a pixel sample), Pillow dither, pal8 (`gif.py`) | none (GIF has no audio) |

`video_quality` (ours) picks the quantiser: x264/VP9 CRF, ProRes `quant_mat`, GIF palette size and the
(seeded random) pixels its palette is built from, drawn from frames spread over the clip (`gif.py`):

| quality | x264 CRF | VP9 CRF | ProRes quant_mat | GIF colours, dither, palette sample |
|---|---|---|---|---|
| low | 28 | 40 | lt | 64, Floyd-Steinberg, 2^17 px of 8 frames |
| medium | 23 | 33 | default | 128, Floyd-Steinberg, 2^17 px of 8 frames |
| high (default) | 18 | 24 | hq | 256, Floyd-Steinberg, 2^17 px of 8 frames |
| maximum | 12 | 15 | hq, qscale 1 (finer quantiser) | 256, Floyd-Steinberg, 2^18 px of 16 frames |

`video_write_mode` (ours) trades encode time against size: x264 preset veryfast / fast / slower, VP9
deadline realtime+cpu-used 8 / realtime+4 / good+1; `small` also adds +2 to the CRF (a slower preset alone did
not make files smaller at a fixed CRF). ProRes and GIF ignore it (intra-only / palette encoders).

Audio is cut or padded with silence to the video's duration by the caller (the pipeline); GIF drops it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from service.domain.specs import VideoOutputType, VideoQuality, VideoWriteMode
from service.media.gif import all_frames, encode_gif

logger = logging.getLogger(__name__)

_AUDIO_LAYOUTS = {1: "mono", 2: "stereo"}


@dataclass(frozen=True)
class ContainerFormat:
    format: str
    extension: str
    content_type: str


FORMATS: dict[VideoOutputType, ContainerFormat] = {
    VideoOutputType.X264_MP4: ContainerFormat("mp4", ".mp4", "video/mp4"),
    VideoOutputType.VP9_WEBM: ContainerFormat("webm", ".webm", "video/webm"),
    VideoOutputType.PRORES4444_MOV: ContainerFormat("mov", ".mov", "video/quicktime"),
    VideoOutputType.GIF: ContainerFormat("gif", ".gif", "image/gif"),
}

X264_CRF = {VideoQuality.LOW: 28, VideoQuality.MEDIUM: 23, VideoQuality.HIGH: 18, VideoQuality.MAXIMUM: 12}
VP9_CRF = {VideoQuality.LOW: 40, VideoQuality.MEDIUM: 33, VideoQuality.HIGH: 24, VideoQuality.MAXIMUM: 15}
PRORES_QUANT = {
    VideoQuality.LOW: {"quant_mat": "lt"},
    VideoQuality.MEDIUM: {"quant_mat": "default"},
    VideoQuality.HIGH: {"quant_mat": "hq"},
    VideoQuality.MAXIMUM: {"quant_mat": "hq", "bits_per_mb": "8000"},
}
X264_PRESET = {
    VideoWriteMode.FAST: "veryfast",
    VideoWriteMode.BALANCED: "fast",
    VideoWriteMode.SMALL: "slower",
}
VP9_SPEED = {
    VideoWriteMode.FAST: {"deadline": "realtime", "cpu-used": "8"},
    # realtime+4 rather than good+4: 1.7-2x less CPU for ~12 % more bytes on a smooth clip (bench/README.md)
    VideoWriteMode.BALANCED: {"deadline": "realtime", "cpu-used": "4"},
    VideoWriteMode.SMALL: {"deadline": "good", "cpu-used": "1"},
}
SMALL_MODE_EXTRA_CRF = 2
# x264's macroblock-tree rate control across frame threads made the same frames encode differently from
# run to run; without it the same request and seed give the same bytes.
DETERMINISTIC_X264_PARAMS = "mbtree=0"


@dataclass(frozen=True)
class EncodeSettings:
    output_type: VideoOutputType = VideoOutputType.X264_MP4
    quality: VideoQuality = VideoQuality.HIGH
    write_mode: VideoWriteMode = VideoWriteMode.BALANCED

    @property
    def container(self) -> ContainerFormat:
        return FORMATS[self.output_type]


@dataclass(frozen=True)
class AudioTrack:
    samples: np.ndarray  # float32 [channels, samples] in [-1, 1]
    sample_rate: int


@dataclass(frozen=True)
class WrittenVideo:
    num_frames: int
    width: int
    height: int


def frame_rate_fraction(frame_rate: float) -> Fraction:
    """25.0 -> 25, 23.976 -> 24000/1001: the exact rational rate a container stores."""
    if float(frame_rate).is_integer():
        return Fraction(int(frame_rate))
    ntsc = round(frame_rate * 1.001)
    if abs(frame_rate - ntsc / 1.001) < 1e-3:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(frame_rate).limit_denominator(1001)


def write_video(
    path: Path,
    chunks: Iterable[np.ndarray],
    fps: float,
    settings: EncodeSettings,
    audio: AudioTrack | None = None,
) -> WrittenVideo:
    """Encode uint8 [n, H, W, 3] RGB chunks (any n) and `audio` into `path`; returns what was written."""
    if settings.output_type is VideoOutputType.GIF:
        return _write_gif(path, chunks, fps, settings.quality)
    fmt = settings.container
    options = {"movflags": "+faststart"} if fmt.format == "mp4" else {}
    rate = frame_rate_fraction(fps)
    with av.open(str(path), mode="w", format=fmt.format, options=options) as container:
        stream: av.VideoStream | None = None
        count, size = 0, (0, 0)
        for pixels in _checked(chunks):
            if stream is None:
                size = (pixels.shape[2], pixels.shape[1])
                stream = _video_stream(container, settings, rate, *size)
                audio_stream = _audio_stream(container, settings, audio)
            for image in pixels:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = count
                container.mux(stream.encode(frame))
                count += 1
        if stream is None:
            raise ValueError("no frames to encode")
        container.mux(stream.encode(None))
        if audio is not None and audio_stream is not None:
            _encode_audio(container, audio_stream, audio)
    logger.info("wrote %d frames %dx%d at %s fps as %s to %s", count, *size, rate, settings.output_type, path)
    return WrittenVideo(count, *size)


def _checked(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for pixels in chunks:
        if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [n, H, W, 3], got {pixels.dtype} {pixels.shape}")
        if len(pixels):
            yield pixels


def _video_stream(
    container: av.container.OutputContainer, settings: EncodeSettings, rate: Fraction, width: int, height: int
) -> av.VideoStream:
    kind = settings.output_type
    if kind is not VideoOutputType.PRORES4444_MOV and (width % 2 or height % 2):
        raise ValueError(f"yuv420p needs even width and height, got {width}x{height}")
    extra_crf = SMALL_MODE_EXTRA_CRF if settings.write_mode is VideoWriteMode.SMALL else 0
    if kind is VideoOutputType.X264_MP4:
        stream = container.add_stream("libx264", rate=rate)
        stream.pix_fmt = "yuv420p"
        stream.options = {
            "crf": str(X264_CRF[settings.quality] + extra_crf),
            "preset": X264_PRESET[settings.write_mode],
            "x264-params": DETERMINISTIC_X264_PARAMS,
        }
    elif kind is VideoOutputType.VP9_WEBM:
        stream = container.add_stream("libvpx-vp9", rate=rate)
        stream.pix_fmt = "yuv420p"
        speed = VP9_SPEED[settings.write_mode]
        stream.options = {"crf": str(VP9_CRF[settings.quality] + extra_crf), "b": "0", "row-mt": "1", **speed}
    else:
        stream = container.add_stream("prores_ks", rate=rate)
        stream.pix_fmt = "yuva444p10le"
        stream.options = {"profile": "4444", **PRORES_QUANT[settings.quality]}
    stream.width, stream.height = width, height
    stream.codec_context.time_base = 1 / rate  # one tick per frame: pts = frame index
    return stream


def _audio_stream(
    container: av.container.OutputContainer, settings: EncodeSettings, audio: AudioTrack | None
) -> av.AudioStream | None:
    if audio is None:
        return None
    channels = audio.samples.shape[0]
    if channels not in _AUDIO_LAYOUTS or audio.sample_rate <= 0:
        raise ValueError(f"audio must be mono or stereo with a sample rate, got {audio.samples.shape}")
    codec, bit_rate = {
        VideoOutputType.X264_MP4: ("aac", 192_000),
        VideoOutputType.VP9_WEBM: ("libopus", 128_000),
        VideoOutputType.PRORES4444_MOV: ("pcm_s16le", 0),
    }[settings.output_type]
    stream: Any = container.add_stream(codec, rate=audio.sample_rate)
    stream.layout = _AUDIO_LAYOUTS[channels]
    if bit_rate:
        stream.bit_rate = bit_rate
    return stream


def _encode_audio(container: av.container.OutputContainer, stream: av.AudioStream, audio: AudioTrack) -> None:
    samples = np.ascontiguousarray(np.clip(audio.samples, -1.0, 1.0), dtype=np.float32)
    layout = _AUDIO_LAYOUTS[samples.shape[0]]
    if stream.codec_context.name == "pcm_s16le":
        pcm = np.round(samples * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm.T.reshape(1, -1)), format="s16", layout=layout
        )
    else:
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
    frame.sample_rate = audio.sample_rate
    frame.pts = 0
    # PyAV re-chunks one long frame into the encoder's frame size (and resamples to its sample format).
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _write_gif(path: Path, chunks: Iterable[np.ndarray], fps: float, quality: VideoQuality) -> WrittenVideo:
    frames = all_frames(_checked(chunks))
    if not frames:
        raise ValueError("no frames to encode")
    count = encode_gif(path, frames, frame_rate_fraction(fps), quality)
    height, width = frames[0].shape[:2]
    logger.info("wrote %d frames %dx%d at %s fps as GIF to %s", count, width, height, fps, path)
    return WrittenVideo(count, width, height)
