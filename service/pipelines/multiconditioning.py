"""The LTX-Video 0.9.7 13B dev endpoints: text + images + videos at frame positions
(`ltx-video-lora/multiconditioning`) and text to video (`ltx-video-lora`, the same recipe with no conditions).

One pass of the dev model with its official guidance (configs/ltxv-13b-0.9.7-dev.yaml, first pass):
the sigmas are LTX's linear-quadratic schedule of `num_inference_steps` steps (the sampler the dev
checkpoint names, and LTXConditionPipeline's default), and each step takes CFG (negative prompt, CFG-star),
STG and rescaling from `DEV_13B_097_FIRST_PASS.guidance` at its sigma (service/pipelines/schedules.py).
All steps run: the official config's `skip_final_steps` only makes room for its second, upsampled pass,
which this endpoint does not have.

STG skip blocks. The official indices (11, 25, 35, 39; 22, 35, 39; 28) are blocks of the 48-block 13B
transformer. A transformer with fewer blocks (the tiny preset has one) takes each index modulo its block
count, so every STG step still perturbs a block; for the 13B model the mapping is the identity. A
transformer binding without STG support (not a `PerturbableTransformer`) runs CFG only, and the job log
says so; the torch and the Triton bindings both support it.

Conditioning (service/pipelines/conditioning.py): the media arrive decoded at the output size
(service/inputs/media.py), are trimmed to legal lengths and blended in or appended as keyframe
tokens; the keyframe tokens are dropped before decoding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from service.contract.frames import frames_to_generate
from service.domain.geometry import FrameSize
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import CancelCheck, Progress, ProgressCallback, Stage
from service.domain.specs import ExtendSpec, MulticonditioningSpec, TextToVideoSpec
from service.pipelines.components import Components, PerturbableTransformer, Perturbation
from service.pipelines.conditioning import (
    ConditionedLatents,
    ConditioningMedia,
    ConditioningOptions,
    denoise_conditioned,
    generated_tokens,
    prepare_conditioned_latents,
)
from service.pipelines.guidance import (
    GuidancePass,
    GuidanceSettings,
    apply_guidance,
    perturbed_rows,
    split_passes,
)
from service.pipelines.latents import LatentShape, latent_shape
from service.pipelines.long_video import FrameStore, output_frames
from service.pipelines.padding import crop_frames, generated_size, pad_media
from service.pipelines.schedules import DEV_13B_097_FIRST_PASS, GuidanceSchedule, linear_quadratic_sigmas
from service.pipelines.seeding import seeded_generator
from service.pipelines.text_to_video import (
    DecodeOptions,
    PromptEmbeddings,
    decode_chunks,
    to_uint8_frames,
)

# Frames [n, H, W, 3] uint8 of a clip, from clip frame `start` on (the clip's own frame numbers)
ClipFrameWriter = Callable[[int, np.ndarray], None]

logger = logging.getLogger(__name__)

NO_STG_MESSAGE = "this transformer binding cannot run STG; sampling with CFG only"


@dataclass(frozen=True)
class DevSamplingOptions:
    """Model-level knobs of the dev endpoints; the defaults are the official 0.9.7 dev ones."""

    guidance: GuidanceSchedule = DEV_13B_097_FIRST_PASS.guidance
    conditioning: ConditioningOptions = field(default_factory=ConditioningOptions)
    # Decode timestep and noise of ltxv-13b-0.9.7-dev.yaml.
    decoding: DecodeOptions = field(default_factory=DecodeOptions)


DEFAULT_DEV_OPTIONS = DevSamplingOptions()  # frozen: safe to share as a default


def map_skip_blocks(skip_blocks: Sequence[int], num_blocks: int) -> tuple[int, ...]:
    """Official skip-block indices on a transformer of `num_blocks` blocks: each modulo the count."""
    return tuple(sorted({index % num_blocks for index in skip_blocks}))


class GuidedVelocity:
    """The `VelocityFn` of the dev model: per step, CFG/STG settings from the schedule at its sigma.

    All passes a step needs (unconditional, conditional, perturbed) run as one batch, stacked in
    `GuidancePass` order, as LTX-Video batches them. `calls` counts transformer calls and `perturbed_steps`
    the steps that ran a perturbed pass (for logs and tests).
    """

    def __init__(
        self,
        components: Components,
        prompts: PromptEmbeddings,
        coords: torch.Tensor,
        settings_per_step: Sequence[GuidanceSettings],
        on_progress: ProgressCallback,
    ) -> None:
        if prompts.embeds.shape[0] != 2:
            raise ValueError("guided sampling needs [negative, positive] prompt embeddings")
        self._transformer = components.transformer
        self._prompts = prompts
        self._coords = coords
        self._settings = list(settings_per_step)
        if not isinstance(self._transformer, PerturbableTransformer):
            if any(s.uses_stg for s in self._settings):
                logger.warning(NO_STG_MESSAGE)
                on_progress(Progress(Stage.DENOISING, message=NO_STG_MESSAGE))
            self._settings = [replace(s, stg_scale=0.0) for s in self._settings]
        self.calls = 0
        self.perturbed_steps: list[int] = []

    def __call__(self, latents: torch.Tensor, timesteps: torch.Tensor, step: int) -> torch.Tensor:
        settings = self._settings[step]
        passes = settings.passes
        count = len(passes)
        rows = [0 if p is GuidancePass.UNCONDITIONAL else 1 for p in passes]  # negative, positive prompt
        embeds, mask = self._prompts.embeds[rows], self._prompts.mask[rows]
        dtype = embeds.dtype
        perturbation = None
        if settings.uses_stg:
            transformer = self._transformer
            assert isinstance(transformer, PerturbableTransformer)  # ensured by __init__
            skip = map_skip_blocks(settings.skip_blocks, transformer.num_blocks)
            perturbation = Perturbation(skip_blocks=skip, rows=perturbed_rows(passes, 1))
            self.perturbed_steps.append(step)
        velocity = self._velocity(
            latents.repeat(count, 1, 1).to(dtype),
            timesteps.repeat(count, 1),
            self._coords.repeat(count, 1, 1),
            embeds,
            mask,
            perturbation,
        )
        self.calls += 1
        return apply_guidance(split_passes(velocity.float(), passes), settings)

    def _velocity(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        coords: torch.Tensor,
        embeds: torch.Tensor,
        mask: torch.Tensor,
        perturbation: Perturbation | None,
    ) -> torch.Tensor:
        if perturbation is None:
            return self._transformer.velocity(latents, timesteps, coords, embeds, mask)
        transformer = self._transformer
        assert isinstance(transformer, PerturbableTransformer)
        return transformer.velocity(latents, timesteps, coords, embeds, mask, perturbation)


def encode_guided_prompts(components: Components, prompt: str, negative_prompt: str) -> PromptEmbeddings:
    """[negative, positive] embeddings: every dev step may need the unconditional pass."""
    embeds, mask = components.text_encoder.encode([negative_prompt, prompt])
    return PromptEmbeddings(embeds, mask)


def sample_dev(
    components: Components,
    state: ConditionedLatents,
    prompts: PromptEmbeddings,
    num_inference_steps: int,
    generator: torch.Generator,
    options: DevSamplingOptions,
    on_progress: ProgressCallback,
    is_cancelled: CancelCheck,
) -> tuple[torch.Tensor, GuidedVelocity]:
    """Conditioned, guided sampling of `state`; returns the generated grid's tokens and the guidance."""
    sigmas = linear_quadratic_sigmas(num_inference_steps)
    velocity = GuidedVelocity(
        components, prompts, state.coords, options.guidance.settings_per_step(sigmas), on_progress
    )
    tokens = denoise_conditioned(
        state, sigmas, velocity, generator, on_progress, is_cancelled, options.conditioning
    )
    logger.info("STG ran on %d of %d steps", len(velocity.perturbed_steps), len(sigmas))
    return generated_tokens(tokens, state.num_extra_tokens), velocity


