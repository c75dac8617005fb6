"""TensorRT engine build from the tiny components' ONNX graphs, and the plans against PyTorch (GPU only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.components import DEFAULT_COMPONENTS
from export.stages import ExportStages, Precision
from export.tensorrt_build import tensorrt_available
from service.config import ServiceConfig

AVAILABLE, WHY_NOT = tensorrt_available()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not AVAILABLE, reason=f"TensorRT engines need an NVIDIA GPU and tensorrt: {WHY_NOT}"),
]


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.BF16, Precision.FP8])
def test_engines_build_match_torch_and_are_cached(tmp_path: Path, precision: Precision) -> None:
    if precision is Precision.FP8:
        pytest.importorskip(
            "modelopt.onnx.quantization", reason="fp8 needs the [fp8] extra (NVIDIA ModelOpt)"
        )
    stages = ExportStages(ServiceConfig(), tmp_path, DEFAULT_COMPONENTS, precision=precision)

    for component in stages.components:
        plan = stages.engine(component)
        built = plan.stat().st_mtime_ns
        report = json.loads(plan.with_suffix(".parity.json").read_text())

        assert plan.stat().st_size > 0
        assert report and all(row["passed"] for row in report), report
        assert stages.engine(component) == plan and plan.stat().st_mtime_ns == built  # second run: cached
    assert list(tmp_path.glob("timing-*.cache"))
