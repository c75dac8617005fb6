"""Extending a video (`ltx-video-v097/extend`): keep its beginning, generate what follows.

The rule. Let N = `num_frames` (the service's output length, 121) and S = `video.start_frame_num`.
  * The input video is decoded at the output size (cover-cropped), resampled to `video.target_fps` when
    set and otherwise to the output frame rate, and limited to `video.max_num_frames` when set.
  * Kept: input frames 0 .. K-1, with K = min(S, input frames available, max_num_frames). They are the
    output's frames 0 .. K-1, copied as decoded (never re-generated).
  * New: output frames K .. N-1 (N - K frames) are generated. The output has exactly N frames.
  * Context: the last C kept frames (blurred and re-compressed at CRF 29 in the prepare stage, as upstream
    preprocesses every conditioning frame; the kept frames themselves are copied as decoded) condition
    the generation, C = the largest 8k + 1 that is at most
    min(K, EXTEND_CONTEXT_FRAMES) (25 frames, about one second). The model generates one clip whose first
    C frames are those input frames (a video condition at frame 0 with `video.strength`, see
    service/pipelines/conditioning.py) and whose next N - K frames become the new frames; the clip is the
    smallest legal length (8k + 1) >= C + N - K, and its tail beyond that is dropped. With K = 0 nothing is
    kept and the N frames are generated from the prompt alone.
Guidance, schedule and decoding are the dev model's (service/pipelines/multiconditioning.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from service.contract.frames import frames_to_generate, legal_frames_at_most, uint8_frames
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.specs import ExtendSpec
from service.pipelines.components import Components
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.long_video import output_frames
from service.pipelines.multiconditioning import (
    DEFAULT_DEV_OPTIONS,
    DevSamplingOptions,
    dev_clip,
    dev_frame_store,
    render_dev_clip,
)
from service.pipelines.seeding import seeded_generator

logger = logging.getLogger(__name__)

# Most input frames that condition the continuation: 3 latent frames, about one second at 24 fps.
EXTEND_CONTEXT_FRAMES = 25


class ExtensionPlan(NamedTuple):
    """How an extension is made; every count in pixel frames."""

    kept: int  # K: input frames copied to the start of the output
    context: int  # C: last kept frames that condition the clip (8k + 1, or 0)
    new: int  # N - K: generated frames appended after the kept ones
    clip: int  # frames the model generates: the smallest 8k + 1 >= C + new

    @property
    def output(self) -> int:
        return self.kept + self.new


def plan_extension(num_frames: int, kept: int, temporal_compression: int = 8) -> ExtensionPlan:
    """The plan for an N = `num_frames` output keeping `kept` input frames (the module docstring's rule)."""
    if not 0 <= kept < num_frames:
        raise ValueError(f"kept frames ({kept}) must be in [0, {num_frames})")
    context = legal_frames_at_most(min(kept, EXTEND_CONTEXT_FRAMES), temporal_compression) if kept else 0
    new = num_frames - kept
    clip = frames_to_generate(context + new, temporal_compression)
    return ExtensionPlan(kept=kept, context=context, new=new, clip=clip)


def generate_extension(
    components: Components,
    spec: ExtendSpec,
    kept_pixels: torch.Tensor,
    context: Sequence[ConditioningMedia],
    ctx: JobContext,
    options: DevSamplingOptions = DEFAULT_DEV_OPTIONS,
) -> GeneratedVideo:
    """`spec.num_frames` frames: `kept_pixels` ([3, K, H, W] in [-1, 1], at the output size) then new ones.

    `context` is the condition the new frames continue from: the plan's last C kept frames at frame 0 with
    `video.strength`, preprocessed as upstream preprocesses conditioning frames (blur, CRF 29), which
    the prepare stage does (service/inputs/media.py `extend_context`); empty when nothing is kept."""
    geometry = components.geometry
    plan = plan_extension(spec.num_frames, int(kept_pixels.shape[1]), geometry.temporal_compression)
    _check_context(context, plan)
    request = dev_clip(components, spec, plan.clip)
    generator = seeded_generator(spec.seed)
    logger.info("extend %dx%d: %s, %d steps", spec.width, spec.height, plan, spec.num_inference_steps)
    output = output_frames(ctx, spec.num_frames, request.size, False, dev_frame_store(request, options))
    output.write(0, uint8_frames(kept_pixels))

    def write_new(start: int, frames: np.ndarray) -> None:
        # Clip frames context.. are the new ones, placed after the kept frames (the output drops the rest).
        skip = max(0, plan.context - start)
        if skip < len(frames):
            output.write(plan.kept + start + skip - plan.context, frames[skip:])

    render_dev_clip(components, request, context, generator, options, ctx, write_new)
    return GeneratedVideo(
        frames=output.result(), frame_rate=float(spec.frame_rate), prompt=spec.prompt, seed=spec.seed
    )


def _check_context(context: Sequence[ConditioningMedia], plan: ExtensionPlan) -> None:
    counts = [item.num_frames for item in context]
    expected = [plan.context] if plan.context else []
    if counts != expected or any(item.start_frame != 0 for item in context):
        raise ValueError(
            f"extend's context must be {expected} frame(s) at frame 0 for {plan}, got {counts} "
            "(service.inputs.prepare_endpoint_inputs prepares it)"
        )
