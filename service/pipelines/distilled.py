"""`ltx-video-13b-distilled/multiconditioning`: LTX-Video 0.9.7 13B distilled, two passes, long videos.

One clip is LTX's multiscale pipeline (`LTXMultiScalePipeline` with configs/ltxv-13b-0.9.7-distilled.yaml)
over our components:

1. First pass at `multiscale_sizes(size, 2/3).first_pass` (1280x704 -> 832x448): pure noise, conditions
   resized to that size, `first_pass_num_inference_steps` of the distilled schedule less its final step.
2. The latent upsampler doubles each side (on denormalized latents, as the upsampler was trained), and
   the result is AdaIN-normalized to the first pass's per-channel statistics (factor 1), as LTX does.
3. Second pass at twice the first-pass size: the upsampled latents re-noised to the first sigma of the
   second pass's schedule (`second_pass_num_inference_steps` less the first
   `second_pass_skip_initial_steps`), conditions resized to that size.
4. `enable_detail_pass`: the second pass once more on its own result (re-noised to the same sigma, same
   steps), refining details at the cost of another second pass. The spec says only "a second pass to refine
   the video and enhance details" at 2x cost; this is our reading of it with the weights we have.
5. Decode: 2.5% decode noise at decode timestep 0.05 (the distilled config), then the tone-map
   compression (`tone_map_compression_ratio`) on the final normalized latents, where LTX applies it, then
   denormalize and decode; frames are resized (bilinear, as LTX) to the exact requested size.

The distilled model runs without classifier-free guidance or STG (guidance scale 1 in the release config),
so one transformer call per step and the negative prompt is not used. At the defaults (8, 8, 5) the passes
run exactly the official timesteps (`schedules.distilled_timesteps`).

Videos longer than one chunk (121 frames) are generated chunk by chunk (`long_video`), each chunk one
such clip; the output has exactly `num_frames` frames.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from service.contract.frames import uint8_from_unit
from service.domain.context import JobContext
from service.domain.geometry import (
    DISTILLED_FIRST_PASS_DOWNSCALE,
    FrameSize,
    MultiscaleSizes,
    multiscale_sizes,
)
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Stage
from service.domain.specs import DistilledMulticonditioningSpec
from service.pipelines.adain import adain_filter_latent
from service.pipelines.components import Components
from service.pipelines.conditioning import (
    ConditioningMedia,
    ConditioningOptions,
    VelocityFn,
    denoise_conditioned,
    generated_tokens,
    prepare_conditioned_latents,
    resize_media,
)
from service.pipelines.latents import LatentShape, denormalize, latent_shape, normalize, unpack
from service.pipelines.long_video import (
    ClipRequest,
    LongVideoOptions,
    LongVideoRequest,
    generate_long_video,
)
from service.pipelines.schedules import DistilledTimesteps, distilled_timesteps
from service.pipelines.tone_map import tone_map_latents

logger = logging.getLogger(__name__)

# configs/ltxv-13b-0.9.7-distilled.yaml: the decoder sees the latents at t = 0.05, with 2.5% fresh noise.
DISTILLED_DECODE_TIMESTEP = 0.05
DISTILLED_DECODE_NOISE_SCALE = 0.025
# LTXMultiScalePipeline normalizes the upsampled latents fully to the first pass's statistics.
UPSAMPLED_ADAIN_FACTOR = 1.0
# Frames converted to uint8 at a time: at 1664x896 each float frame is 18 MB, a whole clip gigabytes.
_FRAMES_PER_CONVERSION = 16


class DenoisingPass(StrEnum):
    FIRST = "first pass"
    SECOND = "second pass"
    DETAIL = "detail pass"


@dataclass(frozen=True)
class DistilledOptions:
    """Model-level knobs the endpoint does not expose; the defaults are the 0.9.7 distilled release's."""

    decode_timestep: float = DISTILLED_DECODE_TIMESTEP
    decode_noise_scale: float = DISTILLED_DECODE_NOISE_SCALE
    upsampled_adain_factor: float = UPSAMPLED_ADAIN_FACTOR
    conditioning: ConditioningOptions = field(default_factory=ConditioningOptions)
    long_video: LongVideoOptions = field(default_factory=LongVideoOptions)


class PromptEmbeddings(NamedTuple):
    embeds: torch.Tensor  # [1, L, D]: the prompt alone, the distilled model runs without CFG
    mask: torch.Tensor  # [1, L]


