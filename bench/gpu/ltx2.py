"""LTX-2.3 22B rows: its transformer at the real shapes, one call per pass of the spec defaults (landscape
16:9, 121 frames, multiscale, 15 steps, with audio), the stage totals those calls imply, and the memory plan.

The endpoint's own pipeline (helper i9's) is not on this branch, so the request is not run end to end: the
stage times are the measured per-call times times the calls the spec defaults make (stage 1: per step one
batch-3 call for cond, uncond and STG plus one batch-1 call with the modalities isolated; stage 2: one
call per step, 3 steps), and are labelled as such. What is left: the VAE, audio VAE and vocoder decodes,
the upsampler and Gemma, once the endpoint's models are in the service.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl_ltx2 import AutoencoderKLLTX2Video
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel

from bench.gpu import build, measure
from bench.gpu.plan import RunPlan
from bench.gpu.step import describe
from service.config import FastPathConfig
from service.contract.frames import latent_frame_count
from service.domain.geometry import (
    LTX2_FIRST_PASS_DOWNSCALE,
    FrameSize,
    VideoSizePreset,
    ltx2_preset_size,
    multiscale_sizes,
)
from service.models import fast_path

logger = logging.getLogger(__name__)

# diffusers' scripts/convert_ltx2_to_diffusers.py, version 2.3 (48 blocks, 4096 wide video, 2048 audio).
LTX23_TRANSFORMER: dict[str, Any] = {
    "in_channels": 128,
    "out_channels": 128,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "cross_attention_dim": 4096,
    "vae_scale_factors": (8, 32, 32),
    "pos_embed_max_pos": 20,
    "base_height": 2048,
    "base_width": 2048,
    "gated_attn": True,
    "cross_attn_mod": True,
    "audio_in_channels": 128,
    "audio_out_channels": 128,
    "audio_patch_size": 1,
    "audio_patch_size_t": 1,
    "audio_num_attention_heads": 32,
    "audio_attention_head_dim": 64,
    "audio_cross_attention_dim": 2048,
    "audio_scale_factor": 4,
    "audio_pos_embed_max_pos": 20,
    "audio_sampling_rate": 16000,
    "audio_hop_length": 160,
    "audio_gated_attn": True,
    "audio_cross_attn_mod": True,
    "num_layers": 48,
    "activation_fn": "gelu-approximate",
    "qk_norm": "rms_norm_across_heads",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 3840,
    "attention_bias": True,
    "attention_out_bias": True,
    "rope_theta": 10000.0,
    "rope_double_precision": True,
    "causal_offset": 1,
    "timestep_scale_multiplier": 1000,
    "cross_attn_timestep_scale_multiplier": 1000,
    "rope_type": "split",
    "use_prompt_embeddings": False,
    "perturbed_attn": True,
}

# --smoke: two blocks, 64 wide, a 256x128 clip and 64 text tokens.
SMOKE_OUTPUT = FrameSize(256, 128)
SMOKE_TEXT_TOKENS = 64
SMOKE_LTX2_TRANSFORMER: dict[str, Any] = {
    **LTX23_TRANSFORMER,
    "num_layers": 2,
    "num_attention_heads": 2,
    "attention_head_dim": 32,
    "cross_attention_dim": 64,
    "audio_num_attention_heads": 2,
    "audio_attention_head_dim": 16,
    "audio_cross_attention_dim": 32,
    "caption_channels": 64,
}

# diffusers' conversion script, version 2.3 (32x spatial, 8x temporal, 128 latent channels).
LTX23_VIDEO_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "block_out_channels": (256, 512, 1024, 1024),
    "down_block_types": ("LTX2VideoDownBlock3D",) * 4,
    "decoder_block_out_channels": (256, 512, 512, 1024),
    "layers_per_block": (4, 6, 4, 2, 2),
    "decoder_layers_per_block": (4, 6, 4, 2, 2),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True, True),
    "decoder_inject_noise": (False, False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_type": ("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
    "upsample_residual": (False, False, False, False),
    "upsample_factor": (2, 2, 1, 2),
    "timestep_conditioning": False,
    "patch_size": 4,
    "patch_size_t": 1,
    "resnet_norm_eps": 1e-6,
    "encoder_causal": True,
    "decoder_causal": False,
    "encoder_spatial_padding_mode": "zeros",
    "decoder_spatial_padding_mode": "zeros",
    "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
}
SMOKE_LTX2_VIDEO_VAE: dict[str, Any] = {
    **LTX23_VIDEO_VAE,
    "block_out_channels": (8, 16, 32, 32),
    "decoder_block_out_channels": (8, 16, 16, 32),
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1, 1),
}

TEXT_TOKENS = 1024  # Gemma-3 prompts, padded to 1024 tokens (ltx2-notes.md, "prompt")
STAGE1_STEPS, STAGE2_STEPS = 15, 3  # the spec default and LTX's distilled stage 2
FPS = 24.0
AUDIO_LATENTS_PER_SECOND = 25.0

# bf16 weights of the parts not built here, in GB (ARCHITECTURE.md's sizes; ltx2-notes.md section 7).
OTHER_WEIGHTS_GB = {
    "text connectors (3.2 B)": 6.34,
    "Gemma-3-12B text encoder": 23.5,
    "x2 upsampler": 1.0,
    "audio VAE + vocoder": 0.36,
}


@dataclass(frozen=True)
class Ltx2Call:
    name: str
    batch: int
    frames: int  # latent grid
    height: int
    width: int
    audio_tokens: int
    isolate_modalities: bool = False
    calls_per_request: int = 1

    @property
    def video_tokens(self) -> int:
        return self.frames * self.height * self.width


def spec_default_calls(num_frames: int, output: FrameSize | None = None) -> list[Ltx2Call]:
    """The transformer calls of the spec default request (landscape 16:9, multiscale), or at `output`."""
    output = output or ltx2_preset_size(VideoSizePreset.LANDSCAPE_16_9)
    sizes = multiscale_sizes(output, LTX2_FIRST_PASS_DOWNSCALE)
    frames = latent_frame_count(num_frames)
    audio = round(num_frames / FPS * AUDIO_LATENTS_PER_SECOND)
    first, second = sizes.first_pass, sizes.second_pass
    grid1 = (frames, first.height // 32, first.width // 32)
    grid2 = (frames, second.height // 32, second.width // 32)
    return [
        Ltx2Call("stage 1, cond + uncond + STG", 3, *grid1, audio, calls_per_request=STAGE1_STEPS),
        Ltx2Call("stage 1, modality-isolated", 1, *grid1, audio, True, STAGE1_STEPS),
        Ltx2Call("stage 2", 1, *grid2, audio, calls_per_request=STAGE2_STEPS),
    ]


def call_inputs(
    config: dict[str, Any], call: Ltx2Call, dtype: torch.dtype, device: torch.device, text_tokens: int
) -> dict[str, Any]:
    generator = None if device.type == "meta" else torch.Generator(device=device).manual_seed(11)

    def noise(*shape: int) -> torch.Tensor:
        if generator is None:  # meta, for counting FLOPs: shapes only
            return torch.empty(*shape, device=device, dtype=dtype)
        return torch.randn(*shape, generator=generator, device=device).to(dtype)

    b = call.batch
    sigma = torch.full((b,), 0.7, device=device)
    return {
        "hidden_states": noise(b, call.video_tokens, config["in_channels"]),
        "audio_hidden_states": noise(b, call.audio_tokens, config["audio_in_channels"]),
        "encoder_hidden_states": noise(
            b, text_tokens, config["num_attention_heads"] * config["attention_head_dim"]
        ),
        "audio_encoder_hidden_states": noise(
            b, text_tokens, config["audio_num_attention_heads"] * config["audio_attention_head_dim"]
        ),
        "timestep": torch.full((b, call.video_tokens), 700.0, device=device),
        "audio_timestep": torch.full((b, call.audio_tokens), 700.0, device=device),
        "sigma": sigma,
        "encoder_attention_mask": torch.ones(b, text_tokens, device=device, dtype=torch.long),
        "audio_encoder_attention_mask": torch.ones(b, text_tokens, device=device, dtype=torch.long),
        "num_frames": call.frames,
        "height": call.height,
        "width": call.width,
        "fps": FPS,
        "audio_num_frames": call.audio_tokens,
        "isolate_modalities": call.isolate_modalities,
        "return_dict": False,
    }


def lines(plan: RunPlan, peak_flops: float, deadline: float, fast: FastPathConfig | None = None) -> list[str]:
    """The LTX-2.3 rows of the table (or one row saying why they were not measured). `fast`: the 13B's
    chosen fast path, applied (without compile and CUDA graphs, which would cost their own warm-ups) after
    the eager rows."""
    if time.monotonic() > deadline:
        return ["| LTX-2.3 22B | skipped: time budget spent | - | - | - | - | - | - |"]
    try:
        return _measure(
            plan, peak_flops, dataclasses.replace(fast or FastPathConfig(), compile=False, cuda_graphs=False)
        )
    except Exception as error:  # the 13B rows above must still be printed
        logger.exception("LTX-2.3 rows failed")
        return [
            f"| LTX-2.3 22B | failed: {type(error).__name__}: {str(error).splitlines()[0][:120]} | - | - | - | - | - | - |"
        ]


def _measure(plan: RunPlan, peak_flops: float, fast: FastPathConfig) -> list[str]:
    config = LTX23_TRANSFORMER if plan.device == "cuda" else SMOKE_LTX2_TRANSFORMER
    device = torch.device(plan.device)
    measure.free(device)
    meta = build.on_meta(LTX2VideoTransformer3DModel, config)
    params = build.parameter_count(meta)
    with measure.peak_memory(device) as memory:
        transformer = build.materialize(meta, device, plan.dtype, plan.seed + 20)
    rows, total, eager = _call_rows(plan, config, transformer, peak_flops, "eager", None)
    if fast.enabled:
        fast_path.apply_fast_path(transformer, fast)
        fast_rows, fast_total, _ = _call_rows(plan, config, transformer, peak_flops, describe(fast), eager)
        rows += fast_rows
        total = min(total, fast_total)
    transformer = None  # freed before the VAE and the next run's models are built
    measure.free(device)
    vae_row, vae_s, vae_gib = _vae_decode_row(plan, peak_flops)
    rows.append(vae_row)
    total += vae_s
    other = sum(OTHER_WEIGHTS_GB.values())
    plan_text = ", ".join(f"{name} {gb:g} GB" for name, gb in OTHER_WEIGHTS_GB.items())
    rows.append(
        f"| LTX-2.3 spec default request, transformer calls (15 + 3 steps) and video decode, summed from the faster "
        f"configuration's rows above (not run end to end; audio decode, upsampler, Gemma not timed) | ok | {total:.2f} s "
        f"| - | - | - | - | - |"
    )
    rows.append(
        f"| LTX-2.3 memory plan: transformer {params / 1e9:.3g} B params = {_gib(memory['peak_gib'])} GiB "
        f"measured, its weights; video VAE {_gib(vae_gib)} GiB at the decode's peak; plus {plan_text} = "
        f"{other:.1f} GB more, bf16 | ok | - | - | - | - | - | - |"
    )
    return rows


def _call_rows(
    plan: RunPlan,
    config: dict[str, Any],
    transformer: torch.nn.Module,
    peak_flops: float,
    label: str,
    references: list[torch.Tensor] | None,
) -> tuple[list[str], float, list[torch.Tensor]]:
    """One row per call of the spec default request; the video outputs (on the host) for comparison."""
    device = torch.device(plan.device)
    rows, total, outputs = [], 0.0, []
    smoke = plan.device == "cpu"
    text_tokens = SMOKE_TEXT_TOKENS if smoke else TEXT_TOKENS
    for call in spec_default_calls(plan.num_frames, SMOKE_OUTPUT) if smoke else spec_default_calls(121):
        inputs = call_inputs(config, call, plan.dtype, device, text_tokens)
        flops = _flops(config, call, plan.dtype, text_tokens)

        def forward(inputs: dict[str, Any] = inputs) -> Any:
            with torch.inference_mode():
                return transformer(**inputs)

        with measure.peak_memory(device) as step_memory:
            _, first_s = measure.timed_call(forward, device)
            output, seconds = measure.median_seconds(forward, device, plan.repeats)
        finite = all(bool(torch.isfinite(t).all()) for t in output[:2])
        video = output[0].float().cpu()
        outputs.append(video)
        diff, relative = "-", "-"
        if references is not None:
            reference = references[len(outputs) - 1]
            diff = f"{measure.max_abs_diff(video, reference):.3g}"
            relative = f"{float((video - reference).norm() / reference.norm()):.3g}"
        stage_s = seconds * call.calls_per_request
        total += stage_s
        rows.append(
            f"| LTX-2.3 step ({label}): {call.name}, batch {call.batch}, {call.video_tokens} video + "
            f"{call.audio_tokens} audio tokens | {'ok' if finite else 'failed: non-finite output'} | "
            f"{seconds * 1000:.1f} ms (first {first_s:.1f} s); x{call.calls_per_request} = {stage_s:.2f} s "
            f"| - | {_pct(flops / seconds / peak_flops)} | {_gib(step_memory['peak_gib'])} | {diff} | {relative} |"
        )
    return rows, total, outputs


def _vae_decode_row(plan: RunPlan, peak_flops: float) -> tuple[str, float, float]:
    """(row, seconds, peak GiB) of the video VAE decoding the stage-2 latents (1216x704, 121 frames)."""
    smoke = plan.device == "cpu"
    config = SMOKE_LTX2_VIDEO_VAE if smoke else LTX23_VIDEO_VAE
    device = torch.device(plan.device)
    call = spec_default_calls(plan.num_frames, SMOKE_OUTPUT)[-1] if smoke else spec_default_calls(121)[-1]
    shape = (1, config["latent_channels"], call.frames, call.height, call.width)
    meta = build.on_meta(AutoencoderKLLTX2Video, config).to(plan.dtype)
    flops = measure.count_flops(lambda: meta.decode(torch.empty(shape, device="meta", dtype=plan.dtype)))
    with measure.peak_memory(device) as memory:
        vae = build.materialize(
            build.on_meta(AutoencoderKLLTX2Video, config), device, plan.dtype, plan.seed + 21
        )
        latents = torch.randn(shape, device=device).to(plan.dtype)

        def decode() -> Any:
            with torch.inference_mode():
                return vae.decode(latents, return_dict=False)[0]

        video, first_s = measure.timed_call(decode, device)
        _, seconds = measure.median_seconds(decode, device, plan.repeats)
    frames = tuple(video.shape)
    video = None  # freed before the next model is built
    measure.free(device)
    row = (
        f"| LTX-2.3 video VAE decode, latents {shape[2:]} -> {frames[2:]} | ok | {seconds:.2f} s "
        f"(first {first_s:.1f} s) | eager | {_pct(flops / seconds / peak_flops)} | {_gib(memory['peak_gib'])} "
        f"| - | - |"
    )
    return row, seconds, memory["peak_gib"]


def _flops(config: dict[str, Any], call: Ltx2Call, dtype: torch.dtype, text_tokens: int) -> float:
    try:
        meta = build.on_meta(LTX2VideoTransformer3DModel, config).to(dtype)
        inputs = call_inputs(config, call, dtype, torch.device("meta"), text_tokens)
        return float(measure.count_flops(lambda: meta(**inputs)))
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as error:
        logger.warning("could not count LTX-2.3 FLOPs: %s", error)
        return math.nan


def _gib(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 100:.1f}%"
