"""Conditioning on images and videos at frame positions, and the denoising loop that honours it.

The mechanism is LTX-Video's (diffusers' `LTXConditionPipeline.prepare_latents` and its loop; the original
`ltx_video/pipelines/pipeline_ltx_video.py`), re-expressed over our component Protocols:

* Each `ConditioningMedia` (an image is a 1-frame video) is encoded by the VAE encoder and normalized.
* A condition at output frame 0 REPLACES the first latent frames of the noise, blended by strength:
  `lerp(noise, condition, strength)`, and those tokens get conditioning strength `strength`.
* A condition at a later frame is APPENDED as extra "keyframe" tokens in front of the generated grid,
  `lerp(fresh noise, condition, strength)`, with rope coordinates at its own frame position (time = its
  start frame, then +8 per latent frame as for the main grid). A video condition at a later frame keeps
  only its first `num_prefix_latent_frames` (2) latent frames as keyframe tokens; its later latent frames
  are blended into the grid at latent frame `start_frame // 8 + 2` onward (diffusers' rule; the floor means
  a video start frame that is not a multiple of 8 lands on the latent frame that holds it).
* Per token, the transformer sees the timestep `min(sigma, 1 - strength)`, and a token is updated only once
  the global sigma falls below `1 - strength`: strength 1 tokens never change, strength 0 tokens are
  ordinary noise, strength s tokens wait at their blended value until sigma < 1 - s.
* While sampling, hard (strength 1) tokens are re-noised to `condition + image_cond_noise_scale * noise *
  sigma^2` before each step (LTX's default 0.15; helps motion continuity from a single frame). As
  upstream, that noise is drawn every step of a conditioned run, for all tokens, even when no token has
  strength 1 (it then changes nothing but keeps the seed's random stream upstream's).
* After sampling the keyframe tokens are dropped (`generated_tokens`); only the grid is decoded.

Video conditions are trimmed to a legal length (8k + 1 frames) that fits between their start frame and the
end of the generated clip (`legal_condition_length`, LTXConditionPipeline.trim_conditioning_sequence).

Sampling is flow-matching Euler over an explicit sigma list (`latents + (next - sigma) * velocity`, the
step of diffusers' FlowMatchEulerDiscreteScheduler and LTX's RectifiedFlowScheduler), so any schedule can be
run: the dev model's linear-quadratic one, the distilled model's fixed timesteps, a second pass that
starts part-way. Guidance is the caller's: it passes a `VelocityFn`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXConditionPipeline
from diffusers.utils.torch_utils import randn_tensor

from service.contract.frames import legal_frames_at_most, uint8_from_unit, unit_from_uint8
from service.domain.errors import Cancelled
from service.domain.progress import CancelCheck, Progress, ProgressCallback, Stage
from service.pipelines.components import Components, ModelGeometry, VaeEncoder
from service.pipelines.latents import LatentShape, initial_noise, normalize, pack, video_coords

logger = logging.getLogger(__name__)

# LTX-Video's (and diffusers') default for re-noising hard-conditioned tokens each step.
DEFAULT_IMAGE_COND_NOISE_SCALE = 0.15
# Latent frames of a later-frame video condition kept as keyframe tokens (LTX's `num_prefix_latent_frames`).
DEFAULT_PREFIX_LATENT_FRAMES = 2
# Tolerance of LTX's "sigma below 1 - strength" and "strength is 1" comparisons.
_EPS = 1e-6


@dataclass(frozen=True, eq=False)
class ConditioningMedia:
    """Pixels that condition the output from `start_frame` on. An image is a 1-frame video."""

    # [1, 3, F, H, W] at the size of the pass that uses it: float in [-1, 1], or uint8 0-255 (videos: a
    # quarter of the memory; `unit_pixels` converts one item at a time, when the VAE encodes it)
    pixels: torch.Tensor
    start_frame: int  # output frame of the first pixel frame
    strength: float  # 0: no conditioning, 1: kept as given

    @property
    def num_frames(self) -> int:
        return int(self.pixels.shape[2])


class LatentCondition(NamedTuple):
    """Normalized latents [1, C, k, h, w] added as extra tokens at the clip's latent frames 0..k-1 (a long
    video's window continuing the previous windows' tail, service/pipelines/long_video.py)."""

    latents: torch.Tensor
    strength: float


@dataclass(frozen=True)
class ConditioningOptions:
    image_cond_noise_scale: float = DEFAULT_IMAGE_COND_NOISE_SCALE
    num_prefix_latent_frames: int = DEFAULT_PREFIX_LATENT_FRAMES


class ConditionedLatents(NamedTuple):
    """Everything the loop needs: keyframe tokens first, then the generated grid (`shape`)."""

    tokens: torch.Tensor  # [1, E + N, C] packed, normalized latents, blended with noise
    coords: torch.Tensor  # [1, 3, E + N] rope coordinates (pixels; time in seconds)
    strength: torch.Tensor  # [1, E + N] conditioning strength per token (0 = free)
    num_extra_tokens: int  # E, the keyframe tokens to drop after sampling
    shape: LatentShape  # the generated grid, N = shape.num_tokens
    # Whether any condition (media or latents) was given, even at strength 0: upstream then draws the
    # hard tokens' re-noise every step (its `conditioning_mask is not None`), whether or not it applies.
    conditioned: bool = False


# (latents [1, E + N, C], per-token model timestep [1, E + N], step index) -> guided velocity [1, E + N, C]
VelocityFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def legal_condition_length(
    start_frame: int, available_frames: int, target_num_frames: int, temporal_compression: int
) -> int:
    """Frames of a condition that can be used: at most up to the clip's end, rounded down to 8k + 1."""
    usable = min(available_frames, target_num_frames - start_frame)
    if usable < 1:
        raise ValueError(f"a condition at frame {start_frame} is outside a {target_num_frames}-frame clip")
    return legal_frames_at_most(usable, temporal_compression)


