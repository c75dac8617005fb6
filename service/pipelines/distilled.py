"""`ltx-video-13b-distilled/multiconditioning`: LTX-Video 0.9.7 13B distilled, two passes, long videos.

One clip is LTX's multiscale pipeline (`LTXMultiScalePipeline` with configs/ltxv-13b-0.9.7-distilled.yaml)
over our components:

1. First pass at `multiscale_sizes(padded size, 0.6666666).first_pass` (1280x720, padded 1280x736 ->
   832x480): pure noise, conditions
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

Videos longer than one window (121 frames) run each pass in latent windows and are decoded once, in
temporal tiles (`long_video`, `latent_windows`: the reference long-video method); a video of at most 121
frames is one window, i.e. exactly the clip above. The output has exactly `num_frames` frames.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from service.contract.frames import frames_to_generate
from service.domain.errors import Cancelled
from service.domain.geometry import (
    DISTILLED_FIRST_PASS_DOWNSCALE,
    FrameSize,
    MultiscaleSizes,
    multiscale_sizes,
)
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress, Stage
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
from service.pipelines.latent_windows import DecodedFrames, decode_in_tiles
from service.pipelines.latents import LatentShape, denormalize, latent_shape, normalize, unpack
from service.pipelines.long_video import (
    LongVideoOptions,
    WindowRequest,
    frame_store_for,
    output_frames,
    sample_in_windows,
    window_generators,
    window_plan,
)
from service.pipelines.padding import crop_frames, generated_size, pad_media
from service.pipelines.schedules import DistilledTimesteps, distilled_timesteps
from service.pipelines.seeding import seeded_generator
from service.pipelines.tone_map import tone_map_latents

logger = logging.getLogger(__name__)

# configs/ltxv-13b-0.9.7-distilled.yaml: the decoder sees the latents at t = 0.05, with 2.5% fresh noise.
DISTILLED_DECODE_TIMESTEP = 0.05
DISTILLED_DECODE_NOISE_SCALE = 0.025
# LTXMultiScalePipeline normalizes the upsampled latents fully to the first pass's statistics.
UPSAMPLED_ADAIN_FACTOR = 1.0
# Frames converted to uint8 at a time: at 1664x896 each float frame is 18 MB, a whole clip gigabytes.
_FRAMES_PER_CONVERSION = 16
# Latent frames of context on each side of an upsampled tile of a long video (the upsampler's 3D
# convolutions see a few frames around each one).
_UPSAMPLE_CONTEXT = 4


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
    # Upstream downscales the frame padded up to the latent grid, and crops to the output at the end.
    generated = generated_size(FrameSize(spec.width, spec.height))
    sizes = multiscale_sizes(generated, DISTILLED_FIRST_PASS_DOWNSCALE)
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

    `conditions` are at output frames and any size (each pass resizes them), e.g. from service/inputs/media.py.
    """
    if not (spec.width and spec.height):
        raise ValueError("the spec's AUTO size must be resolved (specs.resolve_auto_size) before generating")
    if components.upsampler is None:
        raise ValueError("the distilled pipeline needs a latent upsampler component")
    ctx.on_progress(Progress(Stage.ENCODING_PROMPT, message="encoding the prompt"))
    with torch.inference_mode():
        embeds, mask = components.text_encoder.encode([spec.prompt])
        passes = DistilledPasses(components, spec, PromptEmbeddings(embeds, mask), options, ctx)
        frames = passes.render(conditions)
    return GeneratedVideo(
        frames=frames, frame_rate=float(spec.frame_rate), prompt=spec.prompt, seed=spec.seed
    )


