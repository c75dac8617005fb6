"""STG perturbation on a tiny randomly initialised diffusers LTX transformer."""

from __future__ import annotations

from typing import Any, cast

import pytest
import torch
from diffusers import LTXVideoTransformer3DModel
from torch import nn

from service.models.stg_attention import StgMode, perturbed_self_attention
from service.pipelines.guidance import GuidancePass, perturbed_rows

FRAMES, HEIGHT, WIDTH, TEXT_LEN = 2, 2, 3, 4
# diffusers' class decorator hides the class (and its nn.Module base) from mypy.
_TRANSFORMER_CLASS: Any = LTXVideoTransformer3DModel


@pytest.fixture(scope="module")
def transformer() -> nn.Module:
    torch.manual_seed(0)
    model = _TRANSFORMER_CLASS(
        in_channels=8,
        out_channels=8,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=32,
    )
    return model.eval()


def _self_attention(model: nn.Module, block: int) -> Any:
    return cast(nn.ModuleList, model.transformer_blocks)[block].attn1


def _inputs(batch: int) -> dict[str, object]:
    g = torch.Generator().manual_seed(1)
    return {
        "hidden_states": torch.randn(batch, FRAMES * HEIGHT * WIDTH, 8, generator=g),
        "encoder_hidden_states": torch.randn(batch, TEXT_LEN, 32, generator=g),
        "timestep": torch.full((batch,), 500.0),
        "encoder_attention_mask": torch.ones(batch, TEXT_LEN),
        "num_frames": FRAMES,
        "height": HEIGHT,
        "width": WIDTH,
    }


def _run(model: nn.Module, inputs: dict[str, object]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


def test_empty_skip_list_changes_nothing(transformer: nn.Module) -> None:
    inputs = _inputs(2)
    baseline = _run(transformer, inputs)
    with perturbed_self_attention(transformer, [], torch.tensor([False, True])):
        out = _run(transformer, inputs)
    assert torch.equal(out, baseline)


@pytest.mark.parametrize("mode", list(StgMode))
def test_block_0_perturbs_only_the_perturbed_row(transformer: nn.Module, mode: StgMode) -> None:
    inputs = _inputs(2)
    baseline = _run(transformer, inputs)
    with perturbed_self_attention(transformer, [0], torch.tensor([False, True]), mode):
        out = _run(transformer, inputs)
    assert torch.equal(out[0], baseline[0])
    assert (out[1] - baseline[1]).abs().max().item() > 1e-3


def test_replacements_match_their_definitions(transformer: nn.Module) -> None:
    attn = _self_attention(transformer, 1)
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(2))
    rows = torch.tensor([True, False])
    with torch.no_grad():
        plain = attn(hidden_states=x)
        with perturbed_self_attention(transformer, [1], rows, StgMode.ATTENTION_VALUES):
            values = attn(hidden_states=x)
        with perturbed_self_attention(transformer, [1], rows, StgMode.ATTENTION_SKIP):
            skipped = attn(hidden_states=x)
        # Directly from the module's own layers: each token attends only to itself, or not at all.
        assert torch.allclose(values[0], attn.to_out[0](attn.to_v(x[0])), atol=1e-6)
        assert torch.allclose(skipped[0], attn.to_out[0](x[0]), atol=1e-6)
    assert torch.equal(values[1], plain[1]) and torch.equal(skipped[1], plain[1])


def test_processors_are_restored_even_on_error(transformer: nn.Module) -> None:
    before = [_self_attention(transformer, i).processor for i in range(2)]
    with (
        pytest.raises(RuntimeError, match="boom"),
        perturbed_self_attention(transformer, [0, 1], torch.tensor([True])),
    ):
        assert _self_attention(transformer, 0).processor is not before[0]
        raise RuntimeError("boom")
    assert [_self_attention(transformer, i).processor for i in range(2)] == before


def test_bad_arguments(transformer: nn.Module) -> None:
    with (
        pytest.raises(ValueError, match="out of range"),
        perturbed_self_attention(transformer, [2], torch.tensor([True])),
    ):
        pass
    with (
        perturbed_self_attention(transformer, [0], torch.tensor([True, False, True])),
        pytest.raises(ValueError, match="batch has 2"),
    ):
        _run(transformer, _inputs(2))


def test_perturbed_rows_follow_pass_order() -> None:
    passes = (GuidancePass.UNCONDITIONAL, GuidancePass.CONDITIONAL, GuidancePass.PERTURBED)
    assert perturbed_rows(passes, 2).tolist() == [False, False, False, False, True, True]