def fit_to_clip(
    media: ConditioningMedia, target_num_frames: int, geometry: ModelGeometry
) -> ConditioningMedia:
    """`media` trimmed to `legal_condition_length` for a clip of `target_num_frames` (8k + 1) frames."""
    keep = legal_condition_length(
        media.start_frame, media.num_frames, target_num_frames, geometry.temporal_compression
    )
    if keep == media.num_frames:
        return media
    return replace(media, pixels=media.pixels[:, :, :keep])


def unit_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels as float in [-1, 1], whether stored as float or as uint8 0-255 (conditioning videos)."""
    if pixels.dtype.is_floating_point:
        return pixels
    return unit_from_uint8(pixels.to(torch.float32))


_RESIZE_CHUNK_FRAMES = 16  # frames resized at once: bounds the float copy of a uint8 video


def resize_media(media: ConditioningMedia, width: int, height: int) -> ConditioningMedia:
    """`media` resized to `width` x `height` for one pass (e.g. the first pass of the multiscale pipeline),
    in the dtype it came in (uint8 videos a few frames at a time, so no float copy of the whole video).

    Upstream's per-pass resize (`LTXVideoPipeline.resize_tensor`): plain bilinear, `align_corners=False`,
    no antialiasing, per pass. Its source is ours, not upstream's: the prepared frames at the output size
    (cover-cropped and resized once at decode, then blurred and re-compressed), where upstream resizes
    the native-resolution crop each pass. Kept on purpose, because the native source is worse for users:
    plain bilinear from a source several times larger than the pass aliases (it reads 2x2 of each
    source block), a native-resolution conditioning video would be held from the prepare stage to the
    end of the job (a 4K clip is 9x the bytes of 720p, bounded by `media.max_decoded_bytes` at the output
    size), and upstream's blur at native resolution blurs a large input less than a small one.
    bench/conditioning_resize.py measures both routes against an antialiased resize of the original.
    """
    if media.pixels.shape[-2:] == (height, width):
        return media
    batch, channels, frames, _, _ = media.pixels.shape
    flat = media.pixels.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, *media.pixels.shape[-2:])
    chunks = []
    for start in range(0, flat.shape[0], _RESIZE_CHUNK_FRAMES):
        part = unit_pixels(flat[start : start + _RESIZE_CHUNK_FRAMES]).float()
        resized = F.interpolate(part, size=(height, width), mode="bilinear", align_corners=False)
        floating = media.pixels.dtype.is_floating_point
        chunks.append(resized.to(media.pixels.dtype) if floating else uint8_from_unit(resized))
    pixels = torch.cat(chunks).reshape(batch, frames, channels, height, width).permute(0, 2, 1, 3, 4)
    return replace(media, pixels=pixels)


# Conditioning videos longer than ENCODE_TILE_FRAMES + 1 frames are encoded in temporal tiles: the VAE
# encoder's activations at the output size are tens of MB per frame (a whole 161-frame 720p video took
# ~9 GB on the tiny preset), so a long conditioning video would cost more than the whole generation.
ENCODE_TILE_FRAMES = 32  # a tile is 33 frames; shorter videos are encoded whole, exactly as before
ENCODE_TILE_STRIDE = 24  # tiles share 8 frames: one latent frame, blended linearly (as diffusers)


def encode_media(components: Components, pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pixels [1, 3, F, H, W] (float in [-1, 1], or uint8) -> normalized latents [1, C, f, h, w] (float32
    on `device`), converted to float a tile at a time."""
    encoder = components.vae_encoder
    if encoder is None:
        raise ValueError("conditioning needs a VAE encoder component")
    if pixels.shape[2] <= ENCODE_TILE_FRAMES + 1:
        latents = encoder.encode(unit_pixels(pixels)).to(device, torch.float32)
    else:
        with torch.inference_mode():  # the blend writes into the encoder's (inference) outputs
            latents = _encode_in_temporal_tiles(
                encoder, pixels, components.geometry.temporal_compression, device
            )
    return normalize(latents, components.geometry).to(device, torch.float32)


