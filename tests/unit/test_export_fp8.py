"""FP8 export: ModelOpt's Q/DQ quantization of the tiny transformer graph, checked on onnxruntime (CPU).

The TensorRT build of that graph needs a GPU (tests/unit/test_export_tensorrt.py); the quantization and
its numerical check do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from export.fp8 import FP8_TOLERANCE, count_fp8_quantizers
from export.parity import ParityError, check_parity, require_parity
from export.stages import ExportStages, Precision
from service.config import ServiceConfig

pytest.importorskip("modelopt.onnx.quantization", reason="fp8 export needs the [fp8] extra (NVIDIA ModelOpt)")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> ExportStages:
    cache = tmp_path_factory.mktemp("fp8-cache")
    return ExportStages(ServiceConfig(), cache, ("transformer", "vae_decoder"), precision=Precision.FP8)


@pytest.fixture(scope="module")
def fp8_graph(stages: ExportStages) -> Path:
    (transformer,) = [c for c in stages.components if c.name == "transformer"]
    return stages.onnx(transformer, stages.precision_for(transformer))


def test_only_the_transformer_is_quantized(stages: ExportStages) -> None:
    by_name = {c.name: c for c in stages.components}
    assert stages.precision_for(by_name["transformer"]) is Precision.FP8
    assert stages.precision_for(by_name["vae_decoder"]) is Precision.BF16


def test_every_linear_layer_of_the_blocks_is_quantized(stages: ExportStages, fp8_graph: Path) -> None:
    blocks = stages.models().transformer.transformer_blocks
    linears = sum(isinstance(m, torch.nn.Linear) for m in blocks.modules())
    # ModelOpt quantizes both operands of each GEMM, so at least one quantizer per linear layer.
    assert count_fp8_quantizers(fp8_graph) >= linears > 0


def test_fp8_graph_is_close_to_torch_but_not_identical(stages: ExportStages, fp8_graph: Path) -> None:
    (transformer,) = [c for c in stages.components if c.name == "transformer"]
    results = check_parity(transformer, stages.models(), fp8_graph, FP8_TOLERANCE, optimize=False)
    for result in results:
        assert result.passed, result.line()
        assert result.max_abs > 1e-4, "no quantization error at all: the graph was not quantized"
    report = fp8_graph.with_suffix(".parity.json")
    assert report.exists() and fp8_graph.with_suffix(".done").exists()


def test_a_wrong_scale_fails_the_check(stages: ExportStages, fp8_graph: Path, tmp_path: Path) -> None:
    """The tolerance is tight enough to catch a broken quantization: dequantization scales off by 2x.

    Q and DQ share one scale tensor; scaling it would only coarsen the rounding. Giving the DQ side its
    own doubled copy is a real break (every quantized operand comes back twice as large)."""
    model = onnx.load(str(fp8_graph))
    scales = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and scales[node.input[1]].data_type == onnx.TensorProto.FLOAT:
            doubled = numpy_helper.to_array(scales[node.input[1]]) * np.float32(2)
            name = f"{node.input[1]}_doubled_for_{node.name}"
            model.graph.initializer.append(numpy_helper.from_array(doubled, name))
            node.input[1] = name
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    (transformer,) = [c for c in stages.components if c.name == "transformer"]
    results = check_parity(transformer, stages.models(), broken, FP8_TOLERANCE, optimize=False)
    with pytest.raises(ParityError):
        require_parity(results)


def test_fp8_stage_is_cached(stages: ExportStages, fp8_graph: Path) -> None:
    (transformer,) = [c for c in stages.components if c.name == "transformer"]
    before = fp8_graph.stat().st_mtime_ns
    assert stages.onnx(transformer, Precision.FP8) == fp8_graph
    assert fp8_graph.stat().st_mtime_ns == before
