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

The models are behind the component Protocols (components.py); diffusers' `LTX2Pipeline` lends only its
pure static helpers (packing, noise). LoRAs (user, camera, distilled) are activated per stage by
`set_stage_adapters`, a callback from the engine (in process: peft adapters; on Triton: the distilled scale
the BLS bindings send).
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
from diffusers.utils.torch_utils import randn_tensor

from service.contract.frames import frames_to_generate
from service.domain.errors import Cancelled
from service.domain.geometry import audio_samples
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import CancelCheck, Progress, ProgressCallback, Stage
from service.domain.specs import Acceleration, Ltx2TextToVideoSpec
from service.pipelines.ltx2 import schedules
from service.pipelines.ltx2.components import Ltx2Components, Ltx2Geometry
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


def distilled_lora_scale(spec: Ltx2TextToVideoSpec, stage: int) -> float:
    """The distilled LoRA's scale in `stage` (1 or 2): the spec's per-pass scales, 1 in the first pass of
    acceleration `full` (the distilled recipe), as service/models/ltx2_loras.py mixes it in process."""
    if stage == 1:
        return 1.0 if spec.acceleration is Acceleration.FULL else spec.distill_lora_first_pass_scale
    return spec.distill_lora_second_pass_scale


def encode_text(
    components: Ltx2Components, prompt: str, negative: str | None
) -> tuple[TextContext, TextContext | None]:
    positive = components.text_encoder.encode(prompt)
    return positive, (components.text_encoder.encode(negative) if negative is not None else None)


def generate_ltx2(
    components: Ltx2Components,
    spec: Ltx2TextToVideoSpec,
    ctx: JobContext,
    set_stage_adapters: StageAdapters = lambda stage: None,
) -> GeneratedVideo:
    with torch.inference_mode():
        return _generate(components, spec, ctx.on_progress, ctx.is_cancelled, set_stage_adapters)


def _generate(
    components: Ltx2Components,
    spec: Ltx2TextToVideoSpec,
    on_progress: ProgressCallback,
    is_cancelled: CancelCheck,
    set_stage_adapters: StageAdapters,
) -> GeneratedVideo:
    geometry = components.geometry
    full = spec.acceleration is Acceleration.FULL
    video_guidance = NEUTRAL if full else spec.video_guidance
    audio_guidance = NEUTRAL if full else spec.audio_guidance
    needs_negative = video_guidance.cfg_scale != 1 or audio_guidance.cfg_scale != 1
    set_stage_adapters(1)  # before the text: the connectors carry LoRA adapters too
    on_progress(Progress(Stage.ENCODING_PROMPT, message="encoding the prompt with Gemma-3"))
    negative_prompt = spec.negative_prompt if needs_negative else None
    positive, negative = encode_text(components, spec.prompt, negative_prompt)
    stage1, stage2 = stage_sizes(spec.width, spec.height, spec.use_multiscale)
    frames = frames_to_generate(spec.num_frames)
    generator = torch.Generator("cpu").manual_seed(spec.seed)
    x, shape = initial_latents(geometry, stage1, frames, spec.fps, generator)
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
        components.transformer,
        geometry,
        positive,
        negative,
        shape,
        video_guidance,
        audio_guidance,
        guidance_every=GUIDANCE_EVERY[spec.acceleration],
    )
    restart = SamplerSettings(
        spec.gradient_estimation_gamma,
        RESTART_ETA if spec.use_restart_sampling else 0.0,
        torch.Generator("cpu").manual_seed(spec.seed + RESTART_SEED_OFFSET),
    )
    x = sample(x, sigmas, denoiser, restart, _reporter(on_progress, "stage 1"), is_cancelled)
    audio_latents = x.audio
    video_latents = unpack_video(geometry, x.video, shape)
    if stage2 is not None:
        set_stage_adapters(2)
        video_latents, shape = _stage2(
            components, video_latents, x.audio, shape, positive, generator, on_progress, is_cancelled
        )
    pixels = decode_video(components, video_latents, spec.num_frames, on_progress, is_cancelled)
    if stage2 is not None:
        pixels = _center_crop(pixels, stage2.crop_width, stage2.crop_height)
    audio = decode_audio(components, audio_latents, spec) if spec.generate_audio else None
    sample_rate = geometry.output_sample_rate if audio is not None else 0
    return GeneratedVideo(
        pixels, spec.fps, spec.prompt, spec.seed, audio=audio, audio_sample_rate=sample_rate
    )


def pack_video(geometry: Ltx2Geometry, latents: torch.Tensor) -> torch.Tensor:
    return LTX2Pipeline._pack_latents(latents, geometry.patch_size, geometry.patch_size_t)


def unpack_video(geometry: Ltx2Geometry, latents: torch.Tensor, shape: LatentShape) -> torch.Tensor:
    return LTX2Pipeline._unpack_latents(
        latents, shape.frames, shape.height, shape.width, geometry.patch_size, geometry.patch_size_t
    )


