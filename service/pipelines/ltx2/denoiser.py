"""One guided x0 prediction per step from the audio-video transformer (`Ltx2Transformer`).

The cond, uncond and STG passes go in one batched call (the perturbed rows marked in `Ltx2Perturbation.rows`);
the modality-isolated pass is a second call. diffusers' STG perturbs video and audio self-attention together;
the reference perturbs only the modalities whose STG scale is not 0, which the perturbation's per-modality
flags say.

Guidance reuse (`guidance_every` k > 1, the acceleration levels `regular` and `high`): the extra passes run
on steps 0, k, 2k, ... only; steps in between run the cond pass and add the last guided step's
(guided - cond) difference, so a step costs one forward instead of up to four.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from service.domain.specs import GuidanceSpec
from service.pipelines.ltx2.components import Ltx2Geometry, Ltx2Perturbation, Ltx2TextContext, Ltx2Transformer
from service.pipelines.ltx2.guidance import PassPlan, guided_x0, plan_passes
from service.pipelines.ltx2.rope import rope_coords
from service.pipelines.ltx2.sampler import AvLatents
from service.pipelines.ltx2.shapes import LatentShape

TextContext = Ltx2TextContext  # the connectors' outputs of one prompt
__all__ = ["LatentShape", "Ltx2Denoiser", "TextContext"]


@dataclass(eq=False)
class Ltx2Denoiser:
    """Callable `(x, sigma, step) -> x0` for `sampler.sample`."""

    transformer: Ltx2Transformer
    geometry: Ltx2Geometry
    positive: TextContext
    negative: TextContext | None
    shape: LatentShape
    video_guidance: GuidanceSpec
    audio_guidance: GuidanceSpec
    guidance_every: int = 1
    forwards: int = 0  # transformer calls made (the acceleration benchmark counts them)
    _last_delta: AvLatents | None = field(default=None, repr=False)

    @property
    def plan(self) -> PassPlan:
        return plan_passes(self.video_guidance, self.audio_guidance)

    def __call__(self, x: AvLatents, sigma: float, step: int) -> AvLatents:
        plan = self.plan
        if not plan.guided:
            return self._forward(x, sigma, ("cond",))[0]
        if self._last_delta is not None and step % self.guidance_every:
            cond = self._forward(x, sigma, ("cond",))[0]
            return AvLatents(*(c + d for c, d in zip(cond, self._last_delta, strict=True)))
        guided, cond = self._guided(x, sigma, plan)
        self._last_delta = AvLatents(*(g - c for g, c in zip(guided, cond, strict=True)))
        return guided

    def _guided(self, x: AvLatents, sigma: float, plan: PassPlan) -> tuple[AvLatents, AvLatents]:
        names = ("cond", *(("uncond",) if plan.uncond else ()), *(("perturbed",) if plan.perturbed else ()))
        outputs = dict(zip(names, self._forward(x, sigma, names), strict=True))
        if plan.isolated:
            outputs["isolated"] = self._forward(x, sigma, ("cond",), isolate=True)[0]
        cond = outputs["cond"]
        guided = AvLatents(
            *(
                guided_x0(
                    scales,
                    cond[m],
                    _modality(outputs.get("uncond"), m),
                    _modality(outputs.get("perturbed"), m),
                    _modality(outputs.get("isolated"), m),
                )
                for m, scales in enumerate((self.video_guidance, self.audio_guidance))
            )
        )
        return guided, cond

    def _forward(
        self, x: AvLatents, sigma: float, passes: tuple[str, ...], isolate: bool = False
    ) -> list[AvLatents]:
        """x0 of each named pass, from one batched transformer call."""
        batch = len(passes)
        contexts = [self.negative if p == "uncond" else self.positive for p in passes]
        assert all(c is not None for c in contexts)
        device = x.video.device
        context = TextContext(
            torch.cat([c.video for c in contexts]),  # type: ignore[union-attr]
            torch.cat([c.audio for c in contexts]),  # type: ignore[union-attr]
            torch.cat([c.mask for c in contexts]),  # type: ignore[union-attr]
        )
        perturbation = None
        if "perturbed" in passes:
            plan = self.plan
            rows = torch.tensor([p == "perturbed" for p in passes])
            perturbation = Ltx2Perturbation(
                self.geometry.stg_blocks, rows, video=plan.perturb_video, audio=plan.perturb_audio
            )
        self.forwards += 1
        velocity_video, velocity_audio = self.transformer.velocity(
            (x.video.expand(batch, -1, -1), x.audio.expand(batch, -1, -1)),
            context,
            torch.full((batch,), sigma * 1000.0, device=device),
            rope_coords(self.geometry, self.shape, batch, device),
            perturbation,
            isolate_modalities=isolate,
        )
        x0_video = x.video - sigma * velocity_video.float().to(device)
        x0_audio = x.audio - sigma * velocity_audio.float().to(device)
        return [AvLatents(x0_video[i : i + 1], x0_audio[i : i + 1]) for i in range(batch)]


def _modality(latents: AvLatents | None, index: int) -> torch.Tensor | None:
    return None if latents is None else latents[index]
