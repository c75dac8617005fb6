"""One guided x0 prediction per step from diffusers' `LTX2VideoTransformer3DModel`.

The cond, uncond and STG passes go in one batched call (`perturbation_mask` 1, 1, 0); the modality-isolated
pass is a second call, since `isolate_modalities` is per call in diffusers. diffusers' STG perturbs video and
audio self-attention together; the reference perturbs only the modalities whose STG scale is not 0, so for a
modality with scale 0 its self-attention processors in the STG blocks are wrapped to ignore the mask.

Guidance reuse (`guidance_every` k > 1, the acceleration levels `regular` and `high`): the extra passes run
on steps 0, k, 2k, ... only; steps in between run the cond pass and add the last guided step's
(guided - cond) difference, so a step costs one forward instead of up to four.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel

from service.domain.specs import GuidanceSpec
from service.pipelines.ltx2.guidance import PassPlan, guided_x0, plan_passes
from service.pipelines.ltx2.sampler import AvLatents


@dataclass(frozen=True, eq=False)
class TextContext:
    """Connector outputs of one prompt: video [1, L, Dv], audio [1, L, Da] contexts and their mask [1, L]."""

    video: torch.Tensor
    audio: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class LatentShape:
    frames: int
    height: int
    width: int
    audio_frames: int
    fps: float  # the frame rate the RoPE time axis is conditioned on


@dataclass(eq=False)
class Ltx2Denoiser:
    """Callable `(x, sigma, step) -> x0` for `sampler.sample`."""

    transformer: LTX2VideoTransformer3DModel
    positive: TextContext
    negative: TextContext | None
    shape: LatentShape
    video_guidance: GuidanceSpec
    audio_guidance: GuidanceSpec
    stg_blocks: tuple[int, ...]
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
        dtype = self.transformer.dtype
        perturbed = "perturbed" in passes
        t = torch.full((batch,), sigma * 1000.0, device=x.video.device)
        shape = self.shape
        kwargs: dict[str, Any] = {
            "hidden_states": x.video.expand(batch, -1, -1).to(dtype),
            "audio_hidden_states": x.audio.expand(batch, -1, -1).to(dtype),
            "encoder_hidden_states": torch.cat([c.video for c in contexts]).to(dtype),  # type: ignore[union-attr]
            "audio_encoder_hidden_states": torch.cat([c.audio for c in contexts]).to(dtype),  # type: ignore[union-attr]
            "encoder_attention_mask": torch.cat([c.mask for c in contexts]),  # type: ignore[union-attr]
            "audio_encoder_attention_mask": torch.cat([c.mask for c in contexts]),  # type: ignore[union-attr]
            "timestep": t,
            "sigma": t,  # LTX-2.3's cross-attention modulation reads it (as LTX2Pipeline passes it)
            "num_frames": shape.frames,
            "height": shape.height,
            "width": shape.width,
            "fps": shape.fps,
            "audio_num_frames": shape.audio_frames,
            "isolate_modalities": isolate,
            "spatio_temporal_guidance_blocks": list(self.stg_blocks) if perturbed else None,
            "perturbation_mask": _perturbation_mask(passes, x.video.device) if perturbed else None,
            "use_cross_timestep": True,
            "return_dict": False,
        }
        self.forwards += 1
        with self._stg_only_on(self.plan) if perturbed else contextlib.nullcontext():
            velocity_video, velocity_audio = self.transformer(**kwargs)
        x0_video = x.video - sigma * velocity_video.float()
        x0_audio = x.audio - sigma * velocity_audio.float()
        return [AvLatents(x0_video[i : i + 1], x0_audio[i : i + 1]) for i in range(batch)]

    @contextlib.contextmanager
    def _stg_only_on(self, plan: PassPlan) -> Iterator[None]:
        """Leave the self-attention of a modality whose STG scale is 0 unperturbed."""
        swapped: list[tuple[Any, Any]] = []
        for index in self.stg_blocks:
            block: Any = self.transformer.transformer_blocks[index]
            for attention, perturb in (
                (block.attn1, plan.perturb_video),
                (block.audio_attn1, plan.perturb_audio),
            ):
                if not perturb:
                    swapped.append((attention, attention.processor))
                    attention.processor = UnperturbedProcessor(attention.processor)
        try:
            yield
        finally:
            for attention, processor in swapped:
                attention.processor = processor


class UnperturbedProcessor:
    """Delegates to the wrapped processor with the STG perturbation switched off."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        query_rotary_emb: Any = None,
        key_rotary_emb: Any = None,
        perturbation_mask: torch.Tensor | None = None,
        all_perturbed: bool | None = None,
    ) -> torch.Tensor:
        return self.inner(
            attn,
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            attention_mask=attention_mask,
            query_rotary_emb=query_rotary_emb,
            key_rotary_emb=key_rotary_emb,
            perturbation_mask=None,
            all_perturbed=False,
        )


def _perturbation_mask(passes: tuple[str, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor([0.0 if p == "perturbed" else 1.0 for p in passes], device=device)


def _modality(latents: AvLatents | None, index: int) -> torch.Tensor | None:
    return None if latents is None else latents[index]
