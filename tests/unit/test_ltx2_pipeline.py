"""LTX-2.3 pipeline on the tiny preset: parity with diffusers' LTX2Pipeline, the sampler's terms, and every
spec field shown to change what it says it changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from service.domain.job_context import JobContext
from service.domain.specs import (
    Acceleration,
    CameraLora,
    GuidanceSpec,
    Ltx2TextToVideoSpec,
    Scheduler,
    VideoOutputType,
    VideoQuality,
    VideoWriteMode,
)
from service.engines.ltx2_local import bind_ltx2_components
from service.models.ltx2 import Ltx2Models, build_tiny_ltx2
from service.models.ltx2_loras import (
    DISTILLED,
    ActiveAdapter,
    install_distilled,
    ltx2_helper_pipeline,
    set_stage_adapters,
    tiny_distilled_lora,
)
from service.pipelines.ltx2 import schedules
from service.pipelines.ltx2.denoiser import Ltx2Denoiser
from service.pipelines.ltx2.guidance import guided_x0
from service.pipelines.ltx2.sampler import AvLatents, SamplerSettings, sample
from service.pipelines.ltx2.text_to_video import (
    StagePlan,
    encode_text,
    generate_ltx2,
    initial_latents,
    stage_sizes,
)

BASE = Ltx2TextToVideoSpec(
    prompt="a cowboy walks through a dusty town",
    negative_prompt="static, watermark",
    width=64,
    height=64,
    num_frames=9,
    fps=24.0,
    num_inference_steps=3,
    seed=11,
    video_guidance=GuidanceSpec(3.0, 1.0, 0.85, 3.0),
    audio_guidance=GuidanceSpec(7.0, 0.0, 0.7, 3.0),
    gradient_estimation_gamma=2.0,
    scheduler=Scheduler.BETA,
    acceleration=Acceleration.NONE,
    camera_lora=CameraLora.NONE,
    camera_lora_scale=1.0,
    distill_lora_first_pass_scale=0.2,
    distill_lora_second_pass_scale=0.5,
    output_type=VideoOutputType.X264_MP4,
    video_quality=VideoQuality.HIGH,
    video_write_mode=VideoWriteMode.BALANCED,
    use_multiscale=False,
    expand_prompt=False,
)


@pytest.fixture(scope="module")
def models() -> Iterator[Ltx2Models]:
    torch.set_num_threads(2)
    built = build_tiny_ltx2(0)
    install_distilled(ltx2_helper_pipeline(built), built, 0)
    yield built


@pytest.fixture(scope="module")
def base_video(models: Ltx2Models) -> Any:
    return run(models)


def run(models: Ltx2Models, **changes: Any) -> Any:
    spec = dataclasses.replace(BASE, **changes)
    active = [
        ActiveAdapter(DISTILLED, spec.distill_lora_first_pass_scale, spec.distill_lora_second_pass_scale)
    ]
    return generate_ltx2(
        bind_ltx2_components(models),
        spec,
        JobContext.create(),
        lambda stage: set_stage_adapters(models, active, stage),
    )


def test_schedules_match_the_reference_values() -> None:
    # 15-step values of ltx-core's schedulers (shared/research/ltx2-notes.md §3.1), 4 decimals.
    beta = [1.0, 0.9981, 0.9937, 0.9871, 0.9779, 0.9657, 0.9495, 0.9279, 0.8989, 0.859, 0.8027, 0.721]
    assert schedules.beta_sigmas(15)[:12].tolist() == pytest.approx(beta, abs=1e-4)
    ltx2 = [1.0, 0.9848, 0.9676, 0.9482, 0.926, 0.9004, 0.8706, 0.8353, 0.7931, 0.7414, 0.677, 0.5942]
    assert schedules.ltx2_sigmas(15, 3344)[:12].tolist() == pytest.approx(ltx2, abs=1e-4)
    assert schedules.ltx2_sigmas(15, 3344)[-2:].tolist() == pytest.approx([0.1, 0.0])
    lq = [1.0, 0.9964, 0.9929, 0.9893, 0.9857, 0.9821, 0.9786, 0.975, 0.9566, 0.9087, 0.8312, 0.7241]
    assert schedules.linear_quadratic_sigmas(15)[:12].tolist() == pytest.approx(lq, abs=1e-4)
    assert schedules.ltx2_sigmas(1, 100).tolist() == [1.0, 0.0]  # diffusers gives NaN for one step


def test_loop_matches_ltx2_pipeline_where_semantics_overlap(models: Ltx2Models) -> None:
    pipe = ltx2_helper_pipeline(models, schedules.ltx2_scheduler())
    set_stage_adapters(models, [], 1)
    call = dict(
        prompt=BASE.prompt, negative_prompt=BASE.negative_prompt, width=64, height=64, num_frames=9,
        frame_rate=24.0, num_inference_steps=4, guidance_scale=3.0, stg_scale=1.0, guidance_rescale=0.85,
        modality_scale=3.0, audio_guidance_scale=7.0, audio_stg_scale=1.0, audio_guidance_rescale=0.7,
        audio_modality_scale=3.0, spatio_temporal_guidance_blocks=list(models.stg_blocks),
        max_sequence_length=models.text_max_length, output_type="latent", return_dict=False,
    )  # fmt: skip
    with torch.inference_mode():
        want_video, want_audio = pipe(generator=torch.Generator("cpu").manual_seed(5), **call)
        components = bind_ltx2_components(models)
        positive, negative = encode_text(components, BASE.prompt, BASE.negative_prompt)
        x, shape = initial_latents(
            components.geometry, StagePlan(64, 64, 64, 64), 9, 24.0, torch.Generator().manual_seed(5)
        )
        denoiser = Ltx2Denoiser(
            components.transformer, components.geometry, positive, negative, shape,
            GuidanceSpec(3, 1, 0.85, 3), GuidanceSpec(7, 1, 0.7, 3),
        )  # fmt: skip
        out = sample(x, schedules.ltx2_sigmas(4, x.video.shape[1]), denoiser, SamplerSettings())
        video = pipe._unpack_latents(out.video, shape.frames, shape.height, shape.width)
        vae, audio_vae = models.vae, models.audio_vae
        video = pipe._denormalize_latents(video, vae.latents_mean, vae.latents_std, 1.0)
        audio = pipe._denormalize_audio_latents(out.audio, audio_vae.latents_mean, audio_vae.latents_std)
        audio = pipe._unpack_audio_latents(audio, shape.audio_frames, num_mel_bins=16)
    assert float(want_video.abs().max()) > 1.0  # latents of a real size, so the tolerance means something
    assert torch.allclose(video, want_video, atol=2e-5, rtol=0)
    assert torch.allclose(audio, want_audio, atol=2e-5, rtol=0)
    assert denoiser.forwards == 8  # 4 steps x (batched cond/uncond/STG + isolated)


def test_guidance_terms_and_rescale() -> None:
    g = torch.Generator().manual_seed(0)
    c, u, p, m = (torch.randn(1, 5, 4, generator=g) for _ in range(4))
    plain = GuidanceSpec(1.0, 0.0, 0.0, 1.0)
    assert torch.equal(guided_x0(plain, c, u, p, m), c)
    assert torch.allclose(guided_x0(GuidanceSpec(3.0, 0.0, 0.0, 1.0), c, u, p, m), c + 2 * (c - u))
    assert torch.allclose(guided_x0(GuidanceSpec(1.0, 0.5, 0.0, 1.0), c, u, p, m), c + 0.5 * (c - p))
    assert torch.allclose(
        guided_x0(GuidanceSpec(1.0, 0.0, 0.0, 0.0), c, u, p, m), c - (c - m)
    )  # mod 0 allowed
    assert torch.allclose(
        guided_x0(GuidanceSpec(0.5, 0.0, 0.0, 1.0), c, u, p, m), c - 0.5 * (c - u)
    )  # cfg < 1
    full = guided_x0(GuidanceSpec(3.0, 0.0, 1.0, 1.0), c, u, p, m)
    assert float(full.std()) == pytest.approx(float(c.std()), rel=1e-5)  # r = 1: the cond's std


def test_gradient_estimation_and_restart() -> None:
    target = AvLatents(torch.full((1, 4, 2), 0.5), torch.full((1, 3, 2), -0.25))
    calls: list[float] = []

    def denoise(x: AvLatents, sigma: float, step: int) -> AvLatents:  # x0 that moves with the state
        calls.append(sigma)
        return AvLatents(0.7 * target.video + 0.3 * x.video, 0.7 * target.audio + 0.3 * x.audio)

    x = AvLatents(torch.ones(1, 4, 2), torch.ones(1, 3, 2))
    sigmas = torch.tensor([1.0, 0.7, 0.4, 0.0])
    euler = sample(x, sigmas, denoise, SamplerSettings())
    assert torch.allclose(
        sample(x, sigmas, denoise, SamplerSettings(gradient_estimation_gamma=1.0)).video, euler.video
    )
    ge = sample(x, sigmas, denoise, SamplerSettings(gradient_estimation_gamma=2.0))
    assert not torch.allclose(ge.video, euler.video)
    restart = SamplerSettings(restart_eta=0.3, noise_generator=torch.Generator().manual_seed(1))
    again = SamplerSettings(restart_eta=0.3, noise_generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(sample(x, sigmas, denoise, restart).video, euler.video)
    assert torch.equal(sample(x, sigmas, denoise, again).video, sample(x, sigmas, denoise, dataclasses.replace(
        again, noise_generator=torch.Generator().manual_seed(1))).video)  # fmt: skip
    assert len(calls) == 6 * 3  # no extra model evaluations for either


def test_stage_sizes_round_up_then_crop() -> None:
    first, second = stage_sizes(1248, 704, multiscale=True)
    assert (first.width, first.height) == (640, 352)
    assert second is not None and (second.width, second.height, second.crop_width) == (1280, 704, 1248)
    assert stage_sizes(512, 512, multiscale=False)[1] is None


def test_same_request_same_output_and_geometry(models: Ltx2Models, base_video: Any) -> None:
    a, b = base_video, run(models)
    assert a.frames.shape == (9, 64, 64, 3) and a.frames.dtype == np.uint8
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert a.audio.shape == (2, round(9 / 24 * 48000)) and a.audio_sample_rate == 48000


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 12},
        {"prompt": "a dog"},
        {"negative_prompt": "blurry"},
        {"num_inference_steps": 4},
        {"scheduler": Scheduler.LTX2},
        {"scheduler": Scheduler.LINEAR_QUADRATIC},
        {"gradient_estimation_gamma": 0.0},
        {"use_restart_sampling": False},
        {"video_guidance": GuidanceSpec(1.0, 1.0, 0.85, 3.0)},
        {"video_guidance": GuidanceSpec(3.0, 0.0, 0.85, 3.0)},
        {"video_guidance": GuidanceSpec(3.0, 1.0, 0.0, 3.0)},
        {"video_guidance": GuidanceSpec(3.0, 1.0, 0.85, 1.0)},
        {"audio_guidance": GuidanceSpec(1.0, 0.0, 0.7, 3.0)},
        {"audio_guidance": GuidanceSpec(7.0, 1.0, 0.7, 3.0)},
        {"audio_guidance": GuidanceSpec(7.0, 0.0, 0.0, 3.0)},
        {"audio_guidance": GuidanceSpec(7.0, 0.0, 0.7, 0.0)},
        {"distill_lora_first_pass_scale": 0.0},
        {"acceleration": Acceleration.REGULAR},
        {"fps": 30.0},
    ],
    ids=lambda change: ",".join(f"{k}={v}" for k, v in change.items()),
)
def test_each_field_changes_the_output(models: Ltx2Models, base_video: Any, change: dict[str, Any]) -> None:
    base, changed = base_video, run(models, **change)
    differs = not np.array_equal(base.frames, changed.frames) or base.audio.shape != changed.audio.shape
    assert differs or not np.array_equal(base.audio, changed.audio)


def test_fps_sets_audio_length_and_duration(models: Ltx2Models) -> None:
    video = run(models, fps=12.0, num_frames=17)
    assert video.frames.shape[0] == 17 and video.frame_rate == 12.0
    assert video.audio.shape[1] == round(17 / 12 * 48000)


def test_num_frames_is_exact(models: Ltx2Models) -> None:
    assert run(models, num_frames=12).frames.shape[0] == 12  # generated as 17, trimmed


def test_generate_audio_false_gives_no_audio(models: Ltx2Models, base_video: Any) -> None:
    video = run(models, generate_audio=False)
    assert video.audio is None and video.audio_sample_rate == 0
    assert np.array_equal(video.frames, base_video.frames)  # audio is still denoised jointly


def test_multiscale_runs_two_stages_and_crops(models: Ltx2Models) -> None:
    video = run(models, use_multiscale=True, width=96, height=64)
    assert video.frames.shape == (9, 64, 96, 3)  # 128x64 at stage 2, center-cropped
    assert not np.array_equal(run(models, use_multiscale=True).frames, run(models).frames)


def test_second_pass_distill_scale_changes_stage_two(models: Ltx2Models) -> None:
    a = run(models, use_multiscale=True)
    b = run(models, use_multiscale=True, distill_lora_second_pass_scale=0.0)
    assert not np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.audio, b.audio)  # the stage-1 audio is the one decoded


def test_distilled_lora_installs_once_on_shared_models(models: Ltx2Models) -> None:
    # Every runner of one config shares the cached models; a second runner's install must keep the
    # resident adapter, and the tiny LoRA must see the Linear layers through peft's wrappers.
    def distilled_weights() -> dict[str, torch.Tensor]:
        return {
            f"{m}.{k}": v.clone()
            for m in ("transformer", "connectors")
            for k, v in getattr(models, m).state_dict().items()
            if f".{DISTILLED}." in k
        }

    before = distilled_weights()
    assert any(k.startswith("transformer.") for k in before) and any(
        k.startswith("connectors.") for k in before
    )
    install_distilled(ltx2_helper_pipeline(models), models, 0)
    after = distilled_weights()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)

    fresh = tiny_distilled_lora(build_tiny_ltx2(0), 0)
    wrapped = tiny_distilled_lora(models, 0)
    assert wrapped.keys() == fresh.keys()
    assert all(torch.equal(wrapped[k], fresh[k]) for k in fresh)


def test_acceleration_levels_cut_forwards(models: Ltx2Models) -> None:
    counts = {}
    for level in Acceleration:
        spec = dataclasses.replace(BASE, acceleration=level, num_inference_steps=6)
        components = bind_ltx2_components(models)
        positive, negative = encode_text(components, spec.prompt, spec.negative_prompt)
        x, shape = initial_latents(
            components.geometry, StagePlan(64, 64, 64, 64), 9, 24.0, torch.Generator().manual_seed(0)
        )
        every = {Acceleration.NONE: 1, Acceleration.REGULAR: 2, Acceleration.HIGH: 3, Acceleration.FULL: 1}[
            level
        ]
        full = level is Acceleration.FULL
        neutral = GuidanceSpec(1.0, 0.0, 0.0, 1.0)
        denoiser = Ltx2Denoiser(
            components.transformer, components.geometry, positive, negative, shape,
            neutral if full else spec.video_guidance, neutral if full else spec.audio_guidance,
            guidance_every=every,
        )  # fmt: skip
        sigmas = schedules.distilled_sigmas() if full else schedules.beta_sigmas(6)
        with torch.inference_mode():
            sample(x, sigmas, denoiser, SamplerSettings())
        counts[level] = denoiser.forwards
    assert counts == {
        Acceleration.NONE: 12,
        Acceleration.REGULAR: 9,
        Acceleration.HIGH: 8,
        Acceleration.FULL: 8,
    }