def _encode_in_temporal_tiles(
    encoder: VaeEncoder, pixels: torch.Tensor, temporal_compression: int, device: torch.device
) -> torch.Tensor:
    """diffusers' `AutoencoderKLLTXVideo._temporal_tiled_encode` with tiles of ENCODE_TILE_FRAMES + 1
    frames every ENCODE_TILE_STRIDE, done here on the `VaeEncoder` component so that the Triton binding
    tiles the same way: each tile after the first drops its first latent frame (the causal encoder's
    "first frame") and crossfades its first `blend` latent frames into the previous tile's last ones."""
    frames = pixels.shape[2]
    latent_frames = (frames - 1) // temporal_compression + 1
    tile_latents = ENCODE_TILE_FRAMES // temporal_compression
    stride_latents = ENCODE_TILE_STRIDE // temporal_compression
    blend = tile_latents - stride_latents
    parts: list[torch.Tensor] = []
    previous: torch.Tensor | None = None
    for start in range(0, frames, ENCODE_TILE_STRIDE):
        # One expression: this tile's float copy is freed before the next tile's is made.
        latents = encoder.encode(unit_pixels(pixels[:, :, start : start + ENCODE_TILE_FRAMES + 1]))
        latents = latents.to(device, torch.float32)
        if previous is None:
            parts.append(latents[:, :, : stride_latents + 1])
        else:
            latents = latents[:, :, 1:]
            shared = min(blend, previous.shape[2], latents.shape[2])
            for x in range(shared):  # diffusers' blend_t, term for term
                latents[:, :, x] = previous[:, :, x - shared] * (1 - x / shared) + latents[:, :, x] * (
                    x / shared
                )
            parts.append(latents[:, :, :stride_latents])
        previous = latents
    return torch.cat(parts, dim=2)[:, :, :latent_frames]


