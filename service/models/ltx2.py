"""LTX-2.3 models: the tiny seeded preset, real checkpoints from a local directory, and real shapes on `meta`.

Every component is a diffusers (or transformers) class, so the tiny preset, the real checkpoint and the
benchmark's meta-device build run the same code:
- `LTX2VideoTransformer3DModel` (audio-video, 2.3 layout: gated attention, cross-attention modulation,
  perturbed attention for STG, no caption projection: `use_prompt_embeddings=False`),
- `LTX2TextConnectors` (Gemma hidden states -> video and audio contexts, per-modality projections),
- `AutoencoderKLLTX2Video` (2.3 VAE: 32x spatial, 8x temporal), `AutoencoderKLLTX2Audio` (mel latents),
- `LTX2VocoderWithBWE` (16 kHz mel -> 48 kHz waveform), `LTX2LatentUpsamplerModel` (x2 spatial),
- a Gemma-3 text model from transformers with an offline tokenizer for the tiny preset.

`REAL_*_CONFIG` are the 2.3 configs of diffusers' conversion script (scripts/convert_ltx2_to_diffusers.py,
version "2.3"); `build_ltx2_at_real_shapes` builds them without weights (benchmarks, FLOP counts).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from diffusers.models.autoencoders.autoencoder_kl_ltx2 import AutoencoderKLLTX2Video
from diffusers.models.autoencoders.autoencoder_kl_ltx2_audio import AutoencoderKLLTX2Audio
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE
from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerBase

from service.config import Ltx2ModelConfig
from service.models.tokenizer import build_byte_tokenizer, byte_tokenizer_vocab_size

logger = logging.getLogger(__name__)

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


class Ltx2Preset:
    TINY = "tiny-ltx2"
    LTX_23 = "ltx-2.3"
    NONE = "none"  # this deployment does not serve the LTX-2.3 endpoint


# Gemma-3 prompts are left-padded to 1024 tokens (LTX2Pipeline.encode_prompt's default, as upstream).
LTX2_TEXT_MAX_LENGTH = 1024
TINY_TEXT_MAX_LENGTH = 128  # the tiny preset keeps prompts short so that CPU encoding stays fast
TINY_GEMMA_LAYERS = 2  # hidden states stacked = layers + 1 (the connectors' `text_proj_in_factor`)
TINY_TEXT_DIM = 32

TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "in_channels": 128,  # the real latent width: the tiny VAE keeps 128 channels, as the 2.3 VAE does
    "out_channels": 128,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "cross_attention_dim": 32,
    "audio_in_channels": 128,  # 8 latent channels x 16 latent mel bins, as in the real model
    "audio_out_channels": 128,
    "audio_num_attention_heads": 2,
    "audio_attention_head_dim": 8,
    "audio_cross_attention_dim": 16,
    "num_layers": 1,  # STG perturbs block 0: every code path, at the least CPU time
    "caption_channels": TINY_TEXT_DIM,
    "gated_attn": True,
    "cross_attn_mod": True,
    "audio_gated_attn": True,
    "audio_cross_attn_mod": True,
    "rope_type": "split",
    "use_prompt_embeddings": False,
    "perturbed_attn": True,
    "base_height": 256,
    "base_width": 256,
}

TINY_CONNECTORS_CONFIG: dict[str, Any] = {
    "caption_channels": TINY_TEXT_DIM,
    "text_proj_in_factor": TINY_GEMMA_LAYERS + 1,
    "video_connector_num_attention_heads": 2,
    "video_connector_attention_head_dim": 16,
    "video_connector_num_layers": 1,
    "video_connector_num_learnable_registers": 8,
    "video_gated_attn": True,
    "audio_connector_num_attention_heads": 2,
    "audio_connector_attention_head_dim": 8,
    "audio_connector_num_layers": 1,
    "audio_connector_num_learnable_registers": 8,
    "audio_gated_attn": True,
    "connector_rope_base_seq_len": 128,
    "rope_type": "split",
    "per_modality_projections": True,
    "video_hidden_dim": 32,
    "audio_hidden_dim": 16,
    "proj_bias": True,
}

# The 2.3 VAE layout (conversion script, version "2.3") at tiny widths. The compression ratios must be given:
# diffusers derives patch * 2**len(...) = 64/16 for this layout otherwise.
TINY_VIDEO_VAE_CONFIG: dict[str, Any] = {
    "latent_channels": 128,
    "block_out_channels": (8, 8, 16, 16),
    "decoder_block_out_channels": (4, 8, 8, 16),  # the real (256, 512, 512, 1024) ratios
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1, 1),
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
    "encoder_causal": True,
    "decoder_causal": False,
    "decoder_spatial_padding_mode": "zeros",
    "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
}

TINY_AUDIO_VAE_CONFIG: dict[str, Any] = {
    "base_channels": 8,
    "ch_mult": (1, 2, 4),
    "num_res_blocks": 1,
    "latent_channels": 8,
    "mel_bins": 64,
    "sample_rate": 16000,
    "mel_hop_length": 160,
}

# The vocoder's width halves per upsample stage, so hidden_channels >= 2**len(upsample_factors). Three
# stages of 10 x 4 x 4 = 160 (the 16 kHz mel hop) and 10 x 6 x 4 = 240 for the bandwidth extension to 48 kHz
# keep the real rates at a fraction of the real six/five stages' CPU time.
TINY_VOCODER_CONFIG: dict[str, Any] = {
    "in_channels": 128,  # 2 output channels x 64 mel bins
    "hidden_channels": 16,
    "upsample_kernel_sizes": [20, 8, 8],
    "upsample_factors": [10, 4, 4],
    "resnet_kernel_sizes": [3],
    "resnet_dilations": [[1]],
    "bwe_hidden_channels": 16,
    "bwe_upsample_kernel_sizes": [20, 12, 8],
    "bwe_upsample_factors": [10, 6, 4],
    "bwe_resnet_kernel_sizes": [3],
    "bwe_resnet_dilations": [[1]],
}

TINY_UPSAMPLER_CONFIG: dict[str, Any] = {"in_channels": 128, "mid_channels": 32, "num_blocks_per_stage": 1}

TINY_GEMMA_CONFIG: dict[str, Any] = {
    "hidden_size": TINY_TEXT_DIM,
    "intermediate_size": 64,
    "num_hidden_layers": TINY_GEMMA_LAYERS,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "max_position_embeddings": 8192,  # the expansion system prompt is ~3k byte tokens
    "sliding_window": 64,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "bos_token_id": 2,
}

# Gemma's turn markers, in plain text: the byte tokenizer has no special tokens for them.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

# LTX-2.3 at real size (diffusers' conversion script, version "2.3").
REAL_TRANSFORMER_CONFIG: dict[str, Any] = {
    "gated_attn": True,
    "cross_attn_mod": True,
    "audio_gated_attn": True,
    "audio_cross_attn_mod": True,
    "rope_type": "split",
    "use_prompt_embeddings": False,
    "perturbed_attn": True,
}
REAL_CONNECTORS_CONFIG: dict[str, Any] = {
    "video_connector_num_attention_heads": 32,
    "video_connector_num_layers": 8,
    "video_gated_attn": True,
    "audio_connector_num_attention_heads": 32,
    "audio_connector_attention_head_dim": 64,
    "audio_connector_num_layers": 8,
    "audio_gated_attn": True,
    "rope_type": "split",
    "per_modality_projections": True,
    "proj_bias": True,
}
REAL_VIDEO_VAE_CONFIG: dict[str, Any] = {
    **TINY_VIDEO_VAE_CONFIG,
    "block_out_channels": (256, 512, 1024, 1024),
    "decoder_block_out_channels": (256, 512, 512, 1024),
    "layers_per_block": (4, 6, 4, 2, 2),
    "decoder_layers_per_block": (4, 6, 4, 2, 2),
}


@dataclass(eq=False)
class Ltx2Models:
    """The torch modules of one LTX-2.3 config. `lock` serializes jobs (LoRA adapters mutate them)."""

    transformer: LTX2VideoTransformer3DModel
    connectors: LTX2TextConnectors
    text_encoder: torch.nn.Module  # Gemma-3: a text model, or the conditional-generation model for expansion
    tokenizer: PreTrainedTokenizerBase
    vae: AutoencoderKLLTX2Video
    audio_vae: AutoencoderKLLTX2Audio
    vocoder: LTX2VocoderWithBWE
    upsampler: LTX2LatentUpsamplerModel | None
    text_max_length: int
    stg_blocks: tuple[int, ...]  # transformer blocks whose self-attention STG perturbs
    distilled_lora: str | None = None  # path of the distilled LoRA (safetensors), if installed
    camera_lora_dir: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype


# 2.3's STG block (ltx-pipelines constants: stg_blocks=[28]); the tiny preset perturbs its last block.
# `Ltx2ModelConfig.stg_blocks` / `.text_max_length` default to these for the ltx-2.3 preset.
REAL_STG_BLOCKS = (28,)
DISTILLED_LORA_FILE = "ltx-2.3-22b-distilled-lora-384-1.1.safetensors"  # looked for in model_dir

_cache: dict[Ltx2ModelConfig, Ltx2Models] = {}
_cache_lock = threading.Lock()


def load_ltx2_models(cfg: Ltx2ModelConfig) -> Ltx2Models:
    """The models of `cfg`, built or loaded once per process and config."""
    with _cache_lock:
        if cfg not in _cache:
            started = time.monotonic()
            if cfg.preset == Ltx2Preset.TINY:
                models = build_tiny_ltx2(cfg.seed, torch.device(cfg.device), torch_dtype(cfg.dtype))
            elif cfg.preset == Ltx2Preset.LTX_23:
                models = _load_checkpoint(cfg)
            else:
                raise ValueError(f"ltx2.preset: {cfg.preset!r} is not one of tiny-ltx2, ltx-2.3, none")
            models.distilled_lora = cfg.distilled_lora or models.distilled_lora
            models.camera_lora_dir = cfg.camera_lora_dir
            _cache[cfg] = models
            logger.info("loaded LTX-2.3 preset %s in %.2f s", cfg.preset, time.monotonic() - started)
        return _cache[cfg]


def build_tiny_ltx2(
    seed: int = 0, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> Ltx2Models:
    """Seeded random weights in the 2.3 layout; a few seconds on a CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stats = torch.Generator().manual_seed(seed)
        # A causal LM (not the bare text model), so that it can also expand prompts as the real Gemma does.
        text_encoder = Gemma3ForCausalLM(
            Gemma3TextConfig(vocab_size=byte_tokenizer_vocab_size(), **TINY_GEMMA_CONFIG)
        )
        connectors = LTX2TextConnectors(**TINY_CONNECTORS_CONFIG)
        transformer = LTX2VideoTransformer3DModel(**TINY_TRANSFORMER_CONFIG)
        vae = AutoencoderKLLTX2Video(**TINY_VIDEO_VAE_CONFIG)
        audio_vae = AutoencoderKLLTX2Audio(**TINY_AUDIO_VAE_CONFIG)
        vocoder = LTX2VocoderWithBWE(**TINY_VOCODER_CONFIG)
        upsampler = LTX2LatentUpsamplerModel(**TINY_UPSAMPLER_CONFIG)
        _tiny_statistics(vae, audio_vae, stats)
    tokenizer = build_byte_tokenizer(TINY_TEXT_MAX_LENGTH)
    tokenizer.padding_side = "left"
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    place = _placer(device or torch.device("cpu"), dtype)
    return Ltx2Models(
        transformer=place(transformer),
        connectors=place(connectors),
        text_encoder=place(text_encoder),
        tokenizer=tokenizer,
        vae=place(vae),
        audio_vae=place(audio_vae),
        vocoder=place(vocoder),
        upsampler=place(upsampler),
        text_max_length=TINY_TEXT_MAX_LENGTH,
        stg_blocks=(TINY_TRANSFORMER_CONFIG["num_layers"] - 1,),
    )