@dataclass(frozen=True)
class DevClip:
    """One clip for the dev model to render: what the prompt asks, at what latent shape and rate."""

    prompt: str
    negative_prompt: str
    size: FrameSize  # the output frame; `shape` is the generated one, padded up to the latent grid
    shape: LatentShape
    frame_rate: float
    num_inference_steps: int
    seed: int  # the request's: the decode noise is drawn from a stream of its own seeded with it


def render_dev_clip(
    components: Components,
    clip: DevClip,
    media: Sequence[ConditioningMedia],
    generator: torch.Generator,
    options: DevSamplingOptions,
    ctx: JobContext,
    write: ClipFrameWriter,
) -> None:
    """Prompt encoding, conditioning, guided sampling and decoding of one clip. The decode runs in
    temporal tiles (`options.decoding`): each finished chunk of the clip's generated frames goes to
    `write` as uint8 [n, H, W, 3] cropped to `clip.size` (callers trim), so only one tile's pixels are
    in memory at a time; `media` are at that size. Shared by text to video, multiconditioning and extend."""
    media = [pad_media(item, clip.size) for item in media]
    on_progress, is_cancelled = ctx.on_progress, ctx.is_cancelled
    with torch.inference_mode():
        on_progress(Progress(Stage.ENCODING_PROMPT, message="encoding the prompt"))
        prompts = encode_guided_prompts(components, clip.prompt, clip.negative_prompt)
        if media:
            on_progress(Progress(Stage.PREPARING_CONDITIONS, message=f"encoding {len(media)} condition(s)"))
        device = prompts.embeds.device
        state = prepare_conditioned_latents(
            components, clip.shape, media, clip.frame_rate, generator, device, options=options.conditioning
        )
        tokens, _ = sample_dev(
            components,
            state,
            prompts,
            clip.num_inference_steps,
            generator,
            options,
            on_progress,
            is_cancelled,
        )
        tiles = options.decoding.tiles(clip.shape.frames)
        on_progress(Progress(Stage.DECODING, message=f"decoding latents to frames ({tiles} tile(s))"))
        # Upstream draws the decode noise with `torch.randn_like` from the global RNG, which
        # `seed_everething(seed)` seeded, not from the sampling generator: a fresh stream of the seed.
        decode_noise = seeded_generator(clip.seed)
        for chunk in decode_chunks(components, tokens, clip.shape, decode_noise, options.decoding):
            frames = to_uint8_frames(chunk.video[None])
            write(chunk.start, np.ascontiguousarray(crop_frames(frames, clip.size)))
            del chunk, frames  # a tile's frames: dropped before the next tile decodes