def initial_latents(
    geometry: Ltx2Geometry,
    stage: StagePlan,
    frames: int,
    fps: float,
    generator: torch.Generator,
    device: torch.device | None = None,
) -> tuple[AvLatents, LatentShape]:
    """Video then audio noise from `generator`, packed, as `LTX2Pipeline.prepare_(audio_)latents` draw it."""
    space, time = geometry.spatial_compression, geometry.temporal_compression
    audio_frames = audio_latent_frames(geometry, frames, fps)
    shape = LatentShape(
        frames=(frames - 1) // time + 1,
        height=stage.height // space,
        width=stage.width // space,
        audio_frames=audio_frames,
        fps=conditioning_frame_rate(fps, 1.0),
    )
    video_noise = (1, geometry.latent_channels, shape.frames, shape.height, shape.width)
    video = randn_tensor(video_noise, generator=generator, device=device, dtype=torch.float32)
    video = pack_video(geometry, video)
    audio_noise = (1, geometry.audio_latent_channels, audio_frames, geometry.audio_latent_mel_bins)
    audio = randn_tensor(audio_noise, generator=generator, device=device, dtype=torch.float32)
    return AvLatents(video, LTX2Pipeline._pack_audio_latents(audio)), shape


def audio_latent_frames(geometry: Ltx2Geometry, frames: int, fps: float) -> int:
    """round(duration * latents per second): 121 frames at 24 fps -> 126 latents at 25/s."""
    return round(frames / fps * geometry.audio_latents_per_second)


def _stage2(
    components: Ltx2Components,
    video_latents: torch.Tensor,
    audio: torch.Tensor,
    shape: LatentShape,
    positive: TextContext,
    generator: torch.Generator,
    on_progress: ProgressCallback,
    is_cancelled: CancelCheck,
) -> tuple[torch.Tensor, LatentShape]:
    if components.upsampler is None:
        raise ValueError("multiscale needs the LTX-2.3 latent upsampler (ltx2.upsampler_dir)")
    geometry = components.geometry
    on_progress(Progress(Stage.UPSAMPLING, message="x2 latent upsampler"))
    upsampled = components.upsampler.upsample(video_latents).to(video_latents.device)
    sigmas = schedules.stage2_sigmas()
    start = float(sigmas[0])
    video = LTX2Pipeline._create_noised_state(pack_video(geometry, upsampled), start, generator)
    video = video.to(device=video_latents.device, dtype=torch.float32)
    audio_in = audio + 0  # audio is re-noised beside the video; its stage-2 result is discarded
    noise = torch.randn(audio_in.shape, generator=generator, dtype=torch.float32).to(audio_in)
    audio_in = start * noise + (1 - start) * audio_in
    shape2 = LatentShape(shape.frames, upsampled.shape[3], upsampled.shape[4], shape.audio_frames, shape.fps)
    denoiser = Ltx2Denoiser(components.transformer, geometry, positive, None, shape2, NEUTRAL, NEUTRAL)
    x = sample(
        AvLatents(video, audio_in),
        sigmas,
        denoiser,
        SamplerSettings(),
        _reporter(on_progress, "stage 2"),
        is_cancelled,
    )
    return unpack_video(geometry, x.video, shape2), shape2


def decode_video(
    components: Ltx2Components,
    latents: torch.Tensor,
    num_frames: int,
    on_progress: ProgressCallback,
    is_cancelled: CancelCheck,
) -> np.ndarray:
    """uint8 [num_frames, H, W, 3] from normalised latents [1, C, F, h, w]."""
    if is_cancelled():
        raise Cancelled()
    on_progress(Progress(Stage.DECODING, message="decoding video latents"))
    video = components.vae_decoder.decode(latents)  # [1, 3, F, H, W] in [-1, 1]
    video = video[0, :, :num_frames]
    pixels = np.empty((video.shape[1], video.shape[2], video.shape[3], 3), dtype=np.uint8)
    for start in range(0, video.shape[1], PIXEL_CHUNK_FRAMES):  # in place, a few frames at a time
        chunk = video[:, start : start + PIXEL_CHUNK_FRAMES].float()
        chunk = chunk.clamp_(-1, 1).add_(1).mul_(127.5).round_().to(torch.uint8)
        pixels[start : start + chunk.shape[1]] = chunk.permute(1, 2, 3, 0).cpu().numpy()
    return pixels


def decode_audio(components: Ltx2Components, latents: torch.Tensor, spec: Ltx2TextToVideoSpec) -> np.ndarray:
    """float32 [channels, samples] at the vocoder's rate, exactly `num_frames / fps` long."""
    waveform = components.audio_decoder.decode(latents)[0].float().cpu().numpy()
    rate = components.geometry.output_sample_rate
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
