"""Re-compressing conditioning media with H.264 before the VAE encodes it (`constant_rate_factor`).

LTX was trained on compressed video; clean inputs (a PNG, a lossless render) look unlike that, and
conditioning on them tends to freeze motion. So, as Lightricks/LTX-Video's loader does
(`crf_compressor.compress`, CRF 29 by default), conditioning frames go through libx264 at the requested
CRF and back before encoding.

Details, following that reference:
- CRF 0 means "do not re-compress": the frames come back unchanged (not x264's lossless mode).
- Every frame is intra-coded (keyframe interval 1): the reference compresses each frame as its own
  one-frame video, so no frame borrows another's content. Here the frames share one in-memory MP4 and
  one encoder, which is cheaper than one container per frame.
- 4:2:0 chroma (yuv420p) and the "veryfast" preset. 4:2:0 needs even sides, so odd frames are padded
  by repeating their last row or column and cropped back afterwards.
"""

from __future__ import annotations

import io
import logging

import av
import numpy as np
import torch

from service.contract.frames import uint8_from_unit

logger = logging.getLogger(__name__)

MAX_CRF = 51  # x264's range is 0..51
_PRESET = "veryfast"
_NOMINAL_FPS = 24  # irrelevant to the result: every frame is coded on its own


def _to_uint8_frames(frames: torch.Tensor) -> np.ndarray:
    """[3, F, H, W] in [-1, 1] -> uint8 [F, H, W, 3]."""
    pixels = uint8_from_unit(frames.detach().cpu())
    return pixels.permute(1, 2, 3, 0).numpy()


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    _, height, width, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def _encode(frames: np.ndarray, crf: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264",
            rate=_NOMINAL_FPS,
            options={"crf": str(crf), "preset": _PRESET, "x264-params": "keyint=1"},
        )
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())  # flush
    return buffer.getvalue()


def _decode(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), mode="r") as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def recompress(frames: torch.Tensor, crf: int) -> torch.Tensor:
    """Frames [3, F, H, W] in [-1, 1] through H.264 at `crf` and back: same shape, dtype and device."""
    if not 0 <= crf <= MAX_CRF:
        raise ValueError(f"constant_rate_factor must be in [0, {MAX_CRF}], got {crf}")
    if frames.ndim != 4 or frames.shape[0] != 3:
        raise ValueError(f"frames must be [3, F, H, W], got {tuple(frames.shape)}")
    if crf == 0:
        return frames
    _, num_frames, height, width = frames.shape
    decoded = _decode(_encode(_pad_to_even(_to_uint8_frames(frames)), crf))
    if decoded.shape[0] != num_frames:  # a codec bug, not a client mistake
        raise RuntimeError(f"H.264 round trip returned {decoded.shape[0]} of {num_frames} frames")
    restored = torch.from_numpy(decoded[:, :height, :width]).permute(3, 0, 1, 2)
    logger.debug("re-compressed %d frames of %dx%d at CRF %d", num_frames, width, height, crf)
    if not frames.dtype.is_floating_point:  # uint8 in, uint8 out
        return restored.contiguous().to(device=frames.device)
    return (restored.float() / 127.5 - 1.0).to(dtype=frames.dtype, device=frames.device)
