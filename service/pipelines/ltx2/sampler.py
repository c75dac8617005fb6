"""The LTX-2.3 denoising loop over the joint video + audio state (rectified flow, x = (1-s) x0 + s noise).

Per step i from sigma s to s':
- x0 = the guided prediction; v = (x - x0) / s.
- Gradient estimation (gamma != 0; ltx-pipelines `gradient_estimating_euler_denoising_loop`): from the
  second step on, v <- gamma (v - v_prev) + v_prev, with v_prev the previous *uncorrected* velocity; gamma
  = 1 is plain Euler. The spec says 0 disables it, so gamma = 0 is plain Euler (upstream's 0 is not).
- Restart sampling (ours; no public definition): each step but the last lands at a slightly lower noise
  level s_d on the x0-noise line and fresh noise brings it back to s' (the rectified-flow ancestral step
  of ltx-core's `EulerAncestralDiffusionStep`, eta = `restart_eta`). The marginal at s' is unchanged; the
  injected noise lets the sampler correct earlier errors.
- Otherwise an Euler step x <- x + v (s' - s); the last step (s' = 0) returns x0.
Video and audio keep separate velocity histories and draw separate noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import NamedTuple

import torch

from service.domain.errors import Cancelled


class AvLatents(NamedTuple):
    """Packed, normalised latents: video [B, tokens, C], audio [B, tokens, C] (audio may be empty)."""

    video: torch.Tensor
    audio: torch.Tensor

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> AvLatents:
        return AvLatents(fn(self.video), fn(self.audio))


# x0 prediction of the state at noise level sigma, at step index i.
Denoise = Callable[[AvLatents, float, int], AvLatents]


@dataclass(frozen=True)
class SamplerSettings:
    gradient_estimation_gamma: float = 0.0  # 0 = off (plain Euler)
    restart_eta: float = 0.0  # 0 = deterministic
    noise_generator: torch.Generator | None = None  # restart noise (CPU, seeded)


def sample(
    x: AvLatents,
    sigmas: torch.Tensor,
    denoise: Denoise,
    settings: SamplerSettings,
    on_step: Callable[[int, int], None] = lambda step, total: None,
    is_cancelled: Callable[[], bool] = lambda: False,
) -> AvLatents:
    """Integrate `x` from sigmas[0] to sigmas[-1] (= 0)."""
    total = len(sigmas) - 1
    previous: AvLatents | None = None
    for i, (s, s_next) in enumerate(pairwise(sigmas.tolist())):
        if is_cancelled():
            raise Cancelled()
        x0 = denoise(x, s, i)
        if s_next == 0:
            x = x0
        else:
            velocity = AvLatents(*((xi - x0i) / s for xi, x0i in zip(x, x0, strict=True)))
            used = _estimated(velocity, previous, settings.gradient_estimation_gamma)
            previous = velocity
            x = _step(x, used, s, s_next, settings)
        on_step(i + 1, total)
    return x


def _estimated(velocity: AvLatents, previous: AvLatents | None, gamma: float) -> AvLatents:
    if gamma == 0 or previous is None:
        return velocity
    return AvLatents(*(gamma * (v - p) + p for v, p in zip(velocity, previous, strict=True)))


def _step(x: AvLatents, v: AvLatents, s: float, s_next: float, settings: SamplerSettings) -> AvLatents:
    if settings.restart_eta == 0:
        return AvLatents(*(xi + vi * (s_next - s) for xi, vi in zip(x, v, strict=True)))
    eta = settings.restart_eta
    s_down = s_next * (1 + (s_next / s - 1) * eta)
    keep = s_down / s
    renoise = (1 - s_next) / (1 - s_down)
    noise_std = max(0.0, s_next**2 - (s_down * renoise) ** 2) ** 0.5
    out = []
    for xi, vi in zip(x, v, strict=True):
        x0 = xi - s * vi
        at_down = keep * xi + (1 - keep) * x0
        noise = torch.randn(xi.shape, generator=settings.noise_generator, dtype=torch.float32).to(xi)
        out.append(renoise * at_down + noise_std * noise)
    return AvLatents(*out)
