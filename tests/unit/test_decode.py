"""Decoding generated images (Pillow) and videos (PyAV) into [3, F, H, W] tensors in [-1, 1]."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch
from PIL import Image

from service.contract.frames import legal_frames_at_most as legal_frame_count
from service.domain.errors import ErrorType, JobError
from service.media.decode import aspect_ratio_of, decode_image, decode_video, probe
from service.media.fetch import FetchedMedia
from service.media.sniff import MediaKind

FIELD = "videos[0].video_url"
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
# One 8-bit step in [-1, 1] is 2/255; compression and resampling stay within a few steps.
TOLERANCE = 8 / 255


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _bands(size: tuple[int, int], colours: list[tuple[int, int, int]], vertical: bool = True) -> Image.Image:
    """Equal bands of colour, left to right (or top to bottom)."""
    image = Image.new("RGB", size)
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    n = len(colours)
    for i, colour in enumerate(colours):
        if vertical:
            pixels[:, i * size[0] // n : (i + 1) * size[0] // n] = colour
        else:
            pixels[i * size[1] // n : (i + 1) * size[1] // n, :] = colour
    image.paste(Image.fromarray(pixels))
    return image


def _as_signed(colour: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) / 127.5 - 1.0


def _mp4(frames: list[np.ndarray], fps: int = 24, rotation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "1", "preset": "ultrafast"})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def _grey_frames(count: int, size: tuple[int, int] = (64, 32)) -> list[np.ndarray]:
    # Frame k is a flat grey of level 10 + 10k, so decoded frames can be identified.
    return [np.full((size[1], size[0], 3), 10 + 10 * k, dtype=np.uint8) for k in range(count)]


def _grey_level(frame: torch.Tensor) -> float:
    return (frame.mean().item() + 1.0) * 127.5


def test_wide_image_is_center_cropped() -> None:
    # 80x20 in columns: red 0-20, green 20-60, blue 60-80; the centered 20x20 square is all green.
    image = _bands((80, 20), [RED, GREEN, GREEN, BLUE])
    out = decode_image(_png(image), width=16, height=16, field=FIELD)
    assert out.shape == (3, 1, 16, 16) and out.dtype == torch.float32
    assert torch.allclose(out[:, 0], _as_signed(GREEN).expand(3, 16, 16), atol=TOLERANCE)


def test_tall_image_for_portrait_and_landscape_targets() -> None:
    image = _bands((20, 80), [RED, GREEN, GREEN, BLUE], vertical=False)
    square = decode_image(_png(image), width=8, height=8, field=FIELD)
    assert torch.allclose(square[:, 0], _as_signed(GREEN).expand(3, 8, 8), atol=TOLERANCE)
    # A landscape target keeps the full width and an even narrower middle strip of rows.
    wide = decode_image(_png(image), width=32, height=8, field=FIELD)
    assert wide.shape == (3, 1, 8, 32)
    assert torch.allclose(wide[:, 0], _as_signed(GREEN).expand(3, 8, 32), atol=TOLERANCE)


def test_upscaling_keeps_range_and_shape() -> None:
    out = decode_image(_png(_bands((5, 3), [RED, BLUE])), width=64, height=32, field=FIELD)
    assert out.shape == (3, 1, 32, 64)
    assert out.min().item() >= -1.0 and out.max().item() <= 1.0


def test_exif_orientation_is_applied() -> None:
    # Stored 40x20, left red / right blue; orientation 6 means "rotate 90 degrees clockwise to view",
    # which turns the left half into the top.
    image = _bands((40, 20), [RED, BLUE])
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif)
    media = FetchedMedia(buffer.getvalue(), "image/jpeg", MediaKind.IMAGE, "test")
    assert aspect_ratio_of(media, field=FIELD) == pytest.approx(0.5)
    out = decode_image(media.data, width=10, height=20, field=FIELD)
    top, bottom = out[:, 0, 2:8].mean(dim=(1, 2)), out[:, 0, 12:18].mean(dim=(1, 2))
    assert top[0] > 0.8 and top[2] < -0.8  # red
    assert bottom[2] > 0.8 and bottom[0] < -0.8  # blue


def test_video_frames_trim_and_legal_length() -> None:
    data = _mp4(_grey_frames(20))
    out = decode_video(data, width=16, height=16, field=FIELD, max_frames=12)
    assert out.shape == (3, 12, 16, 16)
    for k in range(12):
        assert _grey_level(out[:, k]) == pytest.approx(10 + 10 * k, abs=2)
    legal = decode_video(data, width=16, height=16, field=FIELD, max_frames=12, legal_length=True)
    assert legal.shape[1] == 9  # 12 -> the longest 8k + 1 below
    assert torch.equal(legal, out[:, :9])


def test_video_resampled_to_target_fps() -> None:
    data = _mp4(_grey_frames(20), fps=24)
    half = decode_video(data, width=8, height=8, field=FIELD, max_frames=100, target_fps=12)
    assert half.shape[1] == 10
    assert [round(_grey_level(half[:, k])) for k in range(3)] == pytest.approx([10, 30, 50], abs=2)
    double = decode_video(data, width=8, height=8, field=FIELD, max_frames=6, target_fps=48)
    # Output frames 0..5 at 48 fps sit at source frames 0, 1, 1, 2, 2, 3 (nearest, halves up).
    expected = [10 + 10 * s for s in (0, 1, 1, 2, 2, 3)]
    assert [_grey_level(double[:, k]) for k in range(6)] == pytest.approx(expected, abs=2)


def test_video_probe_and_rotation() -> None:
    frame = np.asarray(_bands((64, 32), [RED, BLUE]))
    data = _mp4([frame] * 3, rotation=90)
    media = FetchedMedia(data, "video/mp4", MediaKind.VIDEO, "test")
    info = probe(media, field=FIELD)
    assert (info.width, info.height, info.fps) == (32, 64, pytest.approx(24.0))
    # 90 degrees counter-clockwise: the right (blue) half comes to the top.
    out = decode_video(data, width=16, height=32, field=FIELD, max_frames=1)
    top, bottom = out[:, 0, 2:12].mean(dim=(1, 2)), out[:, 0, 20:30].mean(dim=(1, 2))
    assert top[2] > 0.8 and top[0] < -0.8
    assert bottom[0] > 0.8 and bottom[2] < -0.8
    plain = FetchedMedia(_mp4(_grey_frames(3)), "video/mp4", MediaKind.VIDEO, "test")
    assert aspect_ratio_of(plain, field=FIELD) == pytest.approx(2.0)


def test_undecodable_input_fails_the_job_naming_the_field() -> None:
    junk = b"\x00\x00\x00\x18ftypisom" + bytes(200)
    with pytest.raises(JobError) as video_error:
        decode_video(junk, width=8, height=8, field=FIELD, max_frames=4)
    assert video_error.value.error_type is ErrorType.INPUT_FETCH_FAILED
    assert video_error.value.message.startswith(f"{FIELD}: ")
    with pytest.raises(JobError, match="cannot decode image"):
        decode_image(b"\x89PNG\r\n\x1a\n" + bytes(50), width=8, height=8, field="images[0].image_url")


@pytest.mark.parametrize(("frames", "legal"), [(1, 1), (8, 1), (9, 9), (16, 9), (17, 17), (1441, 1441)])
def test_legal_frame_count(frames: int, legal: int) -> None:
    assert legal_frame_count(frames) == legal
