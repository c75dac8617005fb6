"""Torch bindings of the component Protocols: the in-process half of "one pipeline, two bindings".

Each `*Adapter` is an `nn.Module` whose `forward` has exactly the component contract (tensor names and
units of service/contract/components.py), so the same module is what ONNX export traces for Triton and
what the CPU repository's component models run (component_modules.py). Each `Torch*` class implements its
pipeline Protocol (service/pipelines/components.py, matched structurally: models does not import
pipelines): casts inputs to the module's device and dtype and runs under `torch.inference_mode()`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.models.autoencoders.autoencoder_kl_ltx import AutoencoderKLLTXVideo
from diffusers.models.transformers.transformer_ltx import LTXVideoTransformer3DModel
from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from service.contract.components import Perturbation
from service.models.stg_attention import perturbed_self_attention, perturbed_self_attention_masked

# The pipeline speaks timesteps as sigmas in [0, 1]; diffusers' LTX transformer embeds them on the
# training scale 0..1000 (its scheduler's `num_train_timesteps`), as its pipelines pass `t = sigma * 1000`.
TIMESTEP_SCALE = 1000.0


def _module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(module.parameters())
    return parameter.device, parameter.dtype


def tokenize(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_length: int
) -> dict[str, torch.Tensor]:
    """Prompts -> {input_ids, attention_mask} [B, max_length] int64, as diffusers' LTX pipelines tokenize."""
    tokens = tokenizer(
        list(prompts),
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    return {"input_ids": tokens["input_ids"].long(), "attention_mask": tokens["attention_mask"].long()}


class TextEncoderAdapter(nn.Module):
    """input_ids, attention_mask -> text_embeds (the T5 encoder's last hidden state)."""

    def __init__(self, text_encoder: PreTrainedModel) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # The mask goes into T5 as LTXConditionPipeline and the original LTX-Video code do.
        return self.text_encoder(input_ids, attention_mask=attention_mask)[0]


class TransformerAdapter(nn.Module):
    """hidden_states, timestep (sigma per token), video_coords, encoder_hidden_states, encoder_attention_mask
    [, stg_skip_blocks, stg_rows] -> velocity.

    With the two optional STG tensors (bool [num_blocks], bool [B]) the self-attention of the marked blocks
    is perturbed for the marked rows, as tensors only (`perturbed_self_attention_masked`): this is the form
    the ONNX/TensorRT graph and the Triton transformer model run.
    """

    def __init__(self, transformer: LTXVideoTransformer3DModel) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        video_coords: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        stg_skip_blocks: torch.Tensor | None = None,
        stg_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if stg_skip_blocks is None or stg_rows is None:
            return self._velocity(
                hidden_states, timestep, video_coords, encoder_hidden_states, encoder_attention_mask
            )
        with perturbed_self_attention_masked(self.transformer, stg_skip_blocks, stg_rows):
            return self._velocity(
                hidden_states, timestep, video_coords, encoder_hidden_states, encoder_attention_mask
            )

    def _velocity(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        video_coords: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        return self.transformer(
            hidden_states=hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            timestep=timestep * TIMESTEP_SCALE,
            encoder_attention_mask=encoder_attention_mask,
            video_coords=video_coords,
            return_dict=False,
        )[0]


class VaeDecoderAdapter(nn.Module):
    """latents (denormalized), decode_timestep -> video in [-1, 1]."""

    def __init__(self, vae: AutoencoderKLLTXVideo) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor, decode_timestep: torch.Tensor) -> torch.Tensor:
        # VAEs without timestep conditioning (0.9.0) take no timestep at all.
        timestep = decode_timestep if self.vae.config["timestep_conditioning"] else None
        return self.vae.decode(latents, timestep, return_dict=False)[0]


class VaeEncoderAdapter(nn.Module):
    """video in [-1, 1] -> latents (not normalized): the mode of the posterior."""

    def __init__(self, vae: AutoencoderKLLTXVideo) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(video).latent_dist.mode()


class TorchTextEncoder:
    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, text_encoder: PreTrainedModel, max_length: int
    ) -> None:
        self.tokenizer = tokenizer
        self.module = TextEncoderAdapter(text_encoder)
        self.max_length = max_length

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        device, _dtype = _module_device_dtype(self.module)
        tokens = tokenize(self.tokenizer, prompts, self.max_length)
        input_ids = tokens["input_ids"].to(device)
        attention_mask = tokens["attention_mask"].to(device)
        with torch.inference_mode():
            text_embeds = self.module(input_ids, attention_mask)
        return text_embeds, attention_mask


class TorchTransformer:
    """Binds `Transformer`, and `PerturbableTransformer` (STG) through diffusers' attention processors."""

    def __init__(self, transformer: LTXVideoTransformer3DModel) -> None:
        self.module = TransformerAdapter(transformer)

    @property
    def num_blocks(self) -> int:
        return len(self.module.transformer.transformer_blocks)

    def velocity(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        video_coords: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        perturbation: Perturbation | None = None,
    ) -> torch.Tensor:
        device, dtype = _module_device_dtype(self.module)
        skip_blocks = perturbation.skip_blocks if perturbation is not None else ()
        rows = perturbation.rows if perturbation is not None else torch.zeros(0, dtype=torch.bool)
        with torch.inference_mode(), perturbed_self_attention(self.module.transformer, skip_blocks, rows):
            return self.module(
                hidden_states.to(device, dtype),
                timestep.to(device, torch.float32),
                video_coords.to(device, torch.float32),
                encoder_hidden_states.to(device, dtype),
                encoder_attention_mask.to(device),
            )


class TorchVaeDecoder:
    def __init__(self, vae: AutoencoderKLLTXVideo) -> None:
        self.module = VaeDecoderAdapter(vae)

    def decode(self, latents: torch.Tensor, decode_timestep: torch.Tensor) -> torch.Tensor:
        device, dtype = _module_device_dtype(self.module)
        with torch.inference_mode():
            return self.module(latents.to(device, dtype), decode_timestep.to(device, dtype))


class TorchVaeEncoder:
    def __init__(self, vae: AutoencoderKLLTXVideo) -> None:
        self.module = VaeEncoderAdapter(vae)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        device, dtype = _module_device_dtype(self.module)
        with torch.inference_mode():
            return self.module(video.to(device, dtype))


class LatentUpsamplerAdapter(nn.Module):
    """latents -> latents with each spatial side doubled; both denormalized (the VAE's own latent scale),
    which is what LTX's spatial upscaler was trained on."""

    def __init__(self, upsampler: LTXLatentUpsamplerModel) -> None:
        super().__init__()
        self.upsampler = upsampler

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.upsampler(latents)


class TorchLatentUpsampler:
    def __init__(self, upsampler: LTXLatentUpsamplerModel) -> None:
        self.module = LatentUpsamplerAdapter(upsampler)

    def upsample(self, latents: torch.Tensor) -> torch.Tensor:
        device, dtype = _module_device_dtype(self.module)
        with torch.inference_mode():
            return self.module(latents.to(device, dtype))
