"""`ltx-2.3-22b/text-to-video/lora`: text to video with audio on the LTX-2.3 models.

1. Prompt and negative prompt -> Gemma-3 hidden states -> the text connectors (video and audio contexts).
2. Noise for video and audio latents from one CPU generator seeded with the request's seed (video first,
   as `LTX2Pipeline` draws it). The audio length is round(num_frames / fps * 25) latents (16 kHz mel,
   hop 160, 4x temporal compression), so it follows the requested frame count and fps.
3. Stage 1 (`use_multiscale`: at half size, sides rounded up to a multiple of 32 so that stage 2 covers
   the request) with the requested schedule, guidance, gradient estimation and restart noise.
4. Multiscale: the x2 latent upsampler, then stage 2 at full size without guidance on the distilled sigmas
   [0.909375, 0.725, 0.421875, 0], its input re-noised to 0.909375; audio is re-noised and denoised beside
   it (the video attends to it) but, as in the reference pipeline, the stage-1 audio is the one decoded.
   The result is center-cropped to the requested size.
5. Decode: the video VAE (frames trimmed to `num_frames`), the audio VAE + vocoder (48 kHz), the audio padded
   or trimmed to exactly the video's duration. With `generate_audio: false` no audio is decoded or returned.

LoRAs (user, camera, distilled) are activated per stage by `set_stage_adapters`, a callback from the engine.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline
from diffusers.pipelines.ltx2.utils import conditioning_frame_rate

from service.contract.frames import frames_to_generate
from service.domain.errors import Cancelled
from service.domain.geometry import audio_samples
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import CancelCheck, Progress, ProgressCallback, Stage
from service.domain.specs import Acceleration, Ltx2TextToVideoSpec
from service.pipelines.ltx2 import schedules
from service.pipelines.ltx2.components import Ltx2Models
from service.pipelines.ltx2.denoiser import LatentShape, Ltx2Denoiser, TextContext
from service.pipelines.ltx2.guidance import NEUTRAL
from service.pipelines.ltx2.sampler import AvLatents, SamplerSettings, sample

logger = logging.getLogger(__name__)

# Restart sampling's noise fraction per step (ours, see sampler.py); tuned for the 15-step beta default.
RESTART_ETA = 0.3
RESTART_SEED_OFFSET = 1  # restart noise comes from its own generator, seeded seed + 1
# Acceleration: run the guidance passes every k-th step (reusing the last guidance in between).
GUIDANCE_EVERY = {Acceleration.NONE: 1, Acceleration.REGULAR: 2, Acceleration.HIGH: 3, Acceleration.FULL: 1}
MULTISCALE_ALIGN = 64
PIXEL_CHUNK_FRAMES = 8  # stage 2 = 2 x stage 1 and each stage's sides are multiples of 32

StageAdapters = Callable[[int], None]  # called with the stage (1 or 2) before it runs


@dataclass(frozen=True)
class StagePlan:
    width: int
    height: int
    crop_width: int
    crop_height: int


def stage_sizes(width: int, height: int, multiscale: bool) -> tuple[StagePlan, StagePlan | None]:
    """Stage 1 and 2 sizes: 1248x704 -> stage 1 640x352, stage 2 1280x704, cropped to 1248x704."""
    if not multiscale:
        return StagePlan(width, height, width, height), None
    w2 = math.ceil(width / MULTISCALE_ALIGN) * MULTISCALE_ALIGN
    h2 = math.ceil(height / MULTISCALE_ALIGN) * MULTISCALE_ALIGN
    return StagePlan(w2 // 2, h2 // 2, w2 // 2, h2 // 2), StagePlan(w2, h2, width, height)


def ltx2_helper_pipeline(models: Ltx2Models) -> LTX2Pipeline:
    """An `LTX2Pipeline` around the models, for its helpers (prompt encoding, latents, (un)packing)."""
    return LTX2Pipeline(
        scheduler=schedules.ltx2_scheduler(),  # type: ignore[arg-type]
        vae=models.vae,
        audio_vae=models.audio_vae,
        text_encoder=models.text_encoder,
        tokenizer=models.tokenizer,
        connectors=models.connectors,
        transformer=models.transformer,
        vocoder=models.vocoder,
    )


def encode_text(
    pipe: LTX2Pipeline, models: Ltx2Models, prompt: str, negative: str | None
) -> tuple[TextContext, TextContext | None]:
    embeds, mask, neg_embeds, neg_mask = pipe.encode_prompt(
        prompt,
        negative_prompt=negative,
        do_classifier_free_guidance=negative is not None,
        max_sequence_length=models.text_max_length,
        device=models.device,
    )
    positive = TextContext(*models.connectors(embeds, mask, padding_side="left"))
    if negative is None:
        return positive, None
    return positive, TextContext(*models.connectors(neg_embeds, neg_mask, padding_side="left"))


def generate_ltx2(
    models: Ltx2Models,
    spec: Ltx2TextToVideoSpec,
    ctx: JobContext,
    set_stage_adapters: StageAdapters = lambda stage: None,
) -> GeneratedVideo:
    with torch.inference_mode():
        return _generate(models, spec, ctx.on_progress, ctx.is_cancelled, set_stage_adapters)


def _generate(
    models: Ltx2Models,
    spec: Ltx2TextToVideoSpec,
    on_progress: ProgressCallback,
    is_cancelled: CancelCheck,
    set_stage_adapters: StageAdapters,
) -> GeneratedVideo:
    pipe = ltx2_helper_pipeline(models)
    full = spec.acceleration is Acceleration.FULL
    video_guidance = NEUTRAL if full else spec.video_guidance
    audio_guidance = NEUTRAL if full else spec.audio_guidance
    needs_negative = video_guidance.cfg_scale != 1 or audio_guidance.cfg_scale != 1
    set_stage_adapters(1)  # before the text: the connectors carry LoRA adapters too
    on_progress(Progress(Stage.ENCODING_PROMPT, message="encoding the prompt with Gemma-3"))
    positive, negative = encode_text(
        pipe, models, spec.prompt, spec.negative_prompt if needs_negative else None
    )
    stage1, stage2 = stage_sizes(spec.width, spec.height, spec.use_multiscale)
    frames = frames_to_generate(spec.num_frames)
    generator = torch.Generator("cpu").manual_seed(spec.seed)
    x, shape = initial_latents(pipe, models, stage1, frames, spec.fps, generator)
    sigmas = (
        schedules.distilled_sigmas()
        if full
        else schedules.stage1_sigmas(spec.scheduler, spec.num_inference_steps, x.video.shape[1])
    )
    if full:
        logger.info(
            "acceleration full: the distilled 8-step recipe without guidance replaces the steps and scales"
        )
    denoiser = Ltx2Denoiser(
        models.transformer,
        positive,
        negative,
        shape,
        video_guidance,
        audio_guidance,
        models.stg_blocks,
        guidance_every=GUIDANCE_EVERY[spec.acceleration],
    )
    restart = SamplerSettings(
        spec.gradient_estimation_gamma,
        RESTART_ETA if spec.use_restart_sampling else 0.0,
        torch.Generator("cpu").manual_seed(spec.seed + RESTART_SEED_OFFSET),
    )
    x = sample(x, sigmas, denoiser, restart, _reporter(on_progress, "stage 1"), is_cancelled)
    audio_latents = x.audio
    video_latents = pipe._unpack_latents(x.video, shape.frames, shape.height, shape.width)
    if stage2 is not None:
        video_latents, shape = _stage2(
            pipe,
            models,
            video_latents,
            x.audio,
            shape,
            positive,
            generator,
            on_progress,
            is_cancelled,
            set_stage_adapters,
        )
    pixels = decode_video(pipe, models, video_latents, spec.num_frames, on_progress, is_cancelled)
    if stage2 is not None:
        pixels = _center_crop(pixels, stage2.crop_width, stage2.crop_height)
    audio = (
        decode_audio(pipe, models, audio_latents, shape.audio_frames, spec) if spec.generate_audio else None
    )
    sample_rate = int(models.vocoder.config["output_sampling_rate"]) if audio is not None else 0
    return GeneratedVideo(
        pixels, spec.fps, spec.prompt, spec.seed, audio=audio, audio_sample_rate=sample_rate
    )


def initial_latents(
    pipe: LTX2Pipeline,
    models: Ltx2Models,
    stage: StagePlan,
    frames: int,
    fps: float,
    generator: torch.Generator,
) -> tuple[AvLatents, LatentShape]:
    device = models.device
    video = pipe.prepare_latents(
        1,
        models.transformer.config["in_channels"],
        stage.height,
        stage.width,
        frames,
        0.0,
        torch.float32,
        device,
        generator,
    )
    audio_frames = audio_latent_frames(models, frames, fps)
    audio = pipe.prepare_audio_latents(
        1,
        int(models.audio_vae.config["latent_channels"]),
        audio_frames,
        int(models.audio_vae.config["mel_bins"]),
        0.0,
        torch.float32,
        device,
        generator,
    )
    shape = LatentShape(
        frames=(frames - 1) // pipe.vae_temporal_compression_ratio + 1,
        height=stage.height // pipe.vae_spatial_compression_ratio,
        width=stage.width // pipe.vae_spatial_compression_ratio,
        audio_frames=audio_frames,
        fps=conditioning_frame_rate(fps, 1.0),
    )
    return AvLatents(video, audio), shape


def audio_latent_frames(models: Ltx2Models, frames: int, fps: float) -> int:
    """round(duration * latents per second): 121 frames at 24 fps -> 126 latents at 25/s."""
    config = models.audio_vae.config
    per_second = (
        config["sample_rate"] / config["mel_hop_length"] / float(models.audio_vae.temporal_compression_ratio)
    )
    return round(frames / fps * per_second)


def _stage2(
    pipe: LTX2Pipeline,
    models: Ltx2Models,
    video_latents: torch.Tensor,
    audio: torch.Tensor,
    shape: LatentShape,
    positive: TextContext,
    generator: torch.Generator,
    on_progress: ProgressCallback,
    is_cancelled: CancelCheck,
    set_stage_adapters: StageAdapters,
) -> tuple[torch.Tensor, LatentShape]:
    if models.upsampler is None:
        raise ValueError("multiscale needs the LTX-2.3 latent upsampler (ltx2.upsampler_dir)")
    on_progress(Progress(Stage.UPSAMPLING, message="x2 latent upsampler"))
    vae = models.vae
    raw = pipe._denormalize_latents(
        video_latents, vae.latents_mean, vae.latents_std, vae.config["scaling_factor"]
    )
    upsampled = models.upsampler(raw.to(models.upsampler.dtype)).float()
    sigmas = schedules.stage2_sigmas()
    start = float(sigmas[0])
    video = pipe.prepare_latents(
        latents=upsampled, noise_scale=start, dtype=torch.float32, device=models.device, generator=generator
    )
    audio_in = audio + 0  # audio is re-noised beside the video; its stage-2 result is discarded
    noise = torch.randn(audio_in.shape, generator=generator, dtype=torch.float32).to(audio_in)
    audio_in = start * noise + (1 - start) * audio_in
    shape2 = LatentShape(shape.frames, upsampled.shape[3], upsampled.shape[4], shape.audio_frames, shape.fps)
    set_stage_adapters(2)
    denoiser = Ltx2Denoiser(models.transformer, positive, None, shape2, NEUTRAL, NEUTRAL, models.stg_blocks)
    x = sample(
        AvLatents(video, audio_in),
        sigmas,
        denoiser,
        SamplerSettings(),
        _reporter(on_progress, "stage 2"),
        is_cancelled,
    )
    return pipe._unpack_latents(x.video, shape2.frames, shape2.height, shape2.width), shape2


def decode_video(
    pipe: LTX2Pipeline,
    models: Ltx2Models,
    latents: torch.Tensor,
    num_frames: int,
    on_progress: ProgressCallback,
    is_cancelled: CancelCheck,
) -> np.ndarray:
    """uint8 [num_frames, H, W, 3] from normalised latents [1, C, F, h, w]."""
    if is_cancelled():
        raise Cancelled()
    on_progress(Progress(Stage.DECODING, message="decoding video latents"))
    vae = models.vae
    raw = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config["scaling_factor"])
    timestep = (
        torch.zeros(1, device=raw.device, dtype=vae.dtype) if vae.config["timestep_conditioning"] else None
    )
    video = vae.decode(raw.to(vae.dtype), timestep, return_dict=False)[0]  # [1, 3, F, H, W] in [-1, 1]
    video = video[0, :, :num_frames]
    pixels = np.empty((video.shape[1], video.shape[2], video.shape[3], 3), dtype=np.uint8)
    for start in range(0, video.shape[1], PIXEL_CHUNK_FRAMES):  # in place, a few frames at a time
        chunk = video[:, start : start + PIXEL_CHUNK_FRAMES].float()
        chunk = chunk.clamp_(-1, 1).add_(1).mul_(127.5).round_().to(torch.uint8)
        pixels[start : start + chunk.shape[1]] = chunk.permute(1, 2, 3, 0).cpu().numpy()
    return pixels


def decode_audio(
    pipe: LTX2Pipeline,
    models: Ltx2Models,
    latents: torch.Tensor,
    audio_frames: int,
    spec: Ltx2TextToVideoSpec,
) -> np.ndarray:
    """float32 [channels, samples] at the vocoder's rate, exactly `num_frames / fps` long."""
    audio_vae = models.audio_vae
    raw = pipe._denormalize_audio_latents(latents, audio_vae.latents_mean, audio_vae.latents_std)
    mel_bins = int(audio_vae.config["mel_bins"]) // pipe.audio_vae_mel_compression_ratio
    raw = pipe._unpack_audio_latents(raw, audio_frames, num_mel_bins=mel_bins)
    mel = audio_vae.decode(raw.to(audio_vae.dtype), return_dict=False)[0]
    waveform = models.vocoder(mel.to(models.vocoder.dtype))[0].float().clamp(-1, 1).cpu().numpy()
    rate = int(models.vocoder.config["output_sampling_rate"])
    return fit_audio(waveform, audio_samples(spec.num_frames, spec.fps, rate))


def fit_audio(waveform: np.ndarray, samples: int) -> np.ndarray:
    """Pad with silence or trim to exactly `samples` (the causal audio VAE decodes 4(n-1)+1 mel frames)."""
    if waveform.shape[1] >= samples:
        return np.ascontiguousarray(waveform[:, :samples])
    pad = np.zeros((waveform.shape[0], samples - waveform.shape[1]), dtype=waveform.dtype)
    return np.concatenate([waveform, pad], axis=1)


def _center_crop(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    top = (pixels.shape[1] - height) // 2
    left = (pixels.shape[2] - width) // 2
    return np.ascontiguousarray(pixels[:, top : top + height, left : left + width])


def _reporter(on_progress: ProgressCallback, label: str) -> Callable[[int, int], None]:
    def report(step: int, total: int) -> None:
        on_progress(Progress(Stage.DENOISING, step=step, total=total, message=f"{label} step {step}/{total}"))

    return report
