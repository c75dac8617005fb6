"""The shapes the API lets a client cause: min/opt/max of every dynamic axis (TensorRT profiles).

`ApiRanges` covers 480p/720p frames at 16:9, 1:1 and 9:16, 9..257 frames for the dev models, and two
prompts per call (negative and positive, for classifier-free guidance). `ApiRanges.serving` widens the
ranges for the conditioned endpoints (keyframe tokens) and the distilled one (two-pass sizes).
Transformer tokens = (H/32)(W/32)((F-1)/8+1) with the model's compression factors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.contract.frames import pixel_frame_count
from service.contract.geometry import ModelGeometry
from service.contract.tensors import (
    BATCH,
    FRAMES,
    HEIGHT,
    LATENT_FRAMES,
    LATENT_HEIGHT,
    LATENT_WIDTH,
    TOKENS,
    WIDTH,
    AxisRange,
)
from service.domain.geometry import (
    DISTILLED_FIRST_PASS_DOWNSCALE,
    AspectRatio,
    FrameSize,
    Resolution,
    frame_size,
    multiscale_sizes,
    padded_to_latent_grid,
)

PROMPTS_PER_CALL = AxisRange(1, 2, 2)  # one prompt, or negative + positive with guidance
# Keyframe tokens of later-frame conditions: validation's MAX_IMAGE_CONDITIONS (10) images of one latent
# frame each and MAX_VIDEO_CONDITIONS (4) videos of conditioning.DEFAULT_PREFIX_LATENT_FRAMES (2) each.
CONDITIONING_KEYFRAME_LATENT_FRAMES = 10 * 1 + 4 * 2


def _api_frame_sizes() -> tuple[FrameSize, ...]:
    """The frames the model generates for the API's sizes: each padded up to the latent grid."""
    ratios = (AspectRatio.R16_9, AspectRatio.R1_1, AspectRatio.R9_16)
    return tuple(
        padded_to_latent_grid(frame_size(resolution, ratio)) for resolution in Resolution for ratio in ratios
    )


@dataclass(frozen=True)
class ApiRanges:
    """What clients may ask for; it bounds every shape a component sees (dev text-to-video models)."""

    frame_sizes: tuple[FrameSize, ...] = field(default_factory=_api_frame_sizes)
    default_size: FrameSize = field(
        default_factory=lambda: padded_to_latent_grid(frame_size(Resolution.P720, AspectRatio.R16_9))
    )
    min_frames: int = 9
    default_frames: int = 89  # the endpoint's default `number_of_frames`: what profiles optimize for
    max_frames: int = 257
    prompts: AxisRange = PROMPTS_PER_CALL
    # Latent frames of keyframe tokens the transformer may see on top of the clip (conditioned endpoints).
    keyframe_latent_frames: int = 0
    # The distilled endpoint's first-pass (2/3) and second-pass (2x first) sizes are in range too.
    multiscale: bool = False

    @classmethod
    def serving(cls, component_names: tuple[str, ...] | list[str]) -> ApiRanges:
        """The ranges of a repository with these components: the endpoints they serve set the shapes."""
        return cls(
            keyframe_latent_frames=CONDITIONING_KEYFRAME_LATENT_FRAMES
            if "vae_encoder" in component_names
            else 0,
            multiscale="latent_upsampler" in component_names,
        )

    def served_frame_sizes(self) -> tuple[FrameSize, ...]:
        if not self.multiscale:
            return self.frame_sizes
        passes = [multiscale_sizes(size, DISTILLED_FIRST_PASS_DOWNSCALE) for size in self.frame_sizes]
        return (*self.frame_sizes, *(p.first_pass for p in passes), *(p.second_pass for p in passes))

    def axis_ranges(self, geometry: ModelGeometry) -> dict[str, AxisRange]:
        space, time = geometry.spatial_compression, geometry.temporal_compression

        def latent(frames: int) -> int:
            return (frames - 1) // time + 1

        frames = AxisRange(latent(self.min_frames), latent(self.default_frames), latent(self.max_frames))
        sizes = self.served_frame_sizes()
        heights = [size.height // space for size in sizes]
        widths = [size.width // space for size in sizes]
        height = AxisRange(min(heights), self.default_size.height // space, max(heights))
        width = AxisRange(min(widths), self.default_size.width // space, max(widths))
        cells = [size.height // space * (size.width // space) for size in sizes]
        patch = geometry.patch_size**2 * geometry.patch_size_t
        tokens = AxisRange(
            min(cells) * frames.min // patch,
            height.opt * width.opt * frames.opt // patch,
            max(cells) * (frames.max + self.keyframe_latent_frames) // patch,
        )
        return {
            BATCH: self.prompts,
            TOKENS: tokens,
            LATENT_FRAMES: frames,
            LATENT_HEIGHT: height,
            LATENT_WIDTH: width,
            FRAMES: AxisRange(*(pixel_frame_count(f, time) for f in frames)),
            HEIGHT: AxisRange(*(h * space for h in height)),
            WIDTH: AxisRange(*(w * space for w in width)),
        }
