"""AdaIN of video latents: move a latent's per-channel mean and std toward a reference's.

LTX uses it in two places (Lightricks/LTX-Video `adain_filter_latent`, ComfyUI-LTXVideo
`LTXVAdainLatent`): after the latent upsampler, against the first-pass latents (factor 1), and between
the chunks of a long video, where each chunk after the first is normalized against the first chunk's
statistics so colour and contrast do not drift over the video (`temporal_adain_factor`).

For each batch element and channel (and, with `AdainScope.PER_FRAME`, each latent frame):
    normalized = (x - mean(x)) / std(x) * std(ref) + mean(ref)
    result     = x + factor * (normalized - x)
so factor 0 leaves the latents as they are and factor 1 gives them the reference statistics exactly.
Standard deviations are unbiased (Bessel-corrected), as torch.std_mean computes them in LTX.
"""

from __future__ import annotations

from enum import Enum

import torch

# A channel that is constant has std 0; dividing by this instead maps it onto the reference mean.
_MIN_STD = 1e-6


class AdainScope(Enum):
    PER_CHANNEL = "per_channel"  # statistics over all frames and pixels of a channel (LTX's default)
    PER_FRAME = "per_frame"  # statistics per channel and latent frame


def _reduced_dims(scope: AdainScope) -> tuple[int, ...]:
    # Latents are [B, C, F, H, W].
    return (2, 3, 4) if scope is AdainScope.PER_CHANNEL else (3, 4)


def _check_shapes(latents: torch.Tensor, reference: torch.Tensor, scope: AdainScope) -> None:
    if latents.ndim != 5 or reference.ndim != 5:
        raise ValueError("latents and reference must be [B, C, F, H, W]")
    if reference.shape[1] != latents.shape[1]:
        raise ValueError(f"channel mismatch: {latents.shape[1]} vs reference {reference.shape[1]}")
    if reference.shape[0] not in (1, latents.shape[0]):
        raise ValueError(f"reference batch {reference.shape[0]} does not match {latents.shape[0]}")
    if scope is AdainScope.PER_FRAME and reference.shape[2] not in (1, latents.shape[2]):
        raise ValueError("per-frame AdaIN needs a reference with one frame or as many frames as latents")


def adain_filter_latent(
    latents: torch.Tensor,
    reference: torch.Tensor,
    factor: float = 1.0,
    scope: AdainScope = AdainScope.PER_CHANNEL,
) -> torch.Tensor:
    """Blends `latents` toward their AdaIN-normalized form by `factor` (see the module docstring).

    The reference may differ from the latents in frames and size (per-channel scope), e.g. first-pass
    latents against upsampled ones, or the first chunk against a later one.
    """
    _check_shapes(latents, reference, scope)
    if factor == 0.0:
        return latents
    dims = _reduced_dims(scope)
    # Statistics in float32: latents may be bfloat16, whose sums over a whole channel are too coarse.
    x, ref = latents.float(), reference.float()
    ref_std, ref_mean = torch.std_mean(ref, dim=dims, keepdim=True)
    std, mean = torch.std_mean(x, dim=dims, keepdim=True)
    normalized = (x - mean) / std.clamp_min(_MIN_STD) * ref_std + ref_mean
    return torch.lerp(x, normalized, factor).to(latents.dtype)
