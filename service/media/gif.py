"""Animated GIF from RGB frames: one palette for the whole clip (ffmpeg's palettegen over a sample of
its pixels), each frame mapped and dithered by Pillow, the file written by PyAV's GIF encoder and muxer.

Why not palettegen and paletteuse over every frame (the first version): both work through structures
sized by the distinct colours seen. palettegen's `stats_mode=full` histogram holds every distinct colour of
the whole clip in a fixed-size hash table, so its cost grows faster than the frame count: the LTX-2.3 spec
example on the tiny preset (random-weight frames, ~770k distinct colours per 1248x704 frame) spent 21-34 s
on its first 12 frames and ~175 s on all 121 in the service; paletteuse took ~0.33 s a frame on them.
Here (numbers in bench/README.md, issue 9):

- the palette is palettegen's over a seeded random draw of `sample_pixels` pixels from `sample_frames`
  frames spread over the clip (0.7 s for 2^17 noise pixels; more pixels did not raise the PSNR);
- each frame is mapped to it by Pillow (`Image.quantize(palette=...)`: a cached nearest-colour search in
  C, with Floyd-Steinberg error diffusion or none), ~20 ms per 1248x704 frame;
- PyAV's GIF encoder takes the indexed frames (pal8 with the shared palette: one global colour table).

Timing: the stream's time base is 1/fps with pts = frame index; the GIF muxer stores delays in 1/100 s and
rescales each pts to it, so 24 fps becomes delays of 4 and 5 cs (0, 4, 8, 13, 17, ...) and the whole
file lasts n/fps to the centisecond (121 frames: 504 cs). `bench/container_write.py` measures time and PSNR.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from service.domain.specs import VideoQuality

PALETTE_SAMPLE_FRAMES = 8  # frames the palette is sampled from, evenly spread over the clip
# Pixels drawn (seeded) from those frames: palettegen's cost grows with the distinct colours it sees.
PALETTE_SAMPLE_PIXELS = 2**17
SAMPLE_ROW = 256  # the sample is handed to palettegen as an image this wide
SAMPLE_SEED = 0  # the same frames always give the same palette (same request, same bytes)


@dataclass(frozen=True)
class GifPalette:
    colours: int
    dither: Image.Dither
    sample_frames: int = PALETTE_SAMPLE_FRAMES
    sample_pixels: int = PALETTE_SAMPLE_PIXELS


GIF_PALETTE = {
    VideoQuality.LOW: GifPalette(64, Image.Dither.FLOYDSTEINBERG),
    VideoQuality.MEDIUM: GifPalette(128, Image.Dither.FLOYDSTEINBERG),
    VideoQuality.HIGH: GifPalette(256, Image.Dither.FLOYDSTEINBERG),
    VideoQuality.MAXIMUM: GifPalette(256, Image.Dither.FLOYDSTEINBERG, 16, 2**18),
}


def palette_sample(frames: list[np.ndarray], palette: GifPalette) -> np.ndarray:
    """A seeded random draw of pixels from frames spread over the clip, as a SAMPLE_ROW-wide image.
    Random rather than every k-th pixel: a regular stride aliases with the decoder's periodic patterns."""
    picks = np.unique(np.linspace(0, len(frames) - 1, palette.sample_frames).round().astype(int))
    rng = np.random.default_rng(SAMPLE_SEED)
    pixels = []
    for index in picks:
        flat = frames[index].reshape(-1, 3)
        count = min(len(flat), palette.sample_pixels // len(picks))
        pixels.append(flat[np.sort(rng.choice(len(flat), count, replace=False))])
    sample = np.concatenate(pixels)
    rows = -(-len(sample) // SAMPLE_ROW)
    return np.resize(sample, (rows, SAMPLE_ROW, 3))  # the last row wraps round to the first pixels


def clip_palette(frames: list[np.ndarray], palette: GifPalette) -> Image.Image:
    """A "P" image whose palette serves every frame: ffmpeg's palettegen over `palette_sample`."""
    sample = palette_sample(frames, palette)
    graph = av.filter.Graph()
    source = graph.add_buffer(width=SAMPLE_ROW, height=len(sample), format="rgb24", time_base=Fraction(1, 1))  # type: ignore[arg-type]
    palettegen = graph.add(
        "palettegen", f"max_colors={palette.colours}:stats_mode=full:reserve_transparent=0"
    )
    sink = graph.add("buffersink")
    source.link_to(palettegen)
    palettegen.link_to(sink)
    graph.configure()
    frame = av.VideoFrame.from_ndarray(sample, format="rgb24")
    frame.pts, frame.time_base = 0, Fraction(1, 1)
    graph.push(frame)
    graph.push(None)
    palette_frame = graph.pull()
    assert isinstance(palette_frame, av.VideoFrame)
    rgb = palette_frame.to_ndarray(format="rgb24").reshape(-1, 3)
    image = Image.new("P", (1, 1))
    image.putpalette(rgb.astype(np.uint8).tobytes(), "RGB")
    return image


def argb_palette(palette_image: Image.Image) -> np.ndarray:
    """The 256 x 4 ARGB table PyAV's pal8 frames carry (unused entries opaque black)."""
    rgb = np.asarray(palette_image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)[:256]
    table = np.zeros((256, 4), dtype=np.uint8)
    table[:, 0] = 255
    table[: len(rgb), 1:] = rgb
    return table


def indexed_frame(image: np.ndarray, palette_image: Image.Image, dither: Image.Dither) -> np.ndarray:
    """`image` (uint8 H x W x 3) as palette indices (uint8 H x W)."""
    mapped = Image.fromarray(np.ascontiguousarray(image)).quantize(palette=palette_image, dither=dither)
    return np.asarray(mapped, dtype=np.uint8)


def encode_gif(path: Path, frames: list[np.ndarray], fps: Fraction, quality: VideoQuality) -> int:
    """Write `frames` (uint8 H x W x 3, at least one) to `path` as an animated GIF; returns the count."""
    settings = GIF_PALETTE[quality]
    palette_image = clip_palette(frames, settings)
    table = argb_palette(palette_image)
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w", format="gif") as container:
        stream = container.add_stream("gif", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
        stream.codec_context.time_base = 1 / fps  # pts = frame index; the muxer rescales to 1/100 s
        for index, image in enumerate(frames):
            indexed = (indexed_frame(image, palette_image, settings.dither), table)
            frame = av.VideoFrame.from_ndarray(indexed, format="pal8")  # type: ignore[arg-type]
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return len(frames)


def all_frames(chunks: Iterable[np.ndarray]) -> list[np.ndarray]:
    """The chunks' frames as views (no copy): the palette needs a sample from the whole clip first."""
    return [image for pixels in chunks for image in pixels]