def _tiny_statistics(
    vae: AutoencoderKLLTX2Video, audio_vae: AutoencoderKLLTX2Audio, g: torch.Generator
) -> None:
    # Non-trivial latent statistics, so that (de)normalisation is exercised as with real weights. The audio
    # VAE's buffers are sized `base_channels` but apply to packed tokens of latent_channels * mel_bins / 4
    # features; the two agree only at real size (128), so the tiny preset re-registers them at 128.
    vae.latents_mean.copy_(0.1 * torch.randn(vae.latents_mean.shape, generator=g))
    vae.latents_std.copy_(1.0 + 0.1 * torch.rand(vae.latents_std.shape, generator=g))
    features = int(audio_vae.config["latent_channels"]) * int(audio_vae.config["mel_bins"]) // 4
    audio_vae.register_buffer("latents_mean", 0.1 * torch.randn(features, generator=g), persistent=True)
    audio_vae.register_buffer("latents_std", 1.0 + 0.1 * torch.rand(features, generator=g), persistent=True)


def build_ltx2_at_real_shapes(device: str = "meta") -> dict[str, torch.nn.Module]:
    """The LTX-2.3 transformer, connectors, VAE, audio VAE, vocoder and upsampler at real size, without
    weights on `meta` (FLOP and memory planning) or uninitialised on a device (speed benchmarks)."""
    with torch.device(device):
        return {
            "transformer": LTX2VideoTransformer3DModel(**REAL_TRANSFORMER_CONFIG),
            "connectors": LTX2TextConnectors(**REAL_CONNECTORS_CONFIG),
            "vae": AutoencoderKLLTX2Video(
                **REAL_VIDEO_VAE_CONFIG | {"block_out_channels": (256, 512, 1024, 1024)}
            ),
            "audio_vae": AutoencoderKLLTX2Audio(),
            "vocoder": LTX2VocoderWithBWE(),
            "upsampler": LTX2LatentUpsamplerModel(),
        }


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"ltx2.dtype: {name!r} is not one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def _placer(device: torch.device, dtype: torch.dtype) -> Any:
    def place(module: ModuleT) -> ModuleT:
        module.to(device)
        if dtype != torch.float32:  # diffusers warns on any `.to(dtype)`, even a no-op one
            module.to(dtype)
        return module.eval()

    return place


