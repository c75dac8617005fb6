"""The LTX-2.3 component declarations: what each graph takes and returns, and the shapes a request can cause.

The LTX-2.3 pipeline (service/pipelines/ltx2/) speaks to five components. Each is declared once here, with
tensor names, dtypes, axes, optional-input defaults and min/opt/max shapes; the torch adapters
(service/models/ltx2_component_modules.py), the Triton component models and their config.pbtxt, the BLS
bindings and the ONNX export all read these. Latents cross every component boundary *normalized* (the
sampling loop's scale): each adapter (de)normalizes with its own VAE's statistics, so neither the pipeline
nor a BLS binding needs a weight.

  ltx2_text_encoder:      input_ids [B, L] int64, attention_mask [B, L] int64 (Gemma-3, left-padded)
                          [, distilled_lora_scale [1]]
                          -> video_context [B, L, Dv], audio_context [B, L, Da], context_mask [B, L] int64
  ltx2_transformer:       hidden_states [B, N, C], audio_hidden_states [B, Na, Ca], encoder_hidden_states
                          [B, L, Dv], audio_encoder_hidden_states [B, L, Da], encoder_attention_mask [B, L],
                          timestep [B] (sigma * 1000), video_coords [B, 3, N, 2], audio_coords [B, 1, Na, 2]
                          [, stg_skip_blocks [blocks] bool, stg_rows [B] bool, stg_video [1] bool,
                          stg_audio [1] bool, isolate_modalities [1] bool, distilled_lora_scale [1]]
                          -> velocity [B, N, C], audio_velocity [B, Na, Ca]
  ltx2_vae_decoder:       latents [1, C, f, h, w] -> video [1, 3, F, H, W] in [-1, 1]
  ltx2_audio_decoder:     audio_latents [1, Na, Ca] -> waveform [1, channels, samples] in [-1, 1] (vocoder rate)
  ltx2_latent_upsampler:  latents [1, C, f, h, w] -> upsampled_latents [1, C, f, 2h, 2w]

`distilled_lora_scale` is the one input that only the torch (Python-backend) models take: the resident
distilled LoRA at that scale (0: adapters off). ONNX graphs are traced without it (`graph_inputs`); a
TensorRT deployment fuses the LoRA into per-stage engines instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.contract.components import ComponentDecl
from service.contract.tensors import (
    BATCH,
    FRAMES,
    HEIGHT,
    LATENT_FRAMES,
    LATENT_HEIGHT,
    LATENT_WIDTH,
    TOKENS,
    UPSAMPLED_LATENT_HEIGHT,
    UPSAMPLED_LATENT_WIDTH,
    WIDTH,
    AxisRange,
    TensorDecl,
    TensorType,
)

if TYPE_CHECKING:  # annotations only: the contract imports no torch at run time
    import torch

AUDIO_TOKENS = "audio_tokens"  # audio latent frames: round(num_frames / fps * 25) at 16 kHz mel, hop 160, 4x
AUDIO_SAMPLES = "audio_samples"  # outputs only: vocoder samples of the decoded audio

# Input names the pipeline bindings set by name (the rest are positional in declaration order).
STG_SKIP_BLOCKS = "stg_skip_blocks"
STG_ROWS = "stg_rows"
STG_VIDEO = "stg_video"
STG_AUDIO = "stg_audio"
ISOLATE_MODALITIES = "isolate_modalities"
DISTILLED_LORA_SCALE = "distilled_lora_scale"
# Inputs outside the exported graphs (see the module docstring).
PYTHON_BACKEND_ONLY = frozenset({DISTILLED_LORA_SCALE})


@dataclass(frozen=True, eq=False)
class Ltx2TextContext:
    """The text encoder's outputs for one prompt: video [B, L, Dv], audio [B, L, Da] contexts, mask [B, L]."""

    video: torch.Tensor
    audio: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True, eq=False)
class Ltx2Perturbation:
    """STG on the transformer: the self-attention of `skip_blocks` is replaced by its values for the rows in
    `rows` (bool [B]), in the video stream when `video`, in the audio stream when `audio` (the tensors
    stg_skip_blocks, stg_rows, stg_video, stg_audio)."""

    skip_blocks: tuple[int, ...]
    rows: torch.Tensor
    video: bool
    audio: bool