def prepare_conditioned_latents(
    components: Components,
    shape: LatentShape,
    media: Sequence[ConditioningMedia],
    frame_rate: float,
    generator: torch.Generator,
    device: torch.device,
    initial_latents: torch.Tensor | None = None,
    initial_sigma: float = 1.0,
    options: ConditioningOptions = ConditioningOptions(),
    latent_conditions: Sequence[LatentCondition] = (),
) -> ConditionedLatents:
    """Noise (or `initial_latents` noised to `initial_sigma`) with `media` blended in or appended.

    The noise of the grid is drawn first, in upstream's layout (`initial_noise`), exactly as the
    unconditioned pipeline draws it, so a run without conditions (or with a strength 0 condition at frame
    0) starts from the same latents; then each condition's keyframe noise, in order, as upstream does.
    With `latent_conditions` (a long video's later window) the grid's and their noise are one draw, as
    the reference long-video method draws them (`_starting_noise`).
    `initial_latents` ([1, C, f, h, w], normalized) is for passes that refine given latents.
    """
    geometry = components.geometry
    noise, condition_noise = _starting_noise(shape, latent_conditions, generator, device)
    grid = noise
    if initial_latents is not None:
        grid = initial_sigma * noise + (1 - initial_sigma) * initial_latents.to(device, torch.float32)
    frame_strength = torch.zeros(shape.frames, device=device)
    extra: list[_Keyframe] = []
    pixel_frames = (shape.frames - 1) * geometry.temporal_compression + 1
    for item in media:
        item = fit_to_clip(item, pixel_frames, geometry)
        latents = encode_media(components, item.pixels, device)
        keyframe = _place(grid, frame_strength, latents, item, geometry, options)
        if keyframe is not None:
            extra.append(
                _keyframe_tokens(
                    keyframe, item.start_frame, item.strength, shape, geometry, generator, frame_rate
                )
            )
    for condition, tail_noise in zip(latent_conditions, condition_noise, strict=True):
        latents = condition.latents.to(device, torch.float32)
        extra.append(
            _keyframe_tokens(
                latents, 0, condition.strength, shape, geometry, generator, frame_rate, tail_noise
            )
        )
    coords = video_coords(shape, geometry, frame_rate, device)
    strength = frame_strength.repeat_interleave(shape.height * shape.width)[None]
    tokens = pack(grid, geometry)
    return ConditionedLatents(
        tokens=torch.cat([*(k.tokens for k in extra), tokens], dim=1),
        coords=torch.cat([*(k.coords for k in extra), coords], dim=2),
        strength=torch.cat([*(k.strength for k in extra), strength], dim=1),
        num_extra_tokens=sum(k.tokens.shape[1] for k in extra),
        shape=shape,
        conditioned=bool(media) or bool(latent_conditions),
    )


class _Keyframe(NamedTuple):
    tokens: torch.Tensor
    coords: torch.Tensor
    strength: torch.Tensor


def _place(
    grid: torch.Tensor,
    frame_strength: torch.Tensor,
    latents: torch.Tensor,
    item: ConditioningMedia,
    geometry: ModelGeometry,
    options: ConditioningOptions,
) -> torch.Tensor | None:
    """Blends what goes into the grid (in place); returns the latents to append as keyframe tokens."""
    count = latents.shape[2]
    if item.start_frame == 0:
        grid[:, :, :count] = torch.lerp(grid[:, :, :count], latents, item.strength)
        frame_strength[:count] = item.strength
        return None
    prefix = options.num_prefix_latent_frames
    if item.num_frames > 1 and count > prefix:
        first = item.start_frame // geometry.temporal_compression + prefix
        last = first + count - prefix
        grid[:, :, first:last] = torch.lerp(grid[:, :, first:last], latents[:, :, prefix:], item.strength)
        frame_strength[first:last] = item.strength
        return latents[:, :, :prefix]
    return latents


