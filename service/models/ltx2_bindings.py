"""The LTX-2.3 component Protocols (service/pipelines/ltx2/components.py) bound to torch in this process.

Each binding calls its component's `Ltx2DeclaredIO` module (ltx2_component_modules.py): the module the
Triton component models run and ONNX export traces. Matched structurally: models does not import pipelines.
LoRA adapters are the engine's business here (ltx2_loras.set_stage_adapters mutates the shared modules), so
the bindings never send `distilled_lora_scale`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from service.contract.ltx2_components import Ltx2Perturbation, Ltx2TextContext
from service.models.ltx2_component_modules import Ltx2DeclaredIO


def tokenize_ltx2(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_length: int
) -> dict[str, torch.Tensor]:
    """Prompts -> {input_ids, attention_mask} [B, max_length] int64, left-padded, as
    `LTX2Pipeline._get_gemma_prompt_embeds` tokenizes (stripped, truncated, special tokens added)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokens = tokenizer(
        [p.strip() for p in prompts],
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    return {"input_ids": tokens["input_ids"].long(), "attention_mask": tokens["attention_mask"].long()}


def stg_tensors(
    perturbation: Ltx2Perturbation | None, num_blocks: int, batch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The transformer's stg_skip_blocks [blocks], stg_rows [B], stg_video [1], stg_audio [1] (all false
    without a perturbation)."""
    skip_blocks = torch.zeros(num_blocks, dtype=torch.bool)
    rows = torch.zeros(batch, dtype=torch.bool)
    video = torch.zeros(1, dtype=torch.bool)
    audio = torch.zeros(1, dtype=torch.bool)
    if perturbation is not None:
        skip_blocks[list(perturbation.skip_blocks)] = True
        rows = perturbation.rows.to("cpu", torch.bool).reshape(batch)
        video[0], audio[0] = perturbation.video, perturbation.audio
    return skip_blocks, rows, video, audio


class _Bound:
    def __init__(self, module: Ltx2DeclaredIO) -> None:
        self.module = module
        self.device = next(module.parameters()).device

    def run(self, *inputs: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            return self.module(*(x.to(self.device) if x is not None else None for x in inputs))


class TorchLtx2TextEncoder(_Bound):
    def __init__(self, module: Ltx2DeclaredIO, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        super().__init__(module)
        self.tokenizer = tokenizer
        self.max_length = max_length

    def encode(self, prompt: str) -> Ltx2TextContext:
        tokens = tokenize_ltx2(self.tokenizer, [prompt], self.max_length)
        video, audio, mask = self.run(tokens["input_ids"], tokens["attention_mask"])
        return Ltx2TextContext(video, audio, mask)


class TorchLtx2Transformer(_Bound):
    def __init__(self, module: Ltx2DeclaredIO, num_blocks: int) -> None:
        super().__init__(module)
        self._num_blocks = num_blocks

    @property
    def num_blocks(self) -> int:
        return self._num_blocks

    def velocity(
        self,
        latents: tuple[torch.Tensor, torch.Tensor],
        context: Ltx2TextContext,
        timestep: torch.Tensor,
        coords: tuple[torch.Tensor, torch.Tensor],
        perturbation: Ltx2Perturbation | None = None,
        isolate_modalities: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        video, audio = latents
        stg: tuple[torch.Tensor | None, ...] = (None, None, None, None)
        if perturbation is not None:
            stg = stg_tensors(perturbation, self._num_blocks, video.shape[0])
        isolate = torch.tensor([isolate_modalities]) if isolate_modalities else None
        velocity, audio_velocity = self.run(
            video, audio, context.video, context.audio, context.mask, timestep, *coords, *stg, isolate
        )
        return velocity, audio_velocity


class TorchLtx2VaeDecoder(_Bound):
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.run(latents)[0]


class TorchLtx2AudioDecoder(_Bound):
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.run(latents)[0]


class TorchLtx2LatentUpsampler(_Bound):
    def upsample(self, latents: torch.Tensor) -> torch.Tensor:
        return self.run(latents)[0]