@dataclass(frozen=True)
class Ltx2Geometry:
    """Fixed facts about an LTX-2.3 model (tiny or real) that shapes, packing and RoPE need; no weights."""

    latent_channels: int  # video latent channels (128)
    spatial_compression: int  # 32
    temporal_compression: int  # 8
    patch_size: int  # transformer patches (1, 1 for LTX-2.3)
    patch_size_t: int
    audio_latent_channels: int  # 8
    audio_mel_bins: int  # mel bins of the audio VAE (64); latent mel bins = mel_bins / mel_compression
    audio_mel_compression: int  # 4
    audio_temporal_compression: int  # 4
    audio_sample_rate: int  # the mel rate (16 kHz), not the output's
    audio_hop_length: int  # 160
    output_sample_rate: int  # the vocoder's (48 kHz)
    output_audio_channels: int  # 2 (stereo)
    text_max_length: int  # Gemma tokens per prompt (1024; tiny: 128)
    video_context_dim: int  # transformer cross_attention_dim
    audio_context_dim: int  # audio_cross_attention_dim
    transformer_blocks: int
    stg_blocks: tuple[int, ...]  # blocks STG perturbs (28 for 2.3)
    rope_causal_offset: int  # RoPE coordinates (diffusers' LTX2AudioVideoRotaryPosEmbed)
    upsampler_scale: int = 2

    @property
    def audio_latent_mel_bins(self) -> int:
        return self.audio_mel_bins // self.audio_mel_compression

    @property
    def audio_token_width(self) -> int:
        return self.audio_latent_channels * self.audio_latent_mel_bins

    @property
    def token_width(self) -> int:
        return self.latent_channels * self.patch_size**2 * self.patch_size_t

    @property
    def audio_latents_per_second(self) -> float:
        return self.audio_sample_rate / self.audio_hop_length / float(self.audio_temporal_compression)


TRANSFORMER_PASSES = AxisRange(1, 3, 3)