class DistilledPasses:
    """The two-pass pipeline over a whole video: each pass in latent windows (long_video), one decode."""

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
        self.ctx = ctx
        self.on_progress = ctx.on_progress
        self.is_cancelled = ctx.is_cancelled
        self.clip = clip_geometry(components, spec, frames_to_generate(spec.num_frames))
        self.windows = window_plan(self.clip.first_pass.frames, options.long_video)
        self.generators = window_generators(spec.seed, self.windows)

    def render(self, conditions: Sequence[ConditioningMedia]) -> np.ndarray:
        clip, spec = self.clip, self.spec
        logger.info(
            "distilled %d frames in %d window(s): first pass %dx%d (%d steps), second pass %dx%d (%d steps)",
            spec.num_frames,
            len(self.windows),
            *clip.sizes.first_pass,
            len(clip.timesteps.first_pass),
            *clip.sizes.second_pass,
            len(clip.timesteps.second_pass),
        )
        first = self._pass(DenoisingPass.FIRST, clip.first_pass, clip.timesteps.first_pass, conditions)
        latents = self._upsample(first)
        del first
        second = clip.timesteps.second_pass
        latents = self._pass(DenoisingPass.SECOND, clip.second_pass, second, conditions, latents)
        if spec.enable_detail_pass:
            latents = self._pass(DenoisingPass.DETAIL, clip.second_pass, second, conditions, latents)
        return self._decode(latents)

    def _pass(
        self,
        name: DenoisingPass,
        shape: LatentShape,
        sigmas: Sequence[float],
        conditions: Sequence[ConditioningMedia],
        initial: torch.Tensor | None = None,
    ) -> torch.Tensor:
        def sample(request: WindowRequest) -> torch.Tensor:
            return self._denoise(name, shape._replace(frames=request.window.length), sigmas, request)

        return sample_in_windows(
            sample,
            self.windows,
            self.generators,
            conditions,
            self.spec.temporal_adain_factor,
            self.is_cancelled,
            self.options.long_video,
            initial,
            self.components.geometry.temporal_compression,
        )

    def _denoise(
        self, name: DenoisingPass, shape: LatentShape, sigmas: Sequence[float], request: WindowRequest
    ) -> torch.Tensor:
        """One window of one pass: conditions at this pass's size, noise (or the initial latents re-noised
        to sigmas[0]), the tail tokens, Euler."""
        components, device = self.components, self.prompts.embeds.device
        pixel_size = (
            shape.width * components.geometry.spatial_compression,
            shape.height * components.geometry.spatial_compression,
        )
        output = FrameSize(self.spec.width, self.spec.height)
        media = [resize_media(pad_media(item, output), *pixel_size) for item in request.conditions]
        state = prepare_conditioned_latents(
            components,
            shape,
            media,
            self.spec.frame_rate,
            request.generator,
            device,
            initial_latents=request.initial,
            initial_sigma=float(sigmas[0]) if request.initial is not None else 1.0,
            options=self.options.conditioning,
            latent_conditions=() if request.tail is None else (request.tail,),
        )
        velocity = _velocity_fn(components, state.coords, self.prompts)
        message = _message(str(name), request.label)
        tokens = denoise_conditioned(
            state,
            sigmas,
            velocity,
            request.generator,
            lambda progress: self.on_progress(dataclasses.replace(progress, message=message)),
            self.is_cancelled,
            self.options.conditioning,
        )
        return unpack(generated_tokens(tokens, state.num_extra_tokens), shape, components.geometry)

    def _upsample(self, latents: torch.Tensor) -> torch.Tensor:
        if self.is_cancelled():
            raise Cancelled()
        self.on_progress(Progress(Stage.UPSAMPLING, message="upsampling latents 2x"))
        tile = self.options.long_video.decode_tile_latent_frames
        upsampled = upsample_latents(self.components, latents, tile)
        return adain_filter_latent(upsampled, latents, self.options.upsampled_adain_factor)

    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        if self.is_cancelled():
            raise Cancelled()
        self.on_progress(Progress(Stage.DECODING, message="decoding latents to frames"))
        spec, size = self.spec, FrameSize(self.spec.width, self.spec.height)
        store = frame_store_for(self.options.long_video, len(self.windows))
        sink = output_frames(self.ctx, spec.num_frames, size, spec.reverse_video, store)
        # The decode noise's own stream, as upstream (`torch.randn_like` on the global RNG seeded with the
        # seed), not the sampling generator.
        noise = seeded_generator(spec.seed)
        for chunk in decode(self.components, latents, noise, spec.tone_map_compression_ratio, self.options):
            if self.is_cancelled():  # between decode tiles: a long video's decode takes minutes
                raise Cancelled()
            if chunk.start < spec.num_frames:
                sink.write(
                    chunk.start,
                    crop_frames(to_output_frames(chunk.video[None], self.clip.sizes.output), size),
                )
            del chunk  # a tile's float frames: dropped before the next tile decodes
        return sink.result()


