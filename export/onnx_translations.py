"""ONNX translations of the two aten ops the dynamo exporter's torchlib gets wrong on the LTX-2.3 models.

Passed to `torch.onnx.export(custom_translation_table=...)` for every component (export/onnx_export.py):
- `aten.sort.stable` has no translation at all ("No ONNX function found"); `LTX2TextConnectors` sorts its
  attention mask stably to move the prompt's tokens in front of the learnable registers. ONNX `TopK` breaks
  ties by the lower index (opset 11+), so a full-length sorted TopK is a stable sort: the same
  translation torchlib gives the default (unstable) `aten.sort`.
- `aten.squeeze.dim` is translated to `Squeeze` unconditionally, but torch's `squeeze(dim)` is a no-op on
  an axis whose size is not 1, and ONNX `Squeeze` rejects such an axis: the LTX-2.3 transformer's
  cross-attention modulation squeezes a width axis (`audio_v2a_ca_shift.squeeze(2)`), and onnxruntime
  refuses to load the graph ("Dimension of input 2 must be 1 instead of 16").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from onnxscript import opset18

# Traced (not scripted): the ops build graph nodes from onnx_ir values, which onnxscript's typed stubs do not
# describe (they type script-mode tensors).
op: Any = opset18


def sort_stable(
    self: Any, stable: bool | None = None, dim: int = -1, descending: bool = False
) -> tuple[Any, Any]:
    """`sort(self, stable=True, dim, descending)` as a full-length TopK (index-tiebroken, hence stable)."""
    dim_size = op.Reshape(op.Gather(op.Shape(self), dim, axis=0), op.Constant(value_ints=[1]))
    values, indices = op.TopK(self, dim_size, axis=dim, largest=descending, sorted=True)
    return values, indices


def squeeze_dim(self: Any, dim: int) -> Any:
    """`squeeze(self, dim)`: Squeeze where the axis is 1, Identity where it is a known other size, and for a
    symbolic axis a Reshape that keeps it unless it is 1 at run time."""
    if self.shape is None:  # rank unknown: torchlib's own translation
        return op.Squeeze(self, op.Constant(value_ints=[dim]))
    size = self.shape[dim]
    if isinstance(size, int):
        return op.Squeeze(self, op.Constant(value_ints=[dim])) if size == 1 else op.Identity(self)
    shape = op.Shape(self)
    axes = op.Range(op.Constant(value_int=0), op.Size(shape), op.Constant(value_int=1))
    other_axis = op.Not(op.Equal(axes, op.Constant(value_int=dim % len(self.shape))))
    keep = op.Or(other_axis, op.Not(op.Equal(shape, op.Constant(value_int=1))))
    return op.Reshape(self, op.Compress(shape, keep, axis=0))


TRANSLATIONS: dict[Any, Callable[..., Any]] = {
    torch.ops.aten.sort.stable: sort_stable,
    torch.ops.aten.squeeze.dim: squeeze_dim,
}
