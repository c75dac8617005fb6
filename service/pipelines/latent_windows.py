"""Temporal windows over a video's latents: the reference long-video method's building blocks.

LTX-Video's long-video method (ComfyUI-LTXVideo's `LTXVLoopingSampler`, ported to diffusers as
`LTXI2VLongMultiPromptPipeline`) samples a long video in overlapping windows of LATENT frames:

- `plan_windows`: windows of `window` latent frames, each starting `window - overlap` after the last
  (diffusers' `split_into_temporal_windows`); the last one ends at the video's end and may be shorter.
- Each window after the first is conditioned on the previous windows' last `overlap` latent frames, added
  as extra tokens at conditioning strength 0.5 at the window's first `overlap` frame positions
  (`inject_prev_tail_latents`); see service/pipelines/long_video.py.
- `fuse`: the new window without its first latent frame (the one-frame "first frame" of a causal clip) is
  crossfaded linearly over the `overlap - 1` frames it shares with what came before (`linear_overlap_fuse`).
- The whole video's latents are decoded once, in temporal tiles (`decode_in_tiles`): each tile of latent
  frames [s, e) decodes to pixel frames 8s .. 8(e - 1) (measured on the VAE: frame 0 of a tile that starts
  at latent s is pixel 8s), consecutive tiles share 8(overlap - 1) + 1 pixel frames, crossfaded linearly,
  and frames are yielded as soon as no later tile touches them, so memory is bounded by a tile.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from service.pipelines.components import VaeDecoder


class Window(NamedTuple):
    start: int  # first latent frame
    end: int  # one past the last

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_windows(latent_frames: int, window: int, overlap: int) -> list[Window]:
    """Windows of at most `window` latent frames over `latent_frames`, overlapping by `overlap`."""
    if window < 2 or not 0 < overlap < window:
        raise ValueError(f"need 0 < overlap ({overlap}) < window ({window}) latent frames, window >= 2")
    if latent_frames <= window:
        return [Window(0, latent_frames)]
    stride = window - overlap
    windows: list[Window] = []
    start = 0
    while True:
        end = min(start + window, latent_frames)
        windows.append(Window(start, end))
        if end == latent_frames:
            return windows
        start += stride


def crossfade_weights(count: int, like: torch.Tensor) -> torch.Tensor:
    """Weights of the NEW part over a `count`-frame overlap: linspace(0, 1) without its ends."""
    return torch.linspace(0, 1, count + 2, device=like.device, dtype=like.dtype)[1:-1]


def fuse(fused: torch.Tensor, new: torch.Tensor, shared: int) -> torch.Tensor:
    """`fused` [1, C, T, h, w] (the video so far) continued by `new`, whose first `shared` latent frames
    are `fused`'s last `shared`: those are crossfaded linearly (the reference's `linear_overlap_fuse`)."""
    if shared <= 0:
        return torch.cat([fused, new], dim=2)
    weight = crossfade_weights(shared, new).reshape(1, 1, shared, 1, 1)
    blended = (1 - weight) * fused[:, :, -shared:] + weight * new[:, :, :shared]
    return torch.cat([fused[:, :, :-shared], blended, new[:, :, shared:]], dim=2)


class DecodedFrames(NamedTuple):
    start: int  # first pixel frame
    video: torch.Tensor  # [3, n, H, W] in about [-1, 1]


def decode_in_tiles(
    decoder: VaeDecoder,
    latents: torch.Tensor,
    decode_timestep: torch.Tensor,
    tile: int,
    overlap: int,
    temporal_compression: int = 8,
) -> Iterator[DecodedFrames]:
    """Decodes `latents` [1, C, F, h, w] tile by tile and yields finished pixel frames in order.

    One tile's output is alive at a time: the overlap with the next tile is kept as a copy, the next
    tile's shared frames are blended in place (no copy of the tile), and the yielded view is dropped
    before the next decode. A consumer that also drops each chunk before asking for the next one keeps
    peak memory at one tile's decode plus the overlap, as for a video of one tile."""
    pending: torch.Tensor | None = None  # the previous tile's frames that the next tile also decodes
    emitted = 0
    for window in plan_windows(latents.shape[2], tile, overlap):
        video = decoder.decode(latents[:, :, window.start : window.end], decode_timestep)[0]
        if pending is not None:
            shared = pending.shape[1]
            weight = crossfade_weights(shared, video).reshape(1, shared, 1, 1)
            # (1 - w) * pending + w * new, in place in the new tile (the same two products and sum).
            video[:, :shared].mul_(weight).add_((1 - weight) * pending)
            pending = None
        last = window.end == latents.shape[2]
        keep = video.shape[1] if last else video.shape[1] - ((overlap - 1) * temporal_compression + 1)
        if not last:
            pending = video[:, keep:].clone()
        yield DecodedFrames(emitted, video[:, :keep])
        emitted += keep
        del video  # before the next tile's decode
