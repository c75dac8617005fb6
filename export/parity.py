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
from typing import TYPE_CHECKING

import numpy as np
import torch

from export.components import ExportableComponent, SampleSize

if TYPE_CHECKING:
    from service.models.loading import LoadedModels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


# fp32 graphs on CPU: the exporter's fused and reordered ops differ from torch by float rounding only
# (observed ~1e-5 on outputs of scale ~1); anything near 1e-3 of the output's scale is a real difference.
FP32_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)


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
    component: ExportableComponent,
    models: LoadedModels,
    onnx_path: Path,
    tolerance: Tolerance = FP32_TOLERANCE,
    sizes: tuple[SampleSize, ...] | None = None,
    optimize: bool = True,
) -> list[ParityResult]:
    """Compare the graph at `onnx_path` with the torch module on each of `sizes` (default: the component's
    `parity_samples`); log every result. `optimize=False` runs the graph node by node: onnxruntime's CPU
    optimizer fuses Q/DQ pairs into integer kernels that refuse FP8 (export/fp8.py)."""
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
            expected = module(*inputs)
        feed = {
            name: tensor.cpu().numpy() for name, tensor in zip(component.input_names, inputs, strict=True)
        }
        (actual,) = session.run(component.output_names, feed)
        results.append(compare(component, size, expected.float().cpu().numpy(), actual, tolerance))
    for result in results:
        (log.info if result.passed else log.error)("parity %s", result.line())
    return results


def require_parity(results: list[ParityResult]) -> None:
    failed = [result.line() for result in results if not result.passed]
    if failed:
        raise ParityError("ONNX and PyTorch disagree:\n  " + "\n  ".join(failed))


def compare(
    component: ExportableComponent,
    size: SampleSize,
    expected: np.ndarray,
    actual: np.ndarray,
    tolerance: Tolerance,
) -> ParityResult:
    if actual.shape != expected.shape:
        raise ParityError(
            f"{component.name} at {tuple(size)}: ONNX shape {actual.shape} != torch {expected.shape}"
        )
    max_abs = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
    scale = float(np.max(np.abs(expected)))
    return ParityResult(
        component=component.name,
        output=component.output_names[0],
        size=size,
        max_abs=max_abs,
        max_rel=max_abs / scale if scale > 0 else max_abs,
        reference_scale=scale,
        tolerance=tolerance,
    )
