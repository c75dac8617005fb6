"""Does the ONNX graph compute what the PyTorch module computes? onnxruntime on CPU against torch.

Each component runs at each of its `parity_samples` sizes (the export sample and a different one, so a graph
that silently baked in a sample shape fails; the VAE encoder also at one frame, an image condition). Reported per output and size:
  max_abs  the largest |onnx - torch|
  max_rel  max_abs / max|torch|: the error relative to the output's scale (element-wise relative error is
           meaningless where the reference crosses zero)
A check passes when max_abs <= atol + rtol * max|torch|.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.components import ExportableComponent, SampleSize
from export.shapes import FP32_TOLERANCE, Tolerance

__all__ = ["FP32_TOLERANCE", "ParityError", "ParityResult", "Tolerance", "check_parity", "compare"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParityResult:
    component: str
    output: str
    size: SampleSize
    max_abs: float
    max_rel: float
    reference_scale: float
    tolerance: Tolerance

    @property
    def passed(self) -> bool:
        return self.max_abs <= self.tolerance.atol + self.tolerance.rtol * self.reference_scale

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"{self.component}.{self.output} at {tuple(self.size)}: max_abs={self.max_abs:.3g} "
            f"max_rel={self.max_rel:.3g} (atol={self.tolerance.atol:g}, rtol={self.tolerance.rtol:g}) {verdict}"
        )


class ParityError(RuntimeError):
    pass


def check_parity(
    component: ExportableComponent[Any],
    models: Any,
    onnx_path: Path,
    tolerance: Tolerance | None = None,
    sizes: tuple[SampleSize, ...] | None = None,
    optimize: bool = True,
) -> list[ParityResult]:
    """Compare the graph at `onnx_path` with the torch module on each of `sizes` (default: the component's
    `parity_samples`), every output, within `tolerance` (default: the component's fp32 one); log every
    result. `models` are the component family's loaded models. `optimize=False` runs the graph node by node:
    onnxruntime's CPU optimizer fuses Q/DQ pairs into integer kernels that refuse FP8 (export/fp8.py)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    if not optimize:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    module = component.module(models)
    results = []
    for size in sizes or component.parity_samples:
        inputs = component.sample_inputs(models, size)
        with torch.no_grad():
            outputs = module(*inputs)
        expected = (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)
        names = component.exported_input_names
        feed = {name: tensor.cpu().numpy() for name, tensor in zip(names, inputs, strict=True)}
        actual = session.run(component.output_names, feed)
        for output, reference, graph in zip(component.output_names, expected, actual, strict=True):
            reference_np = reference.float().cpu().numpy()
            results.append(
                compare(component, size, reference_np, graph, tolerance or component.tolerance, output)
            )
    for result in results:
        (log.info if result.passed else log.error)("parity %s", result.line())
    return results


def require_parity(results: list[ParityResult]) -> None:
    failed = [result.line() for result in results if not result.passed]
    if failed:
        raise ParityError("ONNX and PyTorch disagree:\n  " + "\n  ".join(failed))


def compare(
    component: ExportableComponent[Any],
    size: SampleSize,
    expected: np.ndarray,
    actual: np.ndarray,
    tolerance: Tolerance,
    output: str | None = None,
) -> ParityResult:
    """One output (default: the first) of `component` at `size`, graph (`actual`) against torch."""
    output = output or component.output_names[0]
    if actual.shape != expected.shape:
        raise ParityError(
            f"{component.name}.{output} at {tuple(size)}: ONNX shape {actual.shape} != torch {expected.shape}"
        )
    max_abs = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
    scale = float(np.max(np.abs(expected)))
    return ParityResult(
        component=component.name,
        output=output,
        size=size,
        max_abs=max_abs,
        max_rel=max_abs / scale if scale > 0 else max_abs,
        reference_scale=scale,
        tolerance=tolerance,
    )
