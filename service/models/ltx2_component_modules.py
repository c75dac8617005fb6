"""The torch modules behind the LTX-2.3 component declarations (service/contract/ltx2_components.py).

Each `*Adapter` has exactly its component's tensor contract; `ltx2_component_module` wraps it in
`Ltx2DeclaredIO` (declared fp32 inputs and outputs whatever the model dtype). That module is what ONNX export
traces, what the Triton component models run on the CPU, and what the in-process bindings
(ltx2_bindings.py) call, so the three compute the same numbers.

STG and modality isolation are tensors (`stg_*`, `isolate_modalities`), for graphs with one signature.
Run eagerly the adapter takes the exact shortcuts diffusers takes (no wrapper when nothing is perturbed,
`isolate_modalities` as diffusers' own flag); traced or exported it always runs the tensor form:
  - self-attention of block b, modality m, row r: lerp(value, attention, keep) with keep = 0 where
    stg_skip_blocks[b] & stg_m & stg_rows[r], else 1 (torch.lerp returns either end exactly, so the
    unperturbed rows are bit for bit diffusers' plain attention);
  - audio<->video cross-attention outputs times (1 - isolate_modalities).
`distilled_lora_scale` (text encoder, transformer; Python backend only) sets the resident distilled
LoRA's peft scale before the call, a side effect no trace records: export leaves it out (`graph_inputs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline
from torch import nn

from service.config import Ltx2ModelConfig
from service.contract.ltx2_components import (
    Ltx2ComponentDecl,
    Ltx2Geometry,
)
from service.contract.tensors import TensorDecl, TensorType
from service.models.ltx2 import Ltx2Models

# `timestep` is already sigma * 1000 (diffusers' training scale; the pipeline computes it in float64 as
# LTX2Pipeline does), so the adapter passes it through unchanged.
DISTILLED_ADAPTER = "distilled"  # = service.models.ltx2_loras.DISTILLED


def ltx2_geometry(models: Ltx2Models) -> Ltx2Geometry:
    """The weight-free facts of `models` (tiny or real)."""
    transformer, audio_vae, vocoder = models.transformer, models.audio_vae, models.vocoder
    config = transformer.config
    return Ltx2Geometry(
        latent_channels=int(config["in_channels"]),
        spatial_compression=int(models.vae.spatial_compression_ratio),
        temporal_compression=int(models.vae.temporal_compression_ratio),
        patch_size=int(config["patch_size"]),
        patch_size_t=int(config["patch_size_t"]),
        audio_latent_channels=int(audio_vae.config["latent_channels"]),
        audio_mel_bins=int(audio_vae.config["mel_bins"]),
        audio_mel_compression=int(audio_vae.mel_compression_ratio),
        audio_temporal_compression=int(audio_vae.temporal_compression_ratio),
        audio_sample_rate=int(audio_vae.config["sample_rate"]),
        audio_hop_length=int(audio_vae.config["mel_hop_length"]),
        output_sample_rate=int(vocoder.config["output_sampling_rate"]),
        output_audio_channels=int(vocoder.config.get("out_channels", 2)),
        text_max_length=models.text_max_length,
        video_context_dim=int(config["cross_attention_dim"]),
        audio_context_dim=int(config["audio_cross_attention_dim"]),
        transformer_blocks=len(transformer.transformer_blocks),
        stg_blocks=tuple(models.stg_blocks),
        rope_causal_offset=int(transformer.rope.causal_offset),
    )


def load_ltx2_assets(cfg: Ltx2ModelConfig) -> tuple[Ltx2Geometry, Any]:
    """The geometry and tokenizer of `cfg`'s models for `ltx_pipeline`, which holds no weight: the tiny
    preset is built (seconds); a real checkpoint's modules are built from its configs on `meta`."""
    from service.models.ltx2 import Ltx2Preset, load_ltx2_models

    if cfg.preset == Ltx2Preset.TINY:
        models = load_ltx2_models(cfg)
        return ltx2_geometry(models), models.tokenizer
    return _real_assets(cfg)


