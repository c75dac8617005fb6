"""The GIF writer: close to its source, timed to the requested rate, and its cost bounded by a palette
sample rather than by the clip's distinct colours."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from service.domain.specs import VideoOutputType, VideoQuality
from service.media.container import EncodeSettings, write_video
from service.media.gif import GIF_PALETTE, palette_sample


def _gradient(frames: int = 12, width: int = 160, height: int = 96) -> np.ndarray:
    # Smooth colour ramps moving over time: a palette built from a few frames has to cover all of them.
    y, x = np.mgrid[0:height, 0:width]
    clip = [
        np.stack([(x + 4 * t) % 256, (y * 2 + t) % 256, (x + y + 2 * t) % 256], -1) for t in range(frames)
    ]
    return np.stack(clip).astype(np.uint8)


def _write_gif(path: Path, frames: np.ndarray, fps: float, quality: VideoQuality = VideoQuality.HIGH) -> Path:
    write_video(
        path,
        (frames[i : i + 5] for i in range(0, len(frames), 5)),
        fps,
        EncodeSettings(VideoOutputType.GIF, quality),
    )
    return path


def _psnr(path: Path, source: np.ndarray) -> float:
    with av.open(str(path)) as container:
        decoded = np.stack(
            [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
        )
    assert decoded.shape == source.shape
    mse = float(((decoded.astype(np.float64) - source) ** 2).mean())
    return 10 * np.log10(255**2 / mse)


def _packet_pts(path: Path) -> tuple[list[int], int]:
    """Each frame's start and the file's end, in the GIF's 1/100 s."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base == Fraction(1, 100)
        timed = [(p.pts, p.duration) for p in container.demux(stream) if p.pts is not None]
    starts = [int(pts or 0) for pts, _ in timed]
    return starts, starts[-1] + int(timed[-1][1] or 0)


def test_decoded_frames_are_close_to_the_source(tmp_path: Path) -> None:
    clip = _gradient()
    psnr = {
        quality: _psnr(_write_gif(tmp_path / f"{quality.value}.gif", clip, 24.0, quality), clip)
        for quality in (VideoQuality.LOW, VideoQuality.MEDIUM, VideoQuality.HIGH)
    }
    # Measured 25.2 / 26.7 / 28.8 dB on this clip (64 / 128 / 256 colours, all dithered); a palette in
    # the wrong byte order, or one that misses the colours of frames it was not sampled from, falls far
    # below.
    assert psnr[VideoQuality.HIGH] > 27
    assert psnr[VideoQuality.LOW] < psnr[VideoQuality.MEDIUM] < psnr[VideoQuality.HIGH]


def test_a_one_colour_clip_stays_that_colour(tmp_path: Path) -> None:
    clip = np.full((3, 16, 24, 3), (200, 40, 90), dtype=np.uint8)
    path = _write_gif(tmp_path / "flat.gif", clip, 10.0)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    assert len(decoded) == 3
    assert all(np.abs(frame.astype(int) - clip[0]).max() <= 2 for frame in decoded)


@pytest.mark.parametrize(("fps", "delays"), [(24.0, {4, 5}), (30.0, {3, 4}), (25.0, {4})])
def test_delays_add_up_to_the_requested_rate(tmp_path: Path, fps: float, delays: set[int]) -> None:
    frames = 49
    starts, end = _packet_pts(_write_gif(tmp_path / "t.gif", _gradient(frames, 32, 16), fps))
    assert len(starts) == frames
    assert set(np.diff([*starts, end]).tolist()) <= delays
    assert abs(end / 100 - frames / fps) <= 0.01  # 24 fps: 204 cs, not 196 as at a fixed 4 cs


def test_the_palette_sample_is_bounded_whatever_the_clip() -> None:
    settings = GIF_PALETTE[VideoQuality.HIGH]
    big = [np.zeros((704, 1248, 3), dtype=np.uint8)] * 121
    assert palette_sample(big, settings).size <= 3 * (settings.sample_pixels + 256)
    small = [np.zeros((8, 8, 3), dtype=np.uint8)] * 3
    assert palette_sample(small, settings).size <= 3 * (3 * 64 + 256)


def test_a_clip_of_distinct_colours_is_written_quickly(tmp_path: Path) -> None:
    """The regression: palettegen over every frame of a noisy clip (every pixel a new colour) grew with the
    distinct colours: 175 s for the LTX-2.3 spec example's 121 frames. This clip has ~6M distinct colours;
    the writer before the fix took 33.9 s on it (load average 7), this one 0.7 s."""
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (48, 270, 480, 3), dtype=np.uint8)
    started = time.perf_counter()
    _write_gif(tmp_path / "noise.gif", clip, 24.0)
    assert time.perf_counter() - started < 20
