"""MP4 encoding: decoded back with PyAV and checked."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import psutil
import pytest

from service.domain.outputs import GeneratedVideo
from service.media.encode import encode_frames, encode_mp4, frame_chunks, frame_rate_fraction

ORANGE = (230, 120, 20)


def _solid(frames: int, height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    video[...] = colour
    return video


def _encode(tmp_path: Path, video: GeneratedVideo) -> Path:
    path = tmp_path / "out.mp4"
    encode_mp4(video, path)
    return path


@pytest.mark.parametrize(("frames", "fps"), [(9, 25.0), (17, 24.0), (10, 30.0)])
def test_exact_frame_count_size_and_rate(tmp_path: Path, frames: int, fps: float) -> None:
    video = GeneratedVideo(frames=_solid(frames, 32, 64, ORANGE), frame_rate=fps, prompt="p", seed=1)
    with av.open(str(_encode(tmp_path, video))) as container:
        stream = container.streams.video[0]
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == Fraction(fps)
        assert (stream.width, stream.height) == (64, 32)
        assert len(container.streams.audio) == 0
    assert len(decoded) == frames
    assert np.abs(decoded[0].reshape(-1, 3).mean(axis=0) - ORANGE).max() < 8


def test_frames_keep_their_order(tmp_path: Path) -> None:
    frames = np.concatenate([_solid(4, 32, 32, (0, 0, 0)), _solid(4, 32, 32, (255, 255, 255))])
    path = _encode(tmp_path, GeneratedVideo(frames=frames, frame_rate=25, prompt="p", seed=1))
    with av.open(str(path)) as container:
        means = [frame.to_ndarray(format="rgb24").mean() for frame in container.decode(video=0)]
    assert means[:4] == pytest.approx([0] * 4, abs=8) and means[4:] == pytest.approx([255] * 4, abs=8)


def test_moov_atom_comes_first_for_streaming(tmp_path: Path) -> None:
    path = _encode(
        tmp_path, GeneratedVideo(frames=_solid(9, 32, 32, ORANGE), frame_rate=25, prompt="p", seed=1)
    )
    head = path.read_bytes()
    assert head.index(b"moov") < head.index(b"mdat")


def test_audio_track_is_aac_and_lasts_as_long_as_the_video(tmp_path: Path) -> None:
    rate, frames, fps = 48_000, 25, 25.0
    t = np.arange(int(rate * frames / fps)) / rate
    tone = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    video = GeneratedVideo(
        frames=_solid(frames, 32, 32, ORANGE),
        frame_rate=fps,
        prompt="p",
        seed=1,
        audio=tone,
        audio_sample_rate=rate,
    )
    with av.open(str(_encode(tmp_path, video))) as container:
        audio = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio))
        assert audio.codec_context.name == "aac"
        assert (audio.rate, audio.channels) == (rate, 2)
    assert abs(samples / rate - frames / fps) < 0.05


def test_ntsc_rates_are_stored_exactly() -> None:
    assert frame_rate_fraction(23.976) == Fraction(24000, 1001)
    assert frame_rate_fraction(29.97) == Fraction(30000, 1001)
    assert frame_rate_fraction(12.5) == Fraction(25, 2)
    assert frame_rate_fraction(25.0) == Fraction(25)


def test_bad_frames_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_mp4(
            GeneratedVideo(frames=np.zeros((2, 32, 32, 3), np.float32), frame_rate=25, prompt="p", seed=1),
            tmp_path / "x.mp4",
        )
    with pytest.raises(ValueError, match="even"):
        encode_mp4(
            GeneratedVideo(frames=_solid(2, 31, 32, ORANGE), frame_rate=25, prompt="p", seed=1),
            tmp_path / "y.mp4",
        )


def _decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_chunks_from_an_iterator_encode_as_the_whole_video_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(11, 32, 48, 3), dtype=np.uint8)
    video = GeneratedVideo(frames=frames, frame_rate=24.0, prompt="p", seed=1)
    whole = _encode(tmp_path, video)
    streamed = tmp_path / "streamed.mp4"
    pieces = (frames[start : start + 4] for start in range(0, 11, 4))  # 4 + 4 + 3, never the whole
    empty = GeneratedVideo(
        frames=np.empty((0, 32, 48, 3), dtype=np.uint8), frame_rate=24.0, prompt="p", seed=1
    )
    assert encode_frames(pieces, 48, 32, empty, streamed) == 11
    assert streamed.read_bytes() == whole.read_bytes()  # the same frames give the same stream


def test_a_chunk_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    video = GeneratedVideo(frames=_solid(2, 32, 48, ORANGE), frame_rate=24.0, prompt="p", seed=1)
    with pytest.raises(ValueError, match=r"uint8 \[n, 32, 48, 3\]"):
        encode_frames(iter([_solid(2, 32, 64, ORANGE)]), 48, 32, video, tmp_path / "bad.mp4")


def _resident_bytes_of(path: Path) -> int:
    return sum(m.rss for m in psutil.Process().memory_maps(grouped=True) if m.path == str(path))


def test_reading_a_memmapped_video_in_chunks_keeps_one_chunk_resident(tmp_path: Path) -> None:
    path = tmp_path / "frames.u8"
    shape = (64, 256, 256, 3)  # 12 MiB, 192 KiB a frame
    np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8).tofile(path)
    chunk_bytes = 4 * 256 * 256 * 3

    frames = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
    copied = [chunk.copy() for chunk in frame_chunks(frames, 4)]
    resident_after_chunks = _resident_bytes_of(path)
    assert np.array_equal(np.concatenate(copied), np.fromfile(path, dtype=np.uint8).reshape(shape))

    plain = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
    touched = [np.array(plain[start : start + 4]) for start in range(0, 64, 4)]
    resident_plain = _resident_bytes_of(path) - resident_after_chunks
    assert len(touched) == 16
    assert resident_after_chunks <= chunk_bytes + 8192  # at most the pages of one chunk
    assert resident_plain >= 8 * chunk_bytes  # reading without dropping keeps what it read