def _real_assets(cfg: Ltx2ModelConfig) -> tuple[Ltx2Geometry, Any]:
    from diffusers.models.autoencoders.autoencoder_kl_ltx2 import AutoencoderKLLTX2Video
    from diffusers.models.autoencoders.autoencoder_kl_ltx2_audio import AutoencoderKLLTX2Audio
    from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE

    from service.models.ltx2 import checked_stg_blocks, load_ltx2_tokenizer

    root = cfg.model_dir or cfg.config_dir
    if not root:
        raise ValueError("ltx2.model_dir: the ltx-2.3 preset needs a local directory")
    parts: dict[str, Any] = {}
    with torch.device("meta"):
        for name, cls in (
            ("transformer", LTX2VideoTransformer3DModel),
            ("vae", AutoencoderKLLTX2Video),
            ("audio_vae", AutoencoderKLLTX2Audio),
            ("vocoder", LTX2VocoderWithBWE),
        ):
            parts[name] = cls.from_config(cls.load_config(root, subfolder=name, local_files_only=True))
    tokenizer = load_ltx2_tokenizer(root)  # left padding, as the in-process loader sets it
    stg_blocks = checked_stg_blocks(cfg.stg_blocks, len(parts["transformer"].transformer_blocks))
    models: Any = Ltx2Models(
        text_encoder=nn.Identity(), connectors=nn.Identity(), tokenizer=tokenizer, upsampler=None,  # type: ignore[arg-type]
        text_max_length=cfg.text_max_length, stg_blocks=stg_blocks, **parts,
    )  # fmt: skip
    return ltx2_geometry(models), tokenizer


def _tracing() -> bool:
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def set_distilled_scale(module: nn.Module, scale: float) -> None:
    """The resident distilled LoRA at `scale` on `module` (0: adapters off, no FLOPs), as
    ltx2_loras.set_stage_adapters does when it is the only adapter."""
    if DISTILLED_ADAPTER not in (getattr(module, "peft_config", None) or {}):
        return
    if scale == 0:
        module.disable_adapters()  # type: ignore[operator]
    else:
        module.enable_adapters()  # type: ignore[operator]
        module.set_adapters([DISTILLED_ADAPTER], weights=[scale])  # type: ignore[operator]


class Ltx2TextEncoderAdapter(nn.Module):
    """input_ids, attention_mask [, distilled_lora_scale] -> video_context, audio_context, context_mask:
    Gemma-3's hidden states of every layer, stacked as `LTX2Pipeline._get_gemma_prompt_embeds` does, through
    the text connectors (left padding)."""

    def __init__(self, text_encoder: nn.Module, connectors: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder
        self.connectors = connectors

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        distilled_lora_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if distilled_lora_scale is not None:
            set_distilled_scale(self.connectors, float(distilled_lora_scale.reshape(-1)[0]))
        outputs = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        dtype = next(self.text_encoder.parameters()).dtype
        embeds = torch.stack(outputs.hidden_states, dim=-1).flatten(2, 3).to(dtype=dtype)
        video, audio, mask = self.connectors(embeds, attention_mask, padding_side="left")
        return video, audio, mask


class _MaskedSelfAttention:
    """Wraps an LTX-2 attention processor: lerp(value, attention, keep) per row (keep [B, 1, 1])."""

    def __init__(self, inner: Any, keep: torch.Tensor) -> None:
        self.inner = inner
        self.keep = keep

    # Explicit parameters: diffusers drops the keyword arguments a processor's signature does not name.
    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        query_rotary_emb: Any = None,
        key_rotary_emb: Any = None,
        perturbation_mask: torch.Tensor | None = None,
        all_perturbed: bool | None = None,
    ) -> torch.Tensor:
        output: torch.Tensor = self.inner(
            attn,
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            attention_mask=attention_mask,
            query_rotary_emb=query_rotary_emb,
            key_rotary_emb=key_rotary_emb,
            perturbation_mask=self.keep.to(hidden_states.dtype),
            all_perturbed=False,
        )
        return output


class _ScaledOutput:
    """Wraps an attention processor: its output times `factor` (1 - isolate_modalities)."""

    def __init__(self, inner: Any, factor: torch.Tensor) -> None:
        self.inner = inner
        self.factor = factor

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        query_rotary_emb: Any = None,
        key_rotary_emb: Any = None,
    ) -> torch.Tensor:
        output: torch.Tensor = self.inner(
            attn,
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            attention_mask=attention_mask,
            query_rotary_emb=query_rotary_emb,
            key_rotary_emb=key_rotary_emb,
        )
        return output * self.factor.to(output.dtype)


def _masked(keep: torch.Tensor) -> Callable[[Any], Any]:
    return lambda inner: _MaskedSelfAttention(inner, keep)


