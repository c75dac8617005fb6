"""Issue 10, item 9: the per-pass conditioning resize, upstream's route against ours.

    python -m bench.conditioning_resize [--output 1280x704] [--scales 1 2 4]

Both routes end in upstream's per-pass resize (plain bilinear, no antialiasing); they differ in its source:
- upstream (`inference.py` + `LTXVideoPipeline`): the native-resolution crop, blurred (3x3, sigma 1) and
  re-compressed (CRF 29) at native resolution, then resized to each pass's size;
- ours: the frame resized once to the output size at decode (PIL bicubic, antialiased), blurred and
  re-compressed there, then resized to each pass's size.
Reference for both: the native image resized to the pass size with an antialiased filter (PIL Lanczos),
then blurred and re-compressed at that size, i.e. upstream's own preprocessing had the user sent the
image at the pass size. Reported: mean absolute error against it, in uint8 levels, per pass, for inputs
`scale` times the output size (1: the output size). The input is 1/f noise (a natural image's spectrum)
with a little fine grain, seeded. Also the bytes a 121-frame conditioning video holds from the prepare
stage to the end of the job on each route.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from service.domain.geometry import DISTILLED_FIRST_PASS_DOWNSCALE, FrameSize, multiscale_sizes
from service.inputs.conditioning_recipe import UPSTREAM_CONDITIONING_CRF, preprocess_conditioning
from service.media.decode import decode_image

CLIP_FRAMES = 121


def natural_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 3]: 1/f noise per channel (partly shared, so it has colour and luma detail)."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(width, height))
    shared = rng.standard_normal((height, width // 2 + 1)) + 1j * rng.standard_normal(
        (height, width // 2 + 1)
    )
    channels = []
    for _ in range(3):
        own = rng.standard_normal(shared.shape) + 1j * rng.standard_normal(shared.shape)
        field = np.fft.irfft2(amplitude * (shared + 0.5 * own), s=(height, width))
        channels.append((field - field.mean()) / field.std())
    image = 128 + 40 * np.stack(channels, axis=-1) + rng.normal(0, 6, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _unit(frame: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> [3, 1, H, W] in [-1, 1]."""
    return torch.from_numpy(np.array(frame)).permute(2, 0, 1)[:, None].float() / 127.5 - 1


def _levels(pixels: torch.Tensor) -> np.ndarray:
    return ((pixels.clamp(-1, 1) + 1) * 127.5).numpy()


def _bilinear(pixels: torch.Tensor, size: FrameSize) -> torch.Tensor:
    """[3, 1, H, W] -> [3, 1, size]: LTXVideoPipeline.resize_tensor."""
    resized = F.interpolate(pixels.permute(1, 0, 2, 3), size=(size.height, size.width), mode="bilinear")
    return resized.permute(1, 0, 2, 3)


def _png(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def compare(output: FrameSize, scale: int) -> dict[str, tuple[float, float]]:
    native = natural_image(output.width * scale, output.height * scale)
    crf = UPSTREAM_CONDITIONING_CRF
    upstream_source = preprocess_conditioning(_unit(native), crf)
    decoded = decode_image(_png(native), width=output.width, height=output.height, field="image")
    ours_source = preprocess_conditioning(decoded[:, None] if decoded.ndim == 3 else decoded, crf)
    sizes = multiscale_sizes(output, DISTILLED_FIRST_PASS_DOWNSCALE)
    result = {}
    for name, size in (("first pass", sizes.first_pass), ("second pass", sizes.second_pass)):
        lanczos = np.asarray(
            Image.fromarray(native).resize((size.width, size.height), Image.Resampling.LANCZOS)
        )
        reference = _levels(preprocess_conditioning(_unit(lanczos), crf))
        upstream = _levels(_bilinear(upstream_source, size))
        ours = _levels(_bilinear(ours_source, size))
        result[name] = (float(np.abs(upstream - reference).mean()), float(np.abs(ours - reference).mean()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="1280x704", help="output size WxH (multiples of 32)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    width, height = (int(side) for side in args.output.split("x"))
    output = FrameSize(width, height)
    sizes = multiscale_sizes(output, DISTILLED_FIRST_PASS_DOWNSCALE)
    print(f"output {width}x{height}: first pass {sizes.first_pass}, second pass {sizes.second_pass}")
    print(
        "| input | pass | upstream route: mean error (levels) | ours: mean error (levels) | video held, upstream / ours |"
    )
    print("|---|---|---|---|---|")
    for scale in args.scales:
        held_native = CLIP_FRAMES * width * height * scale * scale * 3 / 2**20
        held_ours = CLIP_FRAMES * width * height * 3 / 2**20
        for name, (upstream, ours) in compare(output, scale).items():
            print(
                f"| {width * scale}x{height * scale} | {name} | {upstream:.2f} | {ours:.2f} | "
                f"{held_native:.0f} / {held_ours:.0f} MiB |"
            )


if __name__ == "__main__":
    main()
