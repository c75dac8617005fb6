"""Re-compressing conditioning media with H.264 before the VAE encodes it (`constant_rate_factor`).

LTX was trained on compressed video; clean inputs (a PNG, a lossless render) look unlike that, and
conditioning on them tends to freeze motion. So, as Lightricks/LTX-Video's loader does
(`crf_compressor.compress`, CRF 29 by default), conditioning frames go through libx264 at the requested
CRF and back before encoding.

Details, following that reference:
- CRF 0 means "do not re-compress": the frames come back unchanged (not x264's lossless mode).
- Every frame is coded as its own one-frame video at 1 fps, exactly as the reference does (so no frame
  borrows another's content). Not one shared multi-frame stream: x264's rate control depends on the
  stream (frame rate, keyframe interval), and a shared all-intra stream at 24 fps differs from the
  reference's output by up to 32-41 uint8 levels on a textured frame (tests/unit/test_conditioning_recipe.py
  checks the match within one level).
- 4:2:0 chroma (yuv420p) and the "veryfast" preset. 4:2:0 needs even sides, so odd frames are padded
  by repeating their last row or column and cropped back afterwards (the reference drops that row or
  column instead, which would change the frame's size).
"""

from __future__ import annotations

import io
import logging

import av
import numpy as np
import torch

from service.contract.frames import uint8_from_unit, unit_from_uint8

logger = logging.getLogger(__name__)

MAX_CRF = 51  # x264's range is 0..51
_PRESET = "veryfast"
_REFERENCE_FPS = 1  # crf_compressor's `rate=1`: x264's rate control, and so the result, depends on it


def _uint8_frame(frames: torch.Tensor, index: int) -> np.ndarray:
    """Frame `index` of [3, F, H, W] (in [-1, 1], or uint8) as uint8 [H', W', 3], its sides padded to even
    by repeating the last row or column (4:2:0 needs even sides)."""
    pixels = uint8_from_unit(frames[:, index].detach().cpu()).permute(1, 2, 0).numpy()
    height, width, _ = pixels.shape
    return np.pad(pixels, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def _encode_frame(pixels: np.ndarray, crf: int) -> bytes:
    """One uint8 frame [H, W, 3] as a one-frame H.264 MP4 (crf_compressor._encode_single_frame)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=_REFERENCE_FPS, options={"crf": str(crf), "preset": _PRESET}
        )
        stream.height, stream.width = pixels.shape[:2]
        stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
        container.mux(stream.encode(frame))
        container.mux(stream.encode())  # flush
    return buffer.getvalue()


def _decode_frame(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise RuntimeError("the H.264 round trip returned no frame")  # a codec bug, not a client mistake


def recompress(frames: torch.Tensor, crf: int) -> torch.Tensor:
    """Frames [3, F, H, W] in [-1, 1] through H.264 at `crf` and back: same shape, dtype and device."""
    if not 0 <= crf <= MAX_CRF:
        raise ValueError(f"constant_rate_factor must be in [0, {MAX_CRF}], got {crf}")
    if frames.ndim != 4 or frames.shape[0] != 3:
        raise ValueError(f"frames must be [3, F, H, W], got {tuple(frames.shape)}")
    if crf == 0:
        return frames
    _, num_frames, height, width = frames.shape
    # Frame by frame into one output: memory is the input, the output and one frame (a long conditioning
    # video is gigabytes), never a stacked copy.
    restored = torch.empty(frames.shape, dtype=frames.dtype, device=frames.device)
    for index in range(num_frames):
        decoded = _decode_frame(_encode_frame(_uint8_frame(frames, index), crf))[:height, :width]
        frame = torch.from_numpy(decoded).permute(2, 0, 1)
        if frames.dtype.is_floating_point:
            frame = unit_from_uint8(frame.float()).to(frames.dtype)
        restored[:, index] = frame.to(frames.device)
    logger.debug("re-compressed %d frames of %dx%d at CRF %d", num_frames, width, height, crf)
    return restored