def _scaled(factor: torch.Tensor) -> Callable[[Any], Any]:
    return lambda inner: _ScaledOutput(inner, factor)


@contextmanager
def _wrapped(pairs: list[tuple[Any, Callable[[Any], Any]]]) -> Iterator[None]:
    """Swap each attention's processor for wrap(processor) for the duration (one call at a time)."""
    saved = [(attention, attention.processor) for attention, _ in pairs]
    try:
        for attention, wrap in pairs:
            attention.processor = wrap(attention.processor)
        yield
    finally:
        for attention, processor in saved:
            attention.processor = processor


class Ltx2TransformerAdapter(nn.Module):
    """The declared transformer call -> (velocity, audio_velocity), on diffusers' LTX2VideoTransformer3DModel."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(
        self,
        hidden_states: torch.Tensor,
        audio_hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        audio_encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        timestep: torch.Tensor,
        video_coords: torch.Tensor,
        audio_coords: torch.Tensor,
        stg_skip_blocks: torch.Tensor | None = None,
        stg_rows: torch.Tensor | None = None,
        stg_video: torch.Tensor | None = None,
        stg_audio: torch.Tensor | None = None,
        isolate_modalities: torch.Tensor | None = None,
        distilled_lora_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if distilled_lora_scale is not None:
            set_distilled_scale(self.transformer, float(distilled_lora_scale.reshape(-1)[0]))
        tracing = _tracing()
        wrappers: list[tuple[Any, Callable[[Any], Any]]] = []
        if stg_skip_blocks is not None and stg_rows is not None and (tracing or bool(stg_rows.any())):
            wrappers += self._stg_wrappers(stg_skip_blocks, stg_rows, stg_video, stg_audio, tracing)
        isolate = False
        if isolate_modalities is not None:
            if tracing:
                keep = 1 - isolate_modalities.reshape(()).to(torch.float32)
                blocks: Any = self.transformer.transformer_blocks
                wrappers += [
                    (getattr(block, name), _scaled(keep))
                    for block in blocks
                    for name in ("audio_to_video_attn", "video_to_audio_attn")
                ]
            else:
                isolate = bool(isolate_modalities.reshape(-1)[0])
        with _wrapped(wrappers):
            video, audio = self.transformer(
                hidden_states=hidden_states,
                audio_hidden_states=audio_hidden_states,
                encoder_hidden_states=encoder_hidden_states,
                audio_encoder_hidden_states=audio_encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                audio_encoder_attention_mask=encoder_attention_mask,
                timestep=timestep,
                sigma=timestep,  # LTX-2.3's cross-attention modulation reads it (as LTX2Pipeline passes it)
                video_coords=video_coords,
                audio_coords=audio_coords,
                isolate_modalities=isolate,
                use_cross_timestep=True,
                return_dict=False,
            )
        return video, audio

    def _stg_wrappers(
        self,
        skip_blocks: torch.Tensor,
        rows: torch.Tensor,
        stg_video: torch.Tensor | None,
        stg_audio: torch.Tensor | None,
        tracing: bool,
    ) -> list[tuple[Any, Callable[[Any], Any]]]:
        """Per block and modality, keep = 1 except the perturbed rows of a skipped block (the tensor form);
        eagerly, only the skipped blocks of the perturbed modalities are wrapped."""
        rows = rows.to(torch.bool).reshape(-1, 1, 1)
        wrappers: list[tuple[Any, Callable[[Any], Any]]] = []
        blocks: Any = self.transformer.transformer_blocks
        for index, block in enumerate(blocks):
            for attention, flag in ((block.attn1, stg_video), (block.audio_attn1, stg_audio)):
                on = skip_blocks[index].to(torch.bool)
                if flag is not None:
                    on = on & flag.reshape(()).to(torch.bool)
                if not tracing and not bool(on):
                    continue
                keep = (~(rows & on)).to(torch.float32)
                wrappers.append((attention, _masked(keep)))
        return wrappers


class Ltx2VaeDecoderAdapter(nn.Module):
    """Normalized latents -> video [B, 3, F, H, W] in [-1, 1] (denormalized in fp32, decoded in the VAE's dtype)."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        vae: Any = self.vae
        raw = LTX2Pipeline._denormalize_latents(
            latents, vae.latents_mean, vae.latents_std, vae.config["scaling_factor"]
        )
        dtype = next(vae.parameters()).dtype
        timestep = (
            torch.zeros(1, device=raw.device, dtype=dtype) if vae.config["timestep_conditioning"] else None
        )
        video: torch.Tensor = vae.decode(raw.to(dtype), timestep, return_dict=False)[0]
        return video


class Ltx2AudioDecoderAdapter(nn.Module):
    """Normalized packed audio latents [B, Na, Ca] -> waveform [B, channels, samples] in [-1, 1]."""

    def __init__(self, audio_vae: nn.Module, vocoder: nn.Module) -> None:
        super().__init__()
        self.audio_vae = audio_vae
        self.vocoder = vocoder

    def forward(self, audio_latents: torch.Tensor) -> torch.Tensor:
        audio_vae: Any = self.audio_vae
        raw = LTX2Pipeline._denormalize_audio_latents(
            audio_latents, audio_vae.latents_mean, audio_vae.latents_std
        )
        mel_bins = int(audio_vae.config["mel_bins"]) // int(audio_vae.mel_compression_ratio)
        raw = LTX2Pipeline._unpack_audio_latents(raw, audio_latents.shape[1], num_mel_bins=mel_bins)
        mel = audio_vae.decode(raw.to(next(audio_vae.parameters()).dtype), return_dict=False)[0]
        waveform: torch.Tensor = self.vocoder(mel.to(next(self.vocoder.parameters()).dtype))
        return waveform.float().clamp(-1, 1)


class Ltx2LatentUpsamplerAdapter(nn.Module):
    """Normalized latents -> normalized latents at twice the sides: denormalized with the video VAE's
    statistics for the upsampler (what it was trained on), normalized again after it, in fp32."""

    def __init__(self, upsampler: nn.Module, vae: nn.Module) -> None:
        super().__init__()
        self.upsampler = upsampler
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        vae: Any = self.vae
        mean, std, scale = vae.latents_mean, vae.latents_std, vae.config["scaling_factor"]
        raw = LTX2Pipeline._denormalize_latents(latents, mean, std, scale)
        upsampled = self.upsampler(raw.to(next(self.upsampler.parameters()).dtype)).float()
        normalized: torch.Tensor = LTX2Pipeline._normalize_latents(upsampled, mean, std, scale)
        return normalized


class Ltx2DeclaredIO(nn.Module):
    """Casts the declared fp32 inputs to the model's dtype (not the `keeps_fp32` ones), every output to fp32.
    Absent optional inputs may be passed as None (the in-process bindings do)."""

    def __init__(self, adapter: nn.Module, inputs: tuple[TensorDecl, ...]) -> None:
        super().__init__()
        self.adapter = adapter
        self.model_dtype = next(adapter.parameters()).dtype
        self.cast_to_model = [tensor.dtype is TensorType.FP32 and not tensor.keeps_fp32 for tensor in inputs]

    def forward(self, *inputs: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        cast = [
            x.to(self.model_dtype) if x is not None and to_model else x
            for x, to_model in zip(inputs, self.cast_to_model, strict=False)
        ]
        outputs = self.adapter(*cast)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return tuple(output if output.dtype == torch.int64 else output.float() for output in outputs)


def _upsampler(models: Ltx2Models) -> nn.Module:
    if models.upsampler is None:
        raise ValueError("ltx2_latent_upsampler: the model has no latent upsampler (ltx2.upsampler_dir)")
    return Ltx2LatentUpsamplerAdapter(models.upsampler, models.vae)


# Component name -> its adapter around the loaded models (one entry per declaration in the contract).
LTX2_ADAPTERS: dict[str, Callable[[Ltx2Models], nn.Module]] = {
    "ltx2_text_encoder": lambda models: Ltx2TextEncoderAdapter(models.text_encoder, models.connectors),
    "ltx2_transformer": lambda models: Ltx2TransformerAdapter(models.transformer),
    "ltx2_vae_decoder": lambda models: Ltx2VaeDecoderAdapter(models.vae),
    "ltx2_audio_decoder": lambda models: Ltx2AudioDecoderAdapter(models.audio_vae, models.vocoder),
    "ltx2_latent_upsampler": _upsampler,
}


def ltx2_component_module(component: Ltx2ComponentDecl, models: Ltx2Models) -> Ltx2DeclaredIO:
    """What is exported and served: the adapter (eval mode) with the declared fp32 I/O."""
    return Ltx2DeclaredIO(LTX2_ADAPTERS[component.name](models).eval(), component.inputs)
