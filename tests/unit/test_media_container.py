"""The four LTX-2.3 output containers, decoded back with PyAV; quality and write mode change what they say."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from service.domain.specs import VideoOutputType, VideoQuality, VideoWriteMode
from service.media.container import FORMATS, AudioTrack, EncodeSettings, write_video


def gif_duration_s(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        last = [p for p in container.demux(stream) if p.pts is not None][-1]
        return float(((last.pts or 0) + (last.duration or 0)) * (stream.time_base or 0))


FPS = 24.0
FRAMES = 17
RATE = 48_000


def _clip(frames: int = FRAMES, width: int = 96, height: int = 64) -> np.ndarray:
    # A moving gradient with mild noise: compressible, so quantisers make a difference.
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    clip = [
        ((x + 3 * t) % 256 + (y * 2) % 64 + rng.integers(0, 24, (height, width)))[..., None]
        for t in range(frames)
    ]
    return np.clip(np.concatenate([np.stack(clip)] * 3, axis=-1), 0, 255).astype(np.uint8)


def _audio() -> AudioTrack:
    samples = round(FRAMES / FPS * RATE)
    tone = 0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / RATE).astype(np.float32)
    return AudioTrack(np.stack([tone, tone]), RATE)


def _write(path: Path, settings: EncodeSettings, audio: AudioTrack | None = None) -> Path:
    frames = _clip()
    write_video(path, (frames[i : i + 5] for i in range(0, FRAMES, 5)), FPS, settings, audio)
    return path


@pytest.mark.parametrize("output_type", list(VideoOutputType))
@pytest.mark.parametrize("with_audio", [True, False])
def test_each_container_decodes_with_its_geometry_and_audio(
    tmp_path: Path, output_type: VideoOutputType, with_audio: bool
) -> None:
    path = _write(
        tmp_path / f"out{FORMATS[output_type].extension}",
        EncodeSettings(output_type),
        _audio() if with_audio else None,
    )
    with av.open(str(path)) as container:
        assert FORMATS[output_type].format in container.format.name.split(",")
        video = container.streams.video[0]
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video)]
        assert len(decoded) == FRAMES and decoded[0].shape == (64, 96, 3)
        if output_type is VideoOutputType.GIF:  # ffmpeg guesses a GIF's rate from its shortest delay
            assert gif_duration_s(path) == pytest.approx(FRAMES / FPS, abs=0.01)
        else:
            assert video.average_rate is not None
            assert float(video.average_rate) == pytest.approx(FPS)
        codec = {
            "X264 (.mp4)": "h264",
            "VP9 (.webm)": "vp9",
            "PRORES4444 (.mov)": "prores",
            "GIF (.gif)": "gif",
        }
        assert video.codec_context.name == codec[output_type.value]
    with av.open(str(path)) as container:
        has_audio = bool(container.streams.audio)
        assert has_audio == (with_audio and output_type is not VideoOutputType.GIF)
        if has_audio:
            stream = container.streams.audio[0]
            assert stream.rate == RATE
            samples = sum(frame.samples for frame in container.decode(stream))
            assert abs(samples - FRAMES / FPS * RATE) <= RATE / FPS  # within one video frame


def test_prores_is_4444_with_an_alpha_capable_format(tmp_path: Path) -> None:
    path = _write(tmp_path / "out.mov", EncodeSettings(VideoOutputType.PRORES4444_MOV))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert "4444" in (stream.codec_context.profile or "")
        assert (stream.codec_context.pix_fmt or "").startswith("yuva444")


@pytest.mark.parametrize("output_type", list(VideoOutputType))
def test_video_quality_changes_file_size(tmp_path: Path, output_type: VideoOutputType) -> None:
    sizes = {}
    for quality in (VideoQuality.LOW, VideoQuality.HIGH):
        path = _write(
            tmp_path / f"{quality.value}{FORMATS[output_type].extension}",
            EncodeSettings(output_type, quality),
        )
        sizes[quality] = path.stat().st_size
    assert sizes[VideoQuality.LOW] < sizes[VideoQuality.HIGH]


@pytest.mark.parametrize("output_type", [VideoOutputType.X264_MP4, VideoOutputType.VP9_WEBM])
def test_write_mode_trades_time_for_size(tmp_path: Path, output_type: VideoOutputType) -> None:
    measured = {}
    for mode in (VideoWriteMode.FAST, VideoWriteMode.SMALL):
        started = time.perf_counter()
        path = _write(
            tmp_path / f"{mode.value}{FORMATS[output_type].extension}",
            EncodeSettings(output_type, write_mode=mode),
        )
        measured[mode] = (time.perf_counter() - started, path.stat().st_size)
    assert measured[VideoWriteMode.SMALL][1] < measured[VideoWriteMode.FAST][1]
    assert measured[VideoWriteMode.SMALL][0] > measured[VideoWriteMode.FAST][0]


def test_same_frames_same_bytes(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.mp4", EncodeSettings(), _audio()).read_bytes()
    b = _write(tmp_path / "b.mp4", EncodeSettings(), _audio()).read_bytes()
    assert a == b