def _starting_noise(
    shape: LatentShape,
    latent_conditions: Sequence[LatentCondition],
    generator: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The grid's starting noise [B, C, F, H, W] and each latent condition's [B, C, k, H, W].

    Without latent conditions (every clip, a long video's first window): upstream's single-clip layout
    (`initial_noise`). With them (a long video's window after the first): the reference long-video
    method's draw (`LTXI2VLongMultiPromptPipeline`'s `init_rand`), one `randn` over the window's latents
    with the conditions' frames appended, [B, C, F + k, H, W]; bench/README.md (issue 10, Seams) has the
    measurement.
    """
    if not latent_conditions:
        return initial_noise(shape, generator, device), []
    lengths = [condition.latents.shape[2] for condition in latent_conditions]
    batch, channels, frames, height, width = shape
    full = randn_tensor(
        (batch, channels, frames + sum(lengths), height, width),
        generator=generator,
        device=device,
        dtype=torch.float32,
    )
    grid, *tails = torch.split(full, [frames, *lengths], dim=2)
    return grid.contiguous(), [tail.contiguous() for tail in tails]


def _keyframe_tokens(
    latents: torch.Tensor,
    start_frame: int,
    strength: float,
    grid_shape: LatentShape,
    geometry: ModelGeometry,
    generator: torch.Generator,
    frame_rate: float,
    noise: torch.Tensor | None = None,
) -> _Keyframe:
    """`noise`: the keyframe's starting noise, drawn here from `generator` when not given."""
    if noise is None:
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    blended = torch.lerp(noise, latents, strength)
    shape = grid_shape._replace(frames=latents.shape[2])
    ids = LTXConditionPipeline._prepare_video_ids(
        1, shape.frames, shape.height, shape.width, geometry.patch_size, geometry.patch_size_t, latents.device
    )
    coords = LTXConditionPipeline._scale_video_ids(
        ids,
        scale_factor=geometry.spatial_compression,
        scale_factor_t=geometry.temporal_compression,
        frame_index=start_frame,
        device=latents.device,
    ).float()
    coords[:, 0] = coords[:, 0] * (1.0 / frame_rate)
    tokens = pack(blended, geometry)
    return _Keyframe(tokens, coords, torch.full(tokens.shape[:2], strength, device=latents.device))


def model_timesteps(sigma: float | torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Per-token timestep the transformer sees: min(sigma, 1 - strength), shape of `strength`."""
    sigma_tensor = torch.as_tensor(sigma, dtype=torch.float32, device=strength.device)
    return torch.minimum(sigma_tensor.expand_as(strength), 1.0 - strength)


def tokens_to_update(sigma: float, strength: torch.Tensor) -> torch.Tensor:
    """Bool [1, T]: tokens a step at `sigma` may change (those whose sigma is below 1 - strength)."""
    return sigma - _EPS < 1.0 - strength


def hard_tokens(strength: torch.Tensor) -> torch.Tensor:
    """Bool [1, T]: tokens conditioned at strength 1."""
    return strength > 1.0 - _EPS


def denoise_conditioned(
    state: ConditionedLatents,
    sigmas: Sequence[float],
    velocity: VelocityFn,
    generator: torch.Generator,
    on_progress: ProgressCallback,
    is_cancelled: CancelCheck,
    options: ConditioningOptions = ConditioningOptions(),
) -> torch.Tensor:
    """Runs one Euler step per entry of `sigmas` (descending; the last step goes to 0).

    Returns all tokens [1, E + N, C]; `generated_tokens` drops the keyframes.
    """
    schedule = [float(s) for s in sigmas] + [0.0]
    initial = state.tokens.clone()
    hard = hard_tokens(state.strength)
    renoise = options.image_cond_noise_scale > 0 and state.conditioned
    latents = state.tokens
    total = len(sigmas)
    for step in range(total):
        if is_cancelled():
            raise Cancelled()
        sigma, next_sigma = schedule[step], schedule[step + 1]
        if renoise:
            noise = randn_tensor(
                latents.shape, generator=generator, device=latents.device, dtype=latents.dtype
            )
            noised = initial + options.image_cond_noise_scale * noise * sigma**2
            latents = torch.where(hard[..., None], noised, latents)
        guided = velocity(latents, model_timesteps(sigma, state.strength), step).float()
        stepped = latents + (next_sigma - sigma) * guided
        latents = torch.where(tokens_to_update(sigma, state.strength)[..., None], stepped, latents)
        on_progress(Progress(Stage.DENOISING, step=step + 1, total=total))
    return latents


def generated_tokens(tokens: torch.Tensor, num_extra_tokens: int) -> torch.Tensor:
    """Tokens of the generated grid: `tokens` without the leading keyframe tokens."""
    return tokens[:, num_extra_tokens:]