def _load_checkpoint(cfg: Ltx2ModelConfig) -> Ltx2Models:
    """Real LTX-2.3 weights: a diffusers-layout directory (`model_dir`), or the transformer from the original
    single file (`single_file`) with its config and every other part in diffusers layout at `config_dir`."""
    dtype, device = torch_dtype(cfg.dtype), torch.device(cfg.device)
    root = _require_dir(cfg.model_dir or cfg.config_dir, "ltx2.model_dir")
    if cfg.single_file:
        _require_diffusers_vaes(Path(root))
    kwargs: dict[str, Any] = {"local_files_only": True, "torch_dtype": dtype}
    parts = {
        "transformer": LTX2VideoTransformer3DModel,
        "connectors": LTX2TextConnectors,
        "vae": AutoencoderKLLTX2Video,
        "audio_vae": AutoencoderKLLTX2Audio,
        "vocoder": LTX2VocoderWithBWE,
    }
    loaded: dict[str, Any] = {}
    for name, cls in parts.items():
        loaded[name] = _load_part(cls, cfg, root, name, kwargs)
    stg_blocks = checked_stg_blocks(cfg.stg_blocks, len(loaded["transformer"].transformer_blocks))
    upsampler_dir = cfg.upsampler_dir or str(Path(root) / "latent_upsampler")
    upsampler = (
        LTX2LatentUpsamplerModel.from_pretrained(upsampler_dir, **kwargs)
        if Path(upsampler_dir).is_dir()
        else None
    )
    distilled = Path(root) / DISTILLED_LORA_FILE
    place = _placer(device, torch.float32)  # already in `dtype`
    return Ltx2Models(
        transformer=place(loaded["transformer"]),
        connectors=place(loaded["connectors"]),
        text_encoder=place(_load_gemma(root, dtype)),
        tokenizer=load_ltx2_tokenizer(root),
        vae=place(loaded["vae"]),
        audio_vae=place(loaded["audio_vae"]),
        vocoder=place(loaded["vocoder"]),
        upsampler=place(upsampler) if upsampler is not None else None,
        text_max_length=cfg.text_max_length,
        stg_blocks=stg_blocks,
        distilled_lora=str(distilled) if distilled.is_file() else None,
    )