def dev_frame_store(clip: DevClip, options: DevSamplingOptions) -> FrameStore:
    """A clip decoded in one tile keeps its frames in memory, as before; a longer one in a temporary file."""
    return FrameStore.TEMP_FILE if options.decoding.tiles(clip.shape.frames) > 1 else FrameStore.MEMORY


def dev_clip(
    components: Components, spec: MulticonditioningSpec | TextToVideoSpec | ExtendSpec, num_frames: int
) -> DevClip:
    """The clip for `spec`: `num_frames` (8k + 1) frames at its size padded up to the latent grid."""
    size = FrameSize(spec.width, spec.height)
    generated = generated_size(size)
    shape = latent_shape(components.geometry, 1, num_frames, generated.height, generated.width)
    return DevClip(
        spec.prompt, spec.negative_prompt, size, shape, spec.frame_rate, spec.num_inference_steps, spec.seed
    )


def generate_multiconditioning(
    components: Components,
    spec: MulticonditioningSpec,
    media: Sequence[ConditioningMedia],
    ctx: JobContext,
    options: DevSamplingOptions = DEFAULT_DEV_OPTIONS,
) -> GeneratedVideo:
    """Exactly `spec.num_frames` frames of `spec.width` x `spec.height`, conditioned on `media`.

    `spec`'s size must be resolved (service/inputs/media.py does it for AUTO) and `media` decoded at that size.
    """
    if not spec.width or not spec.height:
        raise ValueError("the spec's AUTO size must be resolved before generation")
    num_frames = frames_to_generate(spec.num_frames, components.geometry.temporal_compression)
    clip = dev_clip(components, spec, num_frames)
    generator = seeded_generator(spec.seed)
    logger.info(
        "multiconditioning %dx%d, %d frames (%d generated), %d steps, %d images, %d videos",
        spec.width,
        spec.height,
        spec.num_frames,
        num_frames,
        spec.num_inference_steps,
        len(spec.images),
        len(spec.videos),
    )
    return _render_video(components, clip, media, generator, spec, options, ctx)


def generate_text_to_video(
    components: Components,
    spec: TextToVideoSpec,
    ctx: JobContext,
    options: DevSamplingOptions = DEFAULT_DEV_OPTIONS,
) -> GeneratedVideo:
    """`ltx-video-lora`: the 13B 0.9.7-dev recipe with no conditions (ltxv-13b-0.9.7-dev.yaml first pass:
    the linear-quadratic schedule, the 7-phase CFG/STG/rescale/skip-block schedule, CFG-star), exactly
    `spec.num_frames` frames of `spec.width` x `spec.height`. Same spec, same frames."""
    num_frames = frames_to_generate(spec.num_frames, components.geometry.temporal_compression)
    clip = dev_clip(components, spec, num_frames)
    generator = seeded_generator(spec.seed)
    logger.info(
        "text-to-video %dx%d, %d frames (%d generated), %d steps, %d tokens",
        spec.width,
        spec.height,
        spec.num_frames,
        num_frames,
        spec.num_inference_steps,
        clip.shape.num_tokens,
    )
    return _render_video(components, clip, (), generator, spec, options, ctx)


def _render_video(
    components: Components,
    clip: DevClip,
    media: Sequence[ConditioningMedia],
    generator: torch.Generator,
    spec: MulticonditioningSpec | TextToVideoSpec,
    options: DevSamplingOptions,
    ctx: JobContext,
) -> GeneratedVideo:
    """The clip's first `spec.num_frames` frames (reversed if asked), written as they are decoded."""
    store = dev_frame_store(clip, options)
    output = output_frames(ctx, spec.num_frames, clip.size, spec.reverse_video, store)
    render_dev_clip(components, clip, media, generator, options, ctx, output.write)
    return GeneratedVideo(
        frames=output.result(), frame_rate=float(spec.frame_rate), prompt=spec.prompt, seed=spec.seed
    )
