"""Text to video with LTX-Video (`ltx-video-lora`): our sampling loop over the component Protocols.

It mirrors diffusers' `LTXPipeline.__call__` (token-count-dependent sigma shift, classifier-free guidance
with the negative prompt, Euler flow-matching steps, decode timestep and noise) with the rope coordinates
and T5 attention mask of `LTXConditionPipeline`, the diffusers pipeline for LTX-Video 0.9.5+. It never calls
a diffusers pipeline: the Triton model runs this same code with components bound to BLS calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from service.contract.frames import frames_to_generate, uint8_frames
from service.domain.errors import Cancelled
from service.domain.outputs import GeneratedVideo
from service.domain.progress import CancelCheck, Progress, ProgressCallback, Stage
from service.domain.specs import TextToVideoSpec
from service.pipelines.components import Components
from service.pipelines.latents import (
    LatentShape,
    denormalize,
    latent_shape,
    pack,
    unpack,
    video_coords,
)
from service.pipelines.sampling import classifier_free_guidance, euler_step, make_scheduler, set_schedule

logger = logging.getLogger(__name__)

# diffusers' LTX pipelines default to 3.0. The 13B dev release config (ltxv-13b-0.9.7-dev.yaml) refines it
# with a per-step CFG/STG schedule, which comes with STG in a later change.
DEFAULT_GUIDANCE_SCALE = 3.0
# ltxv-13b-0.9.7-dev.yaml: the decoder sees the latents at t=0.05, mixed with 2.5% fresh noise.
DEFAULT_DECODE_TIMESTEP = 0.05
DEFAULT_DECODE_NOISE_SCALE = 0.025


@dataclass(frozen=True)
class SamplingOptions:
    """Model-level knobs the endpoint does not expose; the defaults are the 0.9.7 dev ones."""

    guidance_scale: float = DEFAULT_GUIDANCE_SCALE
    decode_timestep: float = DEFAULT_DECODE_TIMESTEP
    decode_noise_scale: float = DEFAULT_DECODE_NOISE_SCALE

    @property
    def uses_guidance(self) -> bool:
        return self.guidance_scale > 1.0


class PromptEmbeddings(NamedTuple):
    embeds: torch.Tensor  # [B, L, D]; with guidance B = 2: [negative, positive]
    mask: torch.Tensor  # [B, L]


def generate_text_to_video(
    components: Components,
    spec: TextToVideoSpec,
    on_progress: ProgressCallback,
    is_cancelled: CancelCheck,
    options: SamplingOptions = SamplingOptions(),
) -> GeneratedVideo:
    """Generate exactly `spec.num_frames` frames of `spec.height` x `spec.width`; same spec, same frames."""
    geometry = components.geometry
    # Generate the smallest legal length (8k+1) that holds the request, then trim to it exactly.
    num_frames = frames_to_generate(spec.num_frames, geometry.temporal_compression)
    shape = latent_shape(geometry, 1, num_frames, spec.height, spec.width)
    generator = torch.Generator("cpu").manual_seed(spec.seed)
    logger.info(
        "text-to-video %dx%d, %d frames (%d generated), %d steps, %d tokens",
        spec.width,
        spec.height,
        spec.num_frames,
        num_frames,
        spec.num_inference_steps,
        shape.num_tokens,
    )
    with torch.inference_mode():
        on_progress(Progress(Stage.ENCODING_PROMPT, message="encoding the prompt"))
        prompts = encode_prompts(components, spec.prompt, spec.negative_prompt, options)
        tokens = denoise(components, spec, shape, prompts, generator, options, on_progress, is_cancelled)
        on_progress(Progress(Stage.DECODING, message="decoding latents to frames"))
        video = decode(components, tokens, shape, generator, options)
        frames = to_uint8_frames(video)[: spec.num_frames]
    if spec.reverse_video:
        frames = np.ascontiguousarray(frames[::-1])
    return GeneratedVideo(
        frames=frames, frame_rate=float(spec.frame_rate), prompt=spec.prompt, seed=spec.seed
    )


def encode_prompts(
    components: Components, prompt: str, negative_prompt: str, options: SamplingOptions
) -> PromptEmbeddings:
    prompts = [negative_prompt, prompt] if options.uses_guidance else [prompt]
    embeds, mask = components.text_encoder.encode(prompts)
    return PromptEmbeddings(embeds, mask)


def denoise(
    components: Components,
    spec: TextToVideoSpec,
    shape: LatentShape,
    prompts: PromptEmbeddings,
    generator: torch.Generator,
    options: SamplingOptions,
    on_progress: ProgressCallback,
    is_cancelled: CancelCheck,
) -> torch.Tensor:
    """Pure noise -> denoised packed latents [1, N, C]."""
    geometry, device = components.geometry, prompts.embeds.device
    scheduler = make_scheduler(components.scheduler_config)
    sigmas = set_schedule(scheduler, spec.num_inference_steps, shape.num_tokens, device)
    latents = pack(
        randn_tensor(tuple(shape), generator=generator, device=device, dtype=torch.float32), geometry
    )
    coords = video_coords(shape._replace(batch=prompts.embeds.shape[0]), geometry, spec.frame_rate, device)
    total = len(sigmas)
    for step, (timestep, sigma) in enumerate(zip(scheduler.timesteps, sigmas, strict=True)):
        if is_cancelled():
            raise Cancelled()
        model_input = torch.cat([latents] * prompts.embeds.shape[0]).to(prompts.embeds.dtype)
        per_token_sigma = sigma.expand(model_input.shape[:2])
        velocity = components.transformer.velocity(model_input, per_token_sigma, coords, *prompts).float()
        if options.uses_guidance:
            velocity = classifier_free_guidance(velocity, options.guidance_scale)
        latents = euler_step(scheduler, velocity, timestep, latents)
        on_progress(Progress(Stage.DENOISING, step=step + 1, total=total))
    return latents


def decode(
    components: Components,
    tokens: torch.Tensor,
    shape: LatentShape,
    generator: torch.Generator,
    options: SamplingOptions,
) -> torch.Tensor:
    """Packed latents -> video [B, 3, F, H, W] in [-1, 1]."""
    geometry = components.geometry
    latents = denormalize(unpack(tokens, shape, geometry), geometry)
    batch = latents.shape[0]
    decode_timestep = torch.zeros(batch, device=latents.device, dtype=latents.dtype)
    if geometry.decode_timestep_conditioning:
        # As diffusers: decode from slightly re-noised latents at a small timestep (the decoder was trained so).
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        scale = torch.full((batch,), options.decode_noise_scale, device=latents.device, dtype=latents.dtype)
        scale = scale[:, None, None, None, None]
        latents = (1 - scale) * latents + scale * noise
        decode_timestep = torch.full_like(decode_timestep, options.decode_timestep)
    return components.vae_decoder.decode(latents, decode_timestep)


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """Video [1, 3, F, H, W] in [-1, 1] -> uint8 [F, H, W, 3] (the pixel convention of contract/frames.py)."""
    # In place: at 720p x 89 frames each float copy of the video is ~1 GB.
    return uint8_frames(video[0], consume=True)