def upsample_latents(components: Components, latents: torch.Tensor, tile: int | None = None) -> torch.Tensor:
    """Normalized latents -> normalized latents with each side doubled (the upsampler works denormalized).

    With `tile`, a long video is upsampled `tile` latent frames at a time, each with
    `_UPSAMPLE_CONTEXT` frames of context on both sides (cut off after), so memory is bounded by a tile;
    a video of at most `tile` frames is upsampled whole, exactly as before."""
    assert components.upsampler is not None
    geometry = components.geometry
    frames = latents.shape[2]
    if tile is None or frames <= tile:
        upsampled = components.upsampler.upsample(denormalize(latents, geometry))
        return normalize(upsampled.to(latents.device, torch.float32), geometry)
    parts = []
    for start in range(0, frames, tile):
        end = min(start + tile, frames)
        lo, hi = max(0, start - _UPSAMPLE_CONTEXT), min(frames, end + _UPSAMPLE_CONTEXT)
        part = components.upsampler.upsample(denormalize(latents[:, :, lo:hi], geometry))
        parts.append(normalize(part.to(latents.device, torch.float32), geometry)[:, :, start - lo : end - lo])
    return torch.cat(parts, dim=2)


def decode(
    components: Components,
    latents: torch.Tensor,
    generator: torch.Generator,
    tone_map_compression_ratio: float,
    options: DistilledOptions,
) -> Iterator[DecodedFrames]:
    """Final normalized latents -> video frames in [-1, 1], tile by tile (decode noise, tone map, decode)."""
    geometry = components.geometry
    decode_timestep = torch.zeros(latents.shape[0], device=latents.device, dtype=latents.dtype)
    if geometry.decode_timestep_conditioning:
        # As LTX: decode from slightly re-noised latents at a small timestep (the decoder was trained so).
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        latents = torch.lerp(latents, noise, options.decode_noise_scale)
        decode_timestep = torch.full_like(decode_timestep, options.decode_timestep)
    latents = denormalize(tone_map_latents(latents, tone_map_compression_ratio), geometry)
    long_video = options.long_video
    return decode_in_tiles(
        components.vae_decoder,
        latents,
        decode_timestep,
        long_video.decode_tile_latent_frames,
        long_video.decode_overlap_latent_frames,
        geometry.temporal_compression,
    )


def to_output_frames(video: torch.Tensor, size: FrameSize) -> np.ndarray:
    """Video [1, 3, F, H, W] in [-1, 1] -> uint8 [F, size.height, size.width, 3]: clamped, resized
    bilinearly as LTX resizes the second pass's frames, and truncated as upstream inference.py does."""
    num_frames = video.shape[2]
    frames = np.empty((num_frames, size.height, size.width, 3), dtype=np.uint8)
    for start in range(0, num_frames, _FRAMES_PER_CONVERSION):
        block = video[0, :, start : start + _FRAMES_PER_CONVERSION].permute(1, 0, 2, 3).float()
        block = block.clamp_(-1, 1)  # clamp, then resize, as LTXMultiScalePipeline does
        if block.shape[-2:] != (size.height, size.width):
            block = F.interpolate(block, size=(size.height, size.width), mode="bilinear", align_corners=False)
        pixels = block.div_(2).add_(0.5).clamp_(0, 1).mul_(255).floor_().to(torch.uint8)
        frames[start : start + len(pixels)] = pixels.permute(0, 2, 3, 1).cpu().numpy()
    return frames


def _velocity_fn(components: Components, coords: torch.Tensor, prompts: PromptEmbeddings) -> VelocityFn:
    def velocity(latents: torch.Tensor, timestep: torch.Tensor, _step: int) -> torch.Tensor:
        model_input = latents.to(prompts.embeds.dtype)
        return components.transformer.velocity(model_input, timestep, coords, prompts.embeds, prompts.mask)

    return velocity


def _message(what: str, label: str) -> str:
    return f"{label}, {what}" if label else what