class ClipGeometry(NamedTuple):
    """Sizes, latent grids and timesteps of one two-pass clip."""

    sizes: MultiscaleSizes
    first_pass: LatentShape
    second_pass: LatentShape
    timesteps: DistilledTimesteps


def clip_geometry(
    components: Components, spec: DistilledMulticonditioningSpec, num_frames: int
) -> ClipGeometry:
    """The two passes of a clip of `num_frames` (8k + 1) frames for `spec`."""
    sizes = multiscale_sizes(FrameSize(spec.width, spec.height), DISTILLED_FIRST_PASS_DOWNSCALE)
    first, second = sizes.first_pass, sizes.second_pass
    geometry = components.geometry
    return ClipGeometry(
        sizes=sizes,
        first_pass=latent_shape(geometry, 1, num_frames, first.height, first.width),
        second_pass=latent_shape(geometry, 1, num_frames, second.height, second.width),
        timesteps=distilled_timesteps(
            spec.first_pass_num_inference_steps,
            spec.second_pass_num_inference_steps,
            spec.second_pass_skip_initial_steps,
        ),
    )


def generate_distilled(
    components: Components,
    spec: DistilledMulticonditioningSpec,
    conditions: Sequence[ConditioningMedia],
    ctx: JobContext,
    options: DistilledOptions = DistilledOptions(),
) -> GeneratedVideo:
    """Exactly `spec.num_frames` frames of `spec.width` x `spec.height`; same spec and inputs, same frames.

    `conditions` are at output frames and any size (each pass resizes them), e.g. from media_inputs.
    """
    if not (spec.width and spec.height):
        raise ValueError("the spec's AUTO size must be resolved (specs.resolve_auto_size) before generating")
    if components.upsampler is None:
        raise ValueError("the distilled pipeline needs a latent upsampler component")
    ctx.report(Stage.ENCODING_PROMPT, "encoding the prompt")
    embeds, mask = components.text_encoder.encode([spec.prompt])
    renderer = DistilledClipRenderer(components, spec, PromptEmbeddings(embeds, mask), options, ctx)
    request = LongVideoRequest(
        num_frames=spec.num_frames,
        size=FrameSize(spec.width, spec.height),
        seed=spec.seed,
        temporal_adain_factor=spec.temporal_adain_factor,
        reverse=spec.reverse_video,
    )
    with torch.inference_mode():
        frames = generate_long_video(renderer, request, conditions, ctx, options.long_video)
    return GeneratedVideo(
        frames=frames, frame_rate=float(spec.frame_rate), prompt=spec.prompt, seed=spec.seed
    )


