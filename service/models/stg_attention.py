"""Spatio-temporal guidance (STG) perturbation for diffusers' `LTXVideoTransformer3DModel`.

STG runs the transformer once more with the self-attention of a few blocks "skipped", and guides away
from that prediction (service/pipelines/guidance.py). One batch usually stacks the unconditional,
conditional and perturbed passes (guidance.GuidancePass), so only the perturbed rows may be changed:
the others must come out exactly as without STG.

`perturbed_self_attention` swaps, for its duration, the self-attention (`attn1`) processor of each block
in the skip list for one that replaces the attention result of the perturbed rows, as LTX-Video's
`SkipLayerStrategy` does:
  ATTENTION_VALUES  the attention result is replaced by the values, to_out(to_v(x)): each token attends
                    only to itself. The mode of the official 13B 0.9.7 configs (`stg_mode`).
  ATTENTION_SKIP    the attention result is replaced by its input, to_out(x).
Unperturbed rows keep the wrapped processor's own output, bit for bit. The rows are chosen with a
torch.where rather than by slicing the batch, so shapes stay static (compile- and export-friendly).

`perturbed_self_attention_masked` is the same with the skip list as a tensor too (bool [num_blocks]):
every block is wrapped and perturbs the rows `rows & block_mask[i]`, with no Python branch on tensor
values, so an ONNX/TensorRT graph carries STG as two inputs. It pays the replacement's projections in
every block on every call; the in-process binding uses `perturbed_self_attention`, which wraps only the
skipped blocks. Both give the same numbers.

The swap changes the shared module, so one denoiser call at a time may use it (one job per worker).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import Any, Protocol, cast

import torch
from torch import nn

logger = logging.getLogger(__name__)


class StgMode(Enum):
    ATTENTION_VALUES = "attention_values"
    ATTENTION_SKIP = "attention_skip"


class _AttentionProcessor(Protocol):
    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
    ) -> torch.Tensor: ...


class PerturbedSelfAttentionProcessor:
    """Wraps a self-attention processor; rows marked in `perturbed` get the STG replacement instead."""

    def __init__(self, wrapped: _AttentionProcessor, mode: StgMode, perturbed: torch.Tensor) -> None:
        if perturbed.dtype != torch.bool or perturbed.ndim != 1:
            raise ValueError("perturbed must be a 1-D bool tensor, one entry per batch row")
        self.wrapped = wrapped
        self.mode = mode
        self.perturbed = perturbed

    # The signature mirrors diffusers' LTXVideoAttnProcessor: LTXAttention.forward inspects it to decide
    # which keyword arguments to pass.
    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("STG perturbs self-attention only, but got encoder_hidden_states")
        if self.perturbed.shape[0] != hidden_states.shape[0]:
            raise ValueError(
                f"perturbed marks {self.perturbed.shape[0]} rows but the batch has {hidden_states.shape[0]}"
            )
        attended = self.wrapped(attn, hidden_states, None, attention_mask, image_rotary_emb)
        replacement = self._replacement(attn, hidden_states).to(attended.dtype)
        rows = self.perturbed.to(attended.device).view(-1, *([1] * (attended.ndim - 1)))
        return torch.where(rows, replacement, attended)

    def _replacement(self, attn: Any, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.mode is StgMode.ATTENTION_VALUES:
            mixed = attn.to_v(hidden_states)
        else:
            if hidden_states.shape[-1] != attn.to_out[0].in_features:
                raise ValueError("attention skip needs the attention's inner width to equal its input width")
            mixed = hidden_states
        return attn.to_out[1](attn.to_out[0](mixed))


def _self_attention_of(transformer: nn.Module, block_index: int) -> Any:
    blocks = cast(nn.ModuleList, transformer.transformer_blocks)
    if not 0 <= block_index < len(blocks):
        raise ValueError(f"skip block {block_index} out of range: the transformer has {len(blocks)} blocks")
    return blocks[block_index].attn1


@contextmanager
def perturbed_self_attention(
    transformer: nn.Module,
    skip_blocks: Sequence[int],
    perturbed: torch.Tensor,
    mode: StgMode = StgMode.ATTENTION_VALUES,
) -> Iterator[None]:
    """Within the block, the listed blocks' self-attention is perturbed for the `perturbed` rows.

    `perturbed` is a bool [batch] tensor (guidance.perturbed_rows builds it for a pass-stacked batch).
    An empty `skip_blocks` changes nothing. The original processors are restored on exit, also on error.
    """
    attentions = {index: _self_attention_of(transformer, index) for index in sorted(set(skip_blocks))}
    originals = {index: attn.processor for index, attn in attentions.items()}
    logger.debug("STG (%s) on blocks %s", mode.value, list(attentions))
    try:
        for index, attn in attentions.items():
            attn.set_processor(PerturbedSelfAttentionProcessor(originals[index], mode, perturbed))
        yield
    finally:
        for index, attn in attentions.items():
            attn.set_processor(originals[index])


@contextmanager
def perturbed_self_attention_masked(
    transformer: nn.Module,
    block_mask: torch.Tensor,
    rows: torch.Tensor,
    mode: StgMode = StgMode.ATTENTION_VALUES,
) -> Iterator[None]:
    """`perturbed_self_attention` with the skip list as a bool [num_blocks] tensor (module docstring)."""
    blocks = cast(nn.ModuleList, transformer.transformer_blocks)
    if block_mask.dtype != torch.bool or tuple(block_mask.shape) != (len(blocks),):
        raise ValueError(
            f"block_mask must be bool [{len(blocks)}], got {block_mask.dtype} {list(block_mask.shape)}"
        )
    attentions: list[Any] = [block.attn1 for block in blocks]
    originals = [attn.processor for attn in attentions]
    try:
        for index, attn in enumerate(attentions):
            perturbed = rows & block_mask[index]
            attn.set_processor(PerturbedSelfAttentionProcessor(originals[index], mode, perturbed))
        yield
    finally:
        for attn, original in zip(attentions, originals, strict=True):
            attn.set_processor(original)
