"""Parity: multiconditioning against diffusers' `LTXConditionPipeline` on the same tiny weights, pixels,
prompt and seed: an image at frame 0 (strength 1), an image at a later frame (0.8), videos at frame 0 and
at a later frame. Constant CFG 3 on both sides (the dev schedule's formulas are checked against upstream
in test_parity_dev.py), its default linear-quadratic schedule, `image_cond_noise_scale` 0.15.

Two differences are patched out on the reference side, and stay as documented choices of ours:
- it samples the VAE posterior for condition latents; our encoder binding returns the posterior mode;
- it is handed our exact pixel tensors (its PIL resize is bypassed), since our media preparation differs;
and it is handed its starting noise in upstream's layout (test_parity_dev.feed_upstream_layout_noise).
Both sides draw the re-noise every step of a conditioned run, so the strength-0.8 case needs no alignment.
Compared: the latents our decoder receives (decode noise off) against its final latents.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from diffusers.pipelines.ltx import pipeline_ltx_condition
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXConditionPipeline, LTXVideoCondition
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler

from service.config import ModelConfig
from service.domain.geometry import AspectRatio, Resolution
from service.domain.job_context import JobContext
from service.domain.specs import MulticonditioningSpec
from service.engines import torch_bindings
from service.models import loading
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.latents import denormalize
from service.pipelines.multiconditioning import DevSamplingOptions, generate_multiconditioning
from service.pipelines.text_to_video import DecodeOptions
from tests.unit.test_parity_dev import CONSTANT_CFG_3, RecordingDecoder, feed_upstream_layout_noise

SPEC = MulticonditioningSpec(
    prompt="a kite surfer jumping a wave",
    negative_prompt="blurry",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.R1_1,
    width=64,
    height=64,
    num_frames=33,
    num_inference_steps=4,
    frame_rate=25,
    seed=9,
)


def _pixels(frames: int, seed: int) -> torch.Tensor:
    return torch.rand(1, 3, frames, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


CASES = {
    "image@0": [(1, 0, 1.0)],
    "image@16 0.8": [(1, 16, 0.8)],
    "video@0": [(9, 0, 1.0)],
    "video@16": [(17, 16, 1.0)],
}


@pytest.mark.parametrize("case", CASES)
def test_multiconditioning_matches_ltx_condition_pipeline(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    media = [
        ConditioningMedia(pixels=_pixels(frames, seed), start_frame=start, strength=strength)
        for seed, (frames, start, strength) in enumerate(CASES[case])
    ]
    models = loading.load_models(ModelConfig())
    components = torch_bindings.bind_components(models)
    recorder = RecordingDecoder(components.vae_decoder)
    options = DevSamplingOptions(guidance=CONSTANT_CFG_3, decoding=DecodeOptions(decode_noise_scale=0.0))
    generate_multiconditioning(
        dataclasses.replace(components, vae_decoder=recorder),
        SPEC,
        media,
        JobContext.create(),
        options,
    )
    (ours,) = recorder.latents

    def posterior_mode(
        encoder_output: Any, generator: Any = None, sample_mode: str = "sample"
    ) -> torch.Tensor:
        return encoder_output.latent_dist.mode()

    monkeypatch.setattr(pipeline_ltx_condition, "retrieve_latents", posterior_mode)
    reference = LTXConditionPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=1.0),
        vae=models.vae,
        text_encoder=models.text_encoder,
        tokenizer=models.tokenizer,
        transformer=models.transformer,
    )
    reference.set_progress_bar_config(disable=True)
    # Our pixels as they are: [1, 3, H, W] for an image, [1, 3, F, H, W] for a video.
    monkeypatch.setattr(reference.video_processor, "preprocess", lambda image, *_: image)
    monkeypatch.setattr(reference.video_processor, "preprocess_video", lambda video, *_: video)
    feed_upstream_layout_noise(monkeypatch)  # its starting noise drawn in upstream's layout, as ours
    conditions = [
        LTXVideoCondition(image=m.pixels[:, :, 0], frame_index=m.start_frame, strength=m.strength)  # type: ignore[arg-type]
        if m.num_frames == 1
        else LTXVideoCondition(video=m.pixels, frame_index=m.start_frame, strength=m.strength)  # type: ignore[arg-type]
        for m in media
    ]
    expected = reference(
        conditions=conditions,
        prompt=SPEC.prompt,
        negative_prompt=SPEC.negative_prompt,
        width=SPEC.width,
        height=SPEC.height,
        num_frames=SPEC.num_frames,
        frame_rate=SPEC.frame_rate,
        num_inference_steps=SPEC.num_inference_steps,
        guidance_scale=3.0,
        image_cond_noise_scale=0.15,
        max_sequence_length=256,
        generator=torch.Generator().manual_seed(SPEC.seed),
        output_type="latent",
    ).frames
    expected = denormalize(expected, components.geometry)
    assert ours.shape == expected.shape
    assert torch.allclose(ours, expected, atol=2e-5, rtol=0), (ours - expected).abs().max()