class DistilledClipRenderer:
    """Renders one clip (a whole short video, or one chunk of a long one) with the two-pass pipeline."""

    def __init__(
        self,
        components: Components,
        spec: DistilledMulticonditioningSpec,
        prompts: PromptEmbeddings,
        options: DistilledOptions,
        ctx: JobContext,
    ) -> None:
        self.components = components
        self.spec = spec
        self.prompts = prompts
        self.options = options
        self.ctx = ctx  # each chunk draws from its own generator (ClipRequest.generator)

    def latents(self, request: ClipRequest) -> torch.Tensor:
        """Final normalized latents [1, C, f, h, w] at the second-pass size."""
        clip = clip_geometry(self.components, self.spec, request.num_frames)
        logger.info(
            "distilled clip %s: %d frames, first pass %dx%d (%d steps), second pass %dx%d (%d steps)",
            request.label or "1/1",
            request.num_frames,
            *clip.sizes.first_pass,
            len(clip.timesteps.first_pass),
            *clip.sizes.second_pass,
            len(clip.timesteps.second_pass),
        )
        first = self._denoise(DenoisingPass.FIRST, clip.first_pass, clip.timesteps.first_pass, request)
        upsampled = self._upsample(first, request)
        second_sigmas = clip.timesteps.second_pass
        latents = self._denoise(DenoisingPass.SECOND, clip.second_pass, second_sigmas, request, upsampled)
        if self.spec.enable_detail_pass:
            latents = self._denoise(DenoisingPass.DETAIL, clip.second_pass, second_sigmas, request, latents)
        return latents

    def frames(self, latents: torch.Tensor, request: ClipRequest) -> np.ndarray:
        self.ctx.raise_if_cancelled()
        self.ctx.report(Stage.DECODING, _message("decoding latents to frames", request))
        video = decode(
            self.components, latents, request.generator, self.spec.tone_map_compression_ratio, self.options
        )
        return to_output_frames(video, FrameSize(self.spec.width, self.spec.height))

    def _denoise(
        self,
        name: DenoisingPass,
        shape: LatentShape,
        sigmas: Sequence[float],
        request: ClipRequest,
        initial: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One pass: conditions at this pass's size, noise (or `initial` re-noised to sigmas[0]), Euler."""
        components, device = self.components, self.prompts.embeds.device
        pixel_size = (
            shape.width * components.geometry.spatial_compression,
            shape.height * components.geometry.spatial_compression,
        )
        media = [resize_media(item, *pixel_size) for item in request.conditions]
        state = prepare_conditioned_latents(
            components,
            shape,
            media,
            self.spec.frame_rate,
            request.generator,
            device,
            initial_latents=initial,
            initial_sigma=float(sigmas[0]) if initial is not None else 1.0,
            options=self.options.conditioning,
        )
        velocity = _velocity_fn(components, state.coords, self.prompts)
        message = _message(str(name), request)
        tokens = denoise_conditioned(
            state,
            sigmas,
            velocity,
            self.ctx.with_generator(request.generator).with_progress(
                lambda progress: self.ctx.progress(dataclasses.replace(progress, message=message))
            ),
            self.options.conditioning,
        )
        return unpack(generated_tokens(tokens, state.num_extra_tokens), shape, components.geometry)

    def _upsample(self, latents: torch.Tensor, request: ClipRequest) -> torch.Tensor:
        self.ctx.raise_if_cancelled()
        self.ctx.report(Stage.UPSAMPLING, _message("upsampling latents 2x", request))
        upsampled = upsample_latents(self.components, latents)
        return adain_filter_latent(upsampled, latents, self.options.upsampled_adain_factor)


def upsample_latents(components: Components, latents: torch.Tensor) -> torch.Tensor:
    """Normalized latents -> normalized latents with each side doubled (the upsampler works denormalized)."""
    assert components.upsampler is not None
    geometry = components.geometry
    upsampled = components.upsampler.upsample(denormalize(latents, geometry))
    return normalize(upsampled.to(latents.device, torch.float32), geometry)


def decode(
    components: Components,
    latents: torch.Tensor,
    generator: torch.Generator,
    tone_map_compression_ratio: float,
    options: DistilledOptions,
) -> torch.Tensor:
    """Final normalized latents -> video [1, 3, F, H, W] in [-1, 1] (decode noise, tone map, decode)."""
    geometry = components.geometry
    decode_timestep = torch.zeros(latents.shape[0], device=latents.device, dtype=latents.dtype)
    if geometry.decode_timestep_conditioning:
        # As LTX: decode from slightly re-noised latents at a small timestep (the decoder was trained so).
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        latents = torch.lerp(latents, noise, options.decode_noise_scale)
        decode_timestep = torch.full_like(decode_timestep, options.decode_timestep)
    latents = tone_map_latents(latents, tone_map_compression_ratio)
    return components.vae_decoder.decode(denormalize(latents, geometry), decode_timestep)


def to_output_frames(video: torch.Tensor, size: FrameSize) -> np.ndarray:
    """Video [1, 3, F, H, W] in [-1, 1] -> uint8 [F, size.height, size.width, 3], resized bilinearly as LTX
    resizes the second pass's frames (pixel convention: contract/frames.py)."""
    num_frames = video.shape[2]
    frames = np.empty((num_frames, size.height, size.width, 3), dtype=np.uint8)
    for start in range(0, num_frames, _FRAMES_PER_CONVERSION):
        block = video[0, :, start : start + _FRAMES_PER_CONVERSION].permute(1, 0, 2, 3).float()
        if block.shape[-2:] != (size.height, size.width):
            block = F.interpolate(block, size=(size.height, size.width), mode="bilinear", align_corners=False)
        pixels = uint8_from_unit(block, consume=True)
        frames[start : start + len(pixels)] = pixels.permute(0, 2, 3, 1).cpu().numpy()
    return frames


def _velocity_fn(components: Components, coords: torch.Tensor, prompts: PromptEmbeddings) -> VelocityFn:
    def velocity(latents: torch.Tensor, timestep: torch.Tensor, _step: int) -> torch.Tensor:
        model_input = latents.to(prompts.embeds.dtype)
        return components.transformer.velocity(model_input, timestep, coords, prompts.embeds, prompts.mask)

    return velocity


def _message(what: str, request: ClipRequest) -> str:
    return f"{request.label}, {what}" if request.label else what
