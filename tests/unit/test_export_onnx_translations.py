"""Our ONNX translations of `aten.sort.stable` and `aten.squeeze.dim` (export/onnx_translations.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from torch.export import Dim

from export.onnx_translations import TRANSLATIONS

pytestmark = pytest.mark.timeout(120)


class FrontAlign(torch.nn.Module):
    """What LTX2TextConnectors does with its mask: valid tokens to the front, in their order."""

    def forward(self, mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        order = torch.argsort(1 - mask, dim=1, stable=True)
        return torch.gather(values, 1, order)


class Squeezes(torch.nn.Module):
    """squeeze(2) on a width axis (a no-op in torch) and squeeze(1) on an axis that is 1."""

    def forward(self, wide: torch.Tensor, single: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return wide.squeeze(2) * 2, single.squeeze(1) + 1


def _session(
    module: torch.nn.Module, sample: tuple[torch.Tensor, ...], path: Path
) -> onnxruntime.InferenceSession:
    dynamic = tuple({0: Dim.AUTO} for _ in sample)
    program = torch.export.export(module, sample, dynamic_shapes=dynamic)
    torch.onnx.export(program, (), str(path), dynamo=True, custom_translation_table=TRANSLATIONS)
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session: onnxruntime.InferenceSession, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    feed = {value.name: tensor.numpy() for value, tensor in zip(session.get_inputs(), inputs, strict=True)}
    return list(session.run(None, feed))


def test_stable_sort_keeps_the_order_of_ties(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    masks = [(torch.rand(batch, 64, generator=generator) > 0.5).int() for batch in (3, 2)]
    # Distinct values in position order: any reordering of ties shows in the output.
    values = [torch.arange(mask.numel(), dtype=torch.float32).reshape(mask.shape) for mask in masks]
    session = _session(FrontAlign(), (masks[0], values[0]), tmp_path / "sort.onnx")

    for mask, value in zip(masks, values, strict=True):
        (actual,) = _run(session, (mask, value))
        expected = FrontAlign()(mask, value).numpy()
        np.testing.assert_array_equal(actual, expected)
        assert not np.array_equal(actual, value.numpy())  # the sort did move tokens


def test_squeeze_of_an_axis_that_is_not_one_is_a_no_op(tmp_path: Path) -> None:
    sample = (torch.randn(2, 3, 16), torch.randn(2, 1, 4))
    session = _session(Squeezes(), sample, tmp_path / "squeeze.onnx")  # torchlib's own: refused at load

    for inputs in (sample, (torch.randn(1, 3, 16), torch.randn(1, 1, 4))):
        wide, single = _run(session, inputs)
        expected_wide, expected_single = Squeezes()(*inputs)
        assert wide.shape == tuple(expected_wide.shape) == (inputs[0].shape[0], 3, 16)
        assert single.shape == tuple(expected_single.shape) == (inputs[1].shape[0], 4)
        np.testing.assert_allclose(wide, expected_wide.numpy(), rtol=0, atol=0)
        np.testing.assert_allclose(single, expected_single.numpy(), rtol=0, atol=0)
