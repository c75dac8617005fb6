"""Tone-map compression of final latents (`tone_map_compression_ratio`), as LTX-Video 0.9.8 does it.

Values whose magnitude is well above 1 are pulled toward 0 by a smooth, sigmoid-shaped factor; values
well inside [-1, 1] are almost untouched. With s = 0.75 * ratio:

    f(x) = x * (1 - 0.8 * s * sigmoid(4 * s * (|x| - 1)))

Ratio 0 is the identity; at ratio 1 large values are scaled by 1 - 0.8 * 0.75 = 0.4 and |x| = 1 by 0.7.
f is odd, increasing in x and never increases a magnitude (its factor lies in (0.4, 1]).

Where: on the final latents in the pipeline's normalized latent space, after the decode-noise injection
and before they are denormalized and decoded (Lightricks/LTX-Video `LTXVideoPipeline.tone_map_latents`,
called right before `vae_decode`).
"""

from __future__ import annotations

import torch

# The [0, 1] ratio is remapped to [0, 0.75]; at 0.75 the largest values keep 40% of their magnitude.
_STRENGTH_AT_FULL_RATIO = 0.75
_MAX_ATTENUATION = 0.8  # times the strength
_SIGMOID_SLOPE = 4.0  # times the strength: how sharply the knee around |x| = 1 turns


def tone_map_latents(latents: torch.Tensor, compression_ratio: float) -> torch.Tensor:
    """Compresses the dynamic range of `latents`; `compression_ratio` in [0, 1], 0 changes nothing."""
    if not 0.0 <= compression_ratio <= 1.0:
        raise ValueError(f"tone_map_compression_ratio must be in [0, 1], got {compression_ratio}")
    if compression_ratio == 0.0:
        return latents
    strength = _STRENGTH_AT_FULL_RATIO * compression_ratio
    knee = torch.sigmoid(_SIGMOID_SLOPE * strength * (latents.abs() - 1.0))
    return latents * (1.0 - _MAX_ATTENUATION * strength * knee)