def _load_gemma(root: str, dtype: torch.dtype) -> torch.nn.Module:
    # The multimodal Gemma-3 the real checkpoint ships (its vision tower unused by text prompts): the
    # same class can expand prompts, and its language model's hidden states are what LTX-2.3 was trained on.
    from transformers import Gemma3ForConditionalGeneration

    return Gemma3ForConditionalGeneration.from_pretrained(
        root, subfolder="text_encoder", local_files_only=True, dtype=dtype
    )


def load_ltx2_tokenizer(root: str) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(root, subfolder="tokenizer", local_files_only=True)
    tokenizer.padding_side = "left"  # LTX2Pipeline left-pads prompts; the connectors assume it
    return tokenizer


def checked_stg_blocks(blocks: tuple[int, ...], depth: int) -> tuple[int, ...]:
    if not blocks or any(not 0 <= block < depth for block in blocks):
        raise ValueError(
            f"ltx2.stg_blocks: {list(blocks)} must be block indices in [0, {depth}) "
            f"(the transformer has {depth} block{'s' if depth != 1 else ''})"
        )
    return tuple(blocks)


# From the original single file, with diffusers 0.42.1: the transformer only. Its video VAE key table
# (convert_ltx2_vae_to_diffusers) stops at the 2.0 decoder's three stages, so the 2.3 VAE's fourth would stay
# unconverted, and AutoencoderKLLTX2Audio has no `from_single_file`: both VAEs come from `config_dir` in
# diffusers layout.
SINGLE_FILE_PARTS = ("transformer",)
DIFFUSERS_LAYOUT_VAES = ("vae", "audio_vae")


