"""Parity: the dev endpoints against their references on the same tiny weights, prompt and seed.

- text to video with constant CFG vs diffusers' `LTXConditionPipeline` (its default linear-quadratic
  schedule, 256 tokens): final latents to float32 rounding;
- the dev guidance combination (CFG, CFG-star, STG, rescale, all 7 phases of ltxv-13b-0.9.7-dev.yaml) vs
  the formulas of upstream `LTXVideoPipeline.__call__` (ltx-video 0.1.2, `ltx_video/pipelines/
  pipeline_ltx_video.py`), re-typed below with their source lines as the expected values.

diffusers draws its starting noise as (b, c, f, h, w); ours draws it in upstream's layout, (b, f*h*w, c)
(issue 10, item 10). `feed_upstream_layout_noise` hands the reference that same noise, drawn from its own
generator in upstream's layout, so both generators advance alike and every later draw (keyframe noise,
re-noise) stays aligned.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from diffusers.pipelines.ltx import pipeline_ltx_condition
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXConditionPipeline
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler

from service.config import ModelConfig
from service.domain.job_context import JobContext
from service.domain.specs import TextToVideoSpec
from service.engines import torch_bindings
from service.models import loading
from service.pipelines.components import Components
from service.pipelines.guidance import GuidancePass, apply_guidance, split_passes
from service.pipelines.latents import denormalize
from service.pipelines.multiconditioning import DevSamplingOptions, generate_text_to_video
from service.pipelines.schedules import DEV_13B_097_FIRST_PASS, GuidanceSchedule
from service.pipelines.text_to_video import DecodeOptions

SPEC = TextToVideoSpec(
    prompt="a ginger cat walks along a sunny sidewalk " * 20,  # > 128 tokens: 256 must reach both sides
    negative_prompt="blurry, low quality",
    width=64,
    height=64,
    num_frames=9,
    num_inference_steps=4,
    frame_rate=24,
    seed=5,
)
CONSTANT_CFG_3 = GuidanceSchedule(
    guidance_timesteps=(1.0,),
    guidance_scale=(3.0,),
    stg_scale=(0.0,),
    rescaling_scale=(1.0,),
    skip_block_list=((),),
    cfg_star_rescale=False,
)


def feed_upstream_layout_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first draw of each `LTXConditionPipeline.prepare_latents` call (its grid noise, shape
    (b, c, f, h, w)) made as upstream makes it: randn((b, f*h*w, c)) rearranged to (b, c, f, h, w)."""
    original_prepare = LTXConditionPipeline.prepare_latents
    original_randn = pipeline_ltx_condition.randn_tensor

    def prepare(self: LTXConditionPipeline, *args: Any, **kwargs: Any) -> Any:
        first = True

        def randn(
            shape: Any, generator: Any = None, device: Any = None, dtype: Any = None, **rest: Any
        ) -> torch.Tensor:
            nonlocal first
            if not first:
                return original_randn(shape, generator=generator, device=device, dtype=dtype, **rest)
            first = False
            b, c, f, h, w = shape
            tokens = original_randn((b, f * h * w, c), generator=generator, device=device, dtype=dtype)
            return tokens.reshape(b, f, h, w, c).permute(0, 4, 1, 2, 3)

        monkeypatch.setattr(pipeline_ltx_condition, "randn_tensor", randn)
        try:
            return original_prepare(self, *args, **kwargs)
        finally:
            monkeypatch.setattr(pipeline_ltx_condition, "randn_tensor", original_randn)

    monkeypatch.setattr(LTXConditionPipeline, "prepare_latents", prepare)


class RecordingDecoder:
    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.latents: list[torch.Tensor] = []

    def decode(self, latents: torch.Tensor, decode_timestep: torch.Tensor) -> torch.Tensor:
        self.latents.append(latents.clone())
        return self.inner.decode(latents, decode_timestep)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def models() -> loading.LoadedModels:
    return loading.load_models(ModelConfig())