@dataclass(frozen=True)
class Ltx2Ranges:
    """The shapes the endpoint lets a client cause (TensorRT profiles): sides 64..2048 (service/api/validation
    CUSTOM_SIDE), 9..481 frames at 1..60 fps, stage 1 at half size; opt = the spec example (1248x704 ->
    stage 2 1280x704, stage 1 640x352, 121 frames at 24 fps)."""

    min_side: int = 64
    max_side: int = 2048
    opt_height: int = 704
    opt_width: int = 1280
    min_frames: int = 9
    opt_frames: int = 121
    max_frames: int = 481
    # The fewest audio latents come from the fewest frames at the highest rate, the most from the lowest.
    fps_at_min: float = 60.0
    opt_fps: float = 24.0
    fps_at_max: float = 1.0
    # cond + uncond + STG-perturbed in one call (the modality-isolated pass is a call of its own)
    passes: AxisRange = TRANSFORMER_PASSES

    def axis_ranges(self, geometry: Ltx2Geometry) -> dict[str, AxisRange]:
        space, time = geometry.spatial_compression, geometry.temporal_compression

        def latent_frames(frames: int) -> int:
            return (frames - 1) // time + 1

        # Stage 1 runs at half the (64-aligned) size: its latent side can be one cell at the smallest.
        smallest, largest = max(1, self.min_side // space // 2), self.max_side // space
        height = AxisRange(smallest, self.opt_height // space, largest)
        width = AxisRange(smallest, self.opt_width // space, largest)
        frames = AxisRange(*(latent_frames(f) for f in (self.min_frames, self.opt_frames, self.max_frames)))
        patch = geometry.patch_size**2 * geometry.patch_size_t
        tokens = AxisRange(*(h * w * f // patch for h, w, f in zip(height, width, frames, strict=True)))
        per_second = geometry.audio_latents_per_second
        audio = AxisRange(
            *(
                max(1, round(f / fps * per_second))
                for f, fps in (
                    (self.min_frames, self.fps_at_min),
                    (self.opt_frames, self.opt_fps),
                    (self.max_frames, self.fps_at_max),
                )
            )
        )
        return {
            BATCH: self.passes,
            TOKENS: tokens,
            AUDIO_TOKENS: audio,
            LATENT_FRAMES: frames,
            LATENT_HEIGHT: height,
            LATENT_WIDTH: width,
            FRAMES: AxisRange(*((f - 1) * time + 1 for f in frames)),
            HEIGHT: AxisRange(*(h * space for h in height)),
            WIDTH: AxisRange(*(w * space for w in width)),
        }


class Ltx2ComponentDecl(ComponentDecl):
    """An LTX-2.3 component: the same `ComponentDecl` machinery (default shapes, profiles, config.pbtxt)
    over `Ltx2Geometry` and `Ltx2Ranges`."""

    def __init__(self, geometry: Ltx2Geometry, ranges: Ltx2Ranges | None = None) -> None:
        # Not ComponentDecl.__init__: that one takes the LTX-Video ModelGeometry.
        self.ltx2 = geometry
        self.ranges = ranges or Ltx2Ranges()

    def axis_ranges(self) -> dict[str, AxisRange]:
        ranges = self.ranges.axis_ranges(self.ltx2)
        if self.batch_range is not None:
            ranges[BATCH] = self.batch_range
        return ranges

    @property
    def graph_inputs(self) -> tuple[TensorDecl, ...]:
        """The inputs of the exported graph (ONNX, TensorRT): all but the Python-backend-only ones."""
        return tuple(tensor for tensor in self.inputs if tensor.name not in PYTHON_BACKEND_ONLY)


def _lora_scale() -> TensorDecl:
    return TensorDecl(
        DISTILLED_LORA_SCALE, TensorType.FP32, (1,), keeps_fp32=True, optional=True, default=0.0
    )


def _flag(name: str) -> TensorDecl:
    return TensorDecl(name, TensorType.BOOL, (1,), optional=True, default=False)


def _video_latents(name: str, channels: int) -> TensorDecl:
    # keeps_fp32: the adapter (de)normalizes in fp32 and casts to the model's dtype after that.
    axes = (BATCH, channels, LATENT_FRAMES, LATENT_HEIGHT, LATENT_WIDTH)
    return TensorDecl(name, TensorType.FP32, axes, keeps_fp32=True)


class Ltx2TextEncoderDecl(Ltx2ComponentDecl):
    """Gemma-3 hidden states of every layer -> the text connectors: both modalities' contexts."""

    name = "ltx2_text_encoder"
    batch_range = AxisRange(1, 1, 2)  # the pipeline encodes one prompt per call; two fit

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        length = self.ltx2.text_max_length
        return (
            TensorDecl("input_ids", TensorType.INT64, (BATCH, length)),
            TensorDecl("attention_mask", TensorType.INT64, (BATCH, length)),
            _lora_scale(),
        )

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        g = self.ltx2
        return (
            TensorDecl("video_context", TensorType.FP32, (BATCH, g.text_max_length, g.video_context_dim)),
            TensorDecl("audio_context", TensorType.FP32, (BATCH, g.text_max_length, g.audio_context_dim)),
            TensorDecl("context_mask", TensorType.INT64, (BATCH, g.text_max_length)),
        )


class Ltx2TransformerDecl(Ltx2ComponentDecl):
    """The audio-video transformer: one call is up to three passes (cond, uncond, STG-perturbed rows).

    STG as tensors: the self-attention of the blocks in `stg_skip_blocks` is replaced by its value projection
    for the rows in `stg_rows`, in video when `stg_video`, in audio when `stg_audio`. `isolate_modalities`
    switches the audio<->video cross-attention off (modality guidance's isolated pass). Absent, all false."""

    name = "ltx2_transformer"

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        g = self.ltx2
        length = g.text_max_length
        return (
            TensorDecl("hidden_states", TensorType.FP32, (BATCH, TOKENS, g.token_width)),
            TensorDecl("audio_hidden_states", TensorType.FP32, (BATCH, AUDIO_TOKENS, g.audio_token_width)),
            TensorDecl("encoder_hidden_states", TensorType.FP32, (BATCH, length, g.video_context_dim)),
            TensorDecl("audio_encoder_hidden_states", TensorType.FP32, (BATCH, length, g.audio_context_dim)),
            TensorDecl("encoder_attention_mask", TensorType.INT64, (BATCH, length)),
            # sigma * 1000, diffusers' training scale (computed in float64 by the pipeline, as LTX2Pipeline does)
            TensorDecl("timestep", TensorType.FP32, (BATCH,), keeps_fp32=True),
            TensorDecl("video_coords", TensorType.FP32, (BATCH, 3, TOKENS, 2), keeps_fp32=True),
            TensorDecl("audio_coords", TensorType.FP32, (BATCH, 1, AUDIO_TOKENS, 2), keeps_fp32=True),
            TensorDecl(
                STG_SKIP_BLOCKS, TensorType.BOOL, (g.transformer_blocks,), optional=True, default=False
            ),
            TensorDecl(STG_ROWS, TensorType.BOOL, (BATCH,), optional=True, default=False),
            _flag(STG_VIDEO),
            _flag(STG_AUDIO),
            _flag(ISOLATE_MODALITIES),
            _lora_scale(),
        )

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        g = self.ltx2
        return (
            TensorDecl("velocity", TensorType.FP32, (BATCH, TOKENS, g.token_width)),
            TensorDecl("audio_velocity", TensorType.FP32, (BATCH, AUDIO_TOKENS, g.audio_token_width)),
        )


class Ltx2VaeDecoderDecl(Ltx2ComponentDecl):
    """Normalized video latents -> pixels in [-1, 1] (the 2.3 VAE; decode timestep 0 where it is conditioned)."""

    name = "ltx2_vae_decoder"
    batch_range = AxisRange(1, 1, 1)

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        return (_video_latents("latents", self.ltx2.latent_channels),)

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        return (TensorDecl("video", TensorType.FP32, (BATCH, 3, FRAMES, HEIGHT, WIDTH)),)


class Ltx2AudioDecoderDecl(Ltx2ComponentDecl):
    """Normalized packed audio latents -> the audio VAE's mel -> the vocoder's waveform (with bandwidth
    extension), clamped to [-1, 1]. The pipeline pads or trims it to the video's duration."""

    name = "ltx2_audio_decoder"
    batch_range = AxisRange(1, 1, 1)

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        g = self.ltx2
        axes = (BATCH, AUDIO_TOKENS, g.audio_token_width)
        return (TensorDecl("audio_latents", TensorType.FP32, axes, keeps_fp32=True),)

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        channels = self.ltx2.output_audio_channels
        return (TensorDecl("waveform", TensorType.FP32, (BATCH, channels, AUDIO_SAMPLES)),)


class Ltx2LatentUpsamplerDecl(Ltx2ComponentDecl):
    """Normalized latents -> normalized latents at twice the sides (the x2 upsampler runs denormalized)."""

    name = "ltx2_latent_upsampler"
    batch_range = AxisRange(1, 1, 1)

    @property
    def inputs(self) -> tuple[TensorDecl, ...]:
        return (_video_latents("latents", self.ltx2.latent_channels),)

    @property
    def outputs(self) -> tuple[TensorDecl, ...]:
        channels = self.ltx2.latent_channels
        axes = (BATCH, channels, LATENT_FRAMES, UPSAMPLED_LATENT_HEIGHT, UPSAMPLED_LATENT_WIDTH)
        return (TensorDecl("upsampled_latents", TensorType.FP32, axes),)


LTX2_COMPONENT_DECLS: dict[str, type[Ltx2ComponentDecl]] = {
    cls.name: cls
    for cls in (
        Ltx2TextEncoderDecl,
        Ltx2TransformerDecl,
        Ltx2VaeDecoderDecl,
        Ltx2AudioDecoderDecl,
        Ltx2LatentUpsamplerDecl,
    )
}
# What the endpoint needs: all five (multiscale is on by default; without the upsampler it fails the job).
LTX2_COMPONENTS = tuple(LTX2_COMPONENT_DECLS)


def ltx2_declaration(
    name: str, geometry: Ltx2Geometry, ranges: Ltx2Ranges | None = None
) -> Ltx2ComponentDecl:
    """The declaration of LTX-2.3 component `name` for a model of `geometry`."""
    if name not in LTX2_COMPONENT_DECLS:
        raise ValueError(f"unknown LTX-2.3 component {name!r}; known: {sorted(LTX2_COMPONENT_DECLS)}")
    return LTX2_COMPONENT_DECLS[name](geometry, ranges)