def _load_part(cls: Any, cfg: Ltx2ModelConfig, root: str, name: str, kwargs: dict[str, Any]) -> Any:
    if cfg.single_file and name in SINGLE_FILE_PARTS:
        return cls.from_single_file(cfg.single_file, config=root, subfolder=name, **kwargs)
    if name == "audio_vae":
        return _load_audio_vae(Path(root) / name, kwargs["torch_dtype"])
    return cls.from_pretrained(root, subfolder=name, **kwargs)


def _load_audio_vae(folder: Path, dtype: torch.dtype) -> AutoencoderKLLTX2Audio:
    """The audio VAE with its latent statistics at the size they were saved: diffusers sizes the buffers
    `base_channels`, the pipeline applies them to packed tokens of latent_channels * mel_bins / 4 features;
    the two agree at real size (128) only, and a smaller model in this layout (the tiny preset) saves them
    at the packed size. Every other tensor must match the config exactly (strict load)."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"ltx2.model_dir: no safetensors weights in {folder}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state |= load_file(str(file))
    vae = AutoencoderKLLTX2Audio.from_config(
        AutoencoderKLLTX2Audio.load_config(folder, local_files_only=True)
    )
    for buffer in ("latents_mean", "latents_std"):
        if buffer in state:
            vae.register_buffer(buffer, torch.empty_like(state[buffer]), persistent=True)
    vae.load_state_dict(state, strict=True)
    return vae.to(dtype) if dtype != torch.float32 else vae


def _require_diffusers_vaes(root: Path) -> None:
    for name in DIFFUSERS_LAYOUT_VAES:
        if not any((root / name).glob("*.safetensors")):
            raise ValueError(
                f"ltx2.single_file: diffusers cannot convert the 2.3 {name} from the original file (see "
                f"SINGLE_FILE_PARTS); put it in diffusers layout at {root / name}"
            )


def _require_dir(path: str | None, setting: str) -> str:
    if not path or not Path(path).is_dir():
        raise ValueError(f"{setting}: {path!r} is not a directory (the ltx-2.3 preset needs local weights)")
    return path