def test_text_to_video_matches_ltx_condition_pipeline(
    models: loading.LoadedModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    components: Components = torch_bindings.bind_components(models)
    recorder = RecordingDecoder(components.vae_decoder)
    options = DevSamplingOptions(guidance=CONSTANT_CFG_3, decoding=DecodeOptions(decode_noise_scale=0.0))
    generate_text_to_video(
        dataclasses.replace(components, vae_decoder=recorder), SPEC, JobContext.create(), options
    )
    reference = LTXConditionPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=1.0),
        vae=models.vae,
        text_encoder=models.text_encoder,
        tokenizer=models.tokenizer,
        transformer=models.transformer,
    )
    reference.set_progress_bar_config(disable=True)
    feed_upstream_layout_noise(monkeypatch)
    expected = reference(
        prompt=SPEC.prompt,
        negative_prompt=SPEC.negative_prompt,
        width=SPEC.width,
        height=SPEC.height,
        num_frames=SPEC.num_frames,
        frame_rate=SPEC.frame_rate,
        num_inference_steps=SPEC.num_inference_steps,
        guidance_scale=3.0,
        max_sequence_length=256,
        generator=torch.Generator().manual_seed(SPEC.seed),
        output_type="latent",
    ).frames
    expected = denormalize(expected, components.geometry)
    (ours,) = recorder.latents
    assert ours.shape == expected.shape
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0), (ours - expected).abs().max()


def _upstream_guidance(
    uncond: torch.Tensor, cond: torch.Tensor, perturbed: torch.Tensor, cfg: float, stg: float, rescale: float
) -> torch.Tensor:
    """ltx-video 0.1.2 pipeline_ltx_video.py, re-typed; batch of one sample [1, N, C]."""
    do_cfg, do_stg, do_rescaling = cfg > 1.0, stg > 0.0, rescale != 1.0  # 1116-1118: per step
    noise_pred = cond
    if do_cfg:
        # 1227-1244, CFG-star: alpha = <c, u> / (|u|^2 + 1e-8) per sample, on the flattened predictions.
        positive_flat = cond.reshape(1, -1)
        negative_flat = uncond.reshape(1, -1)
        dot = torch.sum(positive_flat * negative_flat, dim=1, keepdim=True)
        squared_norm = torch.sum(negative_flat**2, dim=1, keepdim=True) + 1e-8
        alpha = (dot / squared_norm).view(1, 1, 1)
        uncond = alpha * uncond
        noise_pred = uncond + cfg * (cond - uncond)
    if do_stg:
        noise_pred = noise_pred + stg * (cond - perturbed)  # 1248
        if do_rescaling:  # 1251-1262: unbiased std, only with STG
            factor = cond.std() / noise_pred.std()
            factor = rescale * factor + (1 - rescale)
            noise_pred = noise_pred * factor
    return noise_pred


@pytest.mark.parametrize("phase", range(7))
def test_dev_guidance_matches_upstream_formulas_in_every_phase(phase: int) -> None:
    schedule = DEV_13B_097_FIRST_PASS.guidance
    settings = schedule.settings_at(schedule.guidance_timesteps[phase])
    generator = torch.Generator().manual_seed(phase)
    uncond, cond, perturbed = (torch.randn(1, 24, 8, generator=generator) for _ in range(3))
    passes = settings.passes
    stacked = torch.cat(
        [
            {
                GuidancePass.UNCONDITIONAL: uncond,
                GuidancePass.CONDITIONAL: cond,
                GuidancePass.PERTURBED: perturbed,
            }[p]
            for p in passes
        ]
    )
    ours = apply_guidance(split_passes(stacked, passes), settings)
    expected = _upstream_guidance(
        uncond, cond, perturbed, settings.guidance_scale, settings.stg_scale, settings.rescaling_scale
    )
    assert torch.allclose(ours, expected, atol=1e-6, rtol=1e-6)
