"""Parity: the distilled two-pass pipeline against diffusers' documented composition on the same tiny
weights, prompt and seed (the diffusers LTX docs' "condition pipeline + latent upsampler" recipe):

1. `LTXConditionPipeline` at the first-pass size over our first-pass timesteps (x 1000), latents out;
2. `LTXLatentUpsamplePipeline(adain_factor=1.0)` on them;
3. `LTXConditionPipeline` again at the second-pass size from the upsampled latents with
   `denoise_strength=0.999` over [1000, 909.4, 725, 421.9], which keeps exactly (.9094, .725, .4219) and
   noises the latents to sigma .9094, as ours does.

One generator is carried through both passes on both sides; the reference's noise is drawn in
upstream's layout, as ours (test_parity_dev.feed_upstream_layout_noise). Compared: the latents our decoder receives
(decode noise off) against the reference's final latents, to float32 rounding.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXConditionPipeline
from diffusers.pipelines.ltx.pipeline_ltx_latent_upsample import LTXLatentUpsamplePipeline
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler

from service.config import ModelConfig
from service.domain.geometry import (
    DISTILLED_FIRST_PASS_DOWNSCALE,
    AspectRatio,
    FrameSize,
    Resolution,
    multiscale_sizes,
)
from service.domain.job_context import JobContext
from service.domain.specs import DistilledMulticonditioningSpec
from service.engines import torch_bindings
from service.models import loading
from service.pipelines.distilled import DistilledOptions, generate_distilled
from service.pipelines.latents import denormalize
from service.pipelines.schedules import (
    DISTILLED_13B_097_FIRST_PASS_TIMESTEPS,
    DISTILLED_13B_097_SECOND_PASS_TIMESTEPS,
)
from tests.unit.test_parity_dev import RecordingDecoder, feed_upstream_layout_noise

SPEC = DistilledMulticonditioningSpec(
    prompt="a red fox trotting through fresh snow at dawn",
    negative_prompt="worst quality",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.R1_1,
    width=96,
    height=96,
    num_frames=17,
    first_pass_num_inference_steps=8,
    second_pass_num_inference_steps=8,
    second_pass_skip_initial_steps=5,
    frame_rate=24,
    seed=4,
    temporal_adain_factor=0.5,
    tone_map_compression_ratio=0.0,
    constant_rate_factor=29,
)


def test_distilled_matches_the_documented_diffusers_composition(monkeypatch: pytest.MonkeyPatch) -> None:
    models = loading.load_models(ModelConfig())
    components = torch_bindings.bind_components(models)
    recorder = RecordingDecoder(components.vae_decoder)
    options = DistilledOptions(decode_noise_scale=0.0)
    generate_distilled(
        dataclasses.replace(components, vae_decoder=recorder),
        SPEC,
        (),
        JobContext.create(),
        options,
    )
    (ours,) = recorder.latents

    sizes = multiscale_sizes(FrameSize(SPEC.width, SPEC.height), DISTILLED_FIRST_PASS_DOWNSCALE)
    condition = LTXConditionPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=1.0),
        vae=models.vae,
        text_encoder=models.text_encoder,
        tokenizer=models.tokenizer,
        transformer=models.transformer,
    )
    condition.set_progress_bar_config(disable=True)
    assert models.upsampler is not None
    upsample = LTXLatentUpsamplePipeline(vae=models.vae, latent_upsampler=models.upsampler)
    generator = torch.Generator().manual_seed(SPEC.seed)
    feed_upstream_layout_noise(monkeypatch)  # both passes' noise in upstream's layout, as ours
    common = {
        "prompt": SPEC.prompt,
        "num_frames": SPEC.num_frames,
        "frame_rate": SPEC.frame_rate,
        "guidance_scale": 1.0,
        "max_sequence_length": 256,
        "generator": generator,
        "output_type": "latent",
    }
    first = condition(
        width=sizes.first_pass.width,
        height=sizes.first_pass.height,
        timesteps=[t * 1000 for t in DISTILLED_13B_097_FIRST_PASS_TIMESTEPS],
        **common,
    ).frames
    upsampled = upsample(latents=first, adain_factor=1.0, output_type="latent").frames  # type: ignore[union-attr]
    final = condition(
        width=sizes.second_pass.width,
        height=sizes.second_pass.height,
        latents=upsampled,
        denoise_strength=0.999,
        timesteps=[1000.0, *(t * 1000 for t in DISTILLED_13B_097_SECOND_PASS_TIMESTEPS)],
        **common,
    ).frames
    expected = denormalize(final, components.geometry)
    assert ours.shape == expected.shape
    assert torch.allclose(ours, expected, atol=2e-5, rtol=0), (ours - expected).abs().max()
