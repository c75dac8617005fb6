"""torch -> ONNX with the dynamo exporter, checked against the component's declaration.

The legacy TorchScript exporter fails on RMSNorm and is silently wrong on LTX, so only
`torch.onnx.export(..., dynamo=True)` is used. Dynamic axes are exported as `Dim.AUTO`: named `Dim`s tie
all batch axes together before the tracer can prove the LTX attention-mask reshape, which then fails, while
AUTO lets the tracer discover the relations itself. The price is that AUTO may silently specialize an axis,
so every declared dynamic axis is checked to be symbolic in the graph, and renamed to its declared name.
Two aten ops get our own translations (export/onnx_translations.py: a stable sort, and a squeeze torchlib
emits on axes that are not 1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch.export import Dim

from export.components import EXPORT_SAMPLE, ExportableComponent, TensorDecl
from export.onnx_translations import TRANSLATIONS

log = logging.getLogger(__name__)

_ONNX_TYPES = {
    "FP32": onnx.TensorProto.FLOAT,
    "INT64": onnx.TensorProto.INT64,
    "BOOL": onnx.TensorProto.BOOL,
}


class ExportError(RuntimeError):
    """The exported graph does not match its declaration."""


def export_onnx(component: ExportableComponent[Any], models: Any, path: Path) -> Path:
    """Export `component` of `models` (its family's loaded models) to `path` (weights in `path`.data);
    returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module = component.module(models)
    sample = component.sample_inputs(models, EXPORT_SAMPLE)
    # The exported module takes its inputs as *args: one top-level argument, a tuple in `inputs` order.
    dynamic_shapes = (
        tuple(
            {index: Dim.AUTO for index in tensor.dynamic_axes} or None for tensor in component.exported_inputs
        ),
    )
    started = time.monotonic()
    with component.export_context(models), torch.no_grad():
        # torch.export first: handed AUTO dims directly, torch.onnx.export turns them back into named ones.
        program = torch.export.export(module, sample, dynamic_shapes=dynamic_shapes)
        torch.onnx.export(
            program,
            (),
            str(path),
            dynamo=True,
            input_names=component.exported_input_names,
            output_names=component.output_names,
            external_data=True,  # real transformers are far over protobuf's 2 GB limit
            custom_translation_table=TRANSLATIONS,
        )
    name_declared_axes(component, path)
    log.info("exported %s to %s in %.1f s", component.name, path, time.monotonic() - started)
    return path


def name_declared_axes(component: ExportableComponent[Any], path: Path) -> None:
    """Check the graph's inputs and outputs against the declaration and give dynamic axes their names."""
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    renames: dict[str, str] = {}
    for declared, actual in _paired(component.exported_inputs, graph.input, "input"):
        renames.update(_check_value(component.name, declared, actual))
    for declared, actual in _paired(component.outputs, graph.output, "output"):
        _check_value(component.name, declared, actual)
    # Intermediate shapes use the tracer's symbols too; rename those so the graph reads consistently.
    for value in [*graph.input, *graph.value_info, *graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]
    for declared, actual in _paired(component.outputs, graph.output, "output"):
        for index, axis in declared.dynamic_axes.items():
            actual.type.tensor_type.shape.dim[index].dim_param = axis  # outputs carry expressions
    onnx.save(model, str(path))  # external data untouched: only the graph proto is rewritten


def _paired(
    declared: tuple[TensorDecl, ...], actual: Sequence[onnx.ValueInfoProto], kind: str
) -> list[tuple[TensorDecl, onnx.ValueInfoProto]]:
    names = [value.name for value in actual]
    if names != [tensor.name for tensor in declared]:
        raise ExportError(f"graph {kind}s {names} != declared {[tensor.name for tensor in declared]}")
    return list(zip(declared, actual, strict=True))


def _check_value(component: str, declared: TensorDecl, actual: onnx.ValueInfoProto) -> dict[str, str]:
    """Raise unless `actual` has the declared dtype, rank, static sizes and dynamic axes; return the
    tracer symbol -> declared axis name of its dynamic axes."""
    tensor_type = actual.type.tensor_type
    where = f"{component}.{declared.name}"
    if tensor_type.elem_type != _ONNX_TYPES[declared.dtype.value]:
        actual_type = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise ExportError(f"{where}: dtype {actual_type}, declared {declared.dtype.value}")
    dims = list(tensor_type.shape.dim)
    if len(dims) != len(declared.axes):
        raise ExportError(f"{where}: rank {len(dims)}, declared {len(declared.axes)} ({declared.axes})")
    renames = {}
    for index, (dim, axis) in enumerate(zip(dims, declared.axes, strict=True)):
        if isinstance(axis, int) and not (dim.HasField("dim_value") and dim.dim_value == axis):
            raise ExportError(f"{where}: axis {index} is {dim}, declared static {axis}")
        if isinstance(axis, str):
            if not dim.HasField("dim_param"):
                raise ExportError(f"{where}: axis {index} ({axis}) was specialized to {dim.dim_value}")
            renames[dim.dim_param] = axis
    return renames
