"""FP8 (E4M3) post-training quantization of an exported fp32 ONNX graph, with NVIDIA ModelOpt.

TensorRT 10+ builds FP8 from explicit quantization: QuantizeLinear/DequantizeLinear pairs in the graph,
which ModelOpt's ONNX PTQ inserts around the GEMMs (MatMul, Gemm, Conv) with scales calibrated on sample
inputs. The graph it writes is built strongly typed like the bf16 one (export/tensorrt_build.py), so its
precision is what the graph says: FP8 GEMMs, the other ops in fp32.

Calibration uses the component's own declared sample inputs (seeded, `ExportableComponent.sample_inputs`)
at its first parity size, with max calibration on the CPU execution provider: scales from a real checkpoint
should come from real activations (pass a calibration file), but the graph and the build path are the
same. Only GEMM-heavy components benefit (the transformer); the others stay bf16.

ModelOpt is an optional extra (`pip install '.[fp8]'`): its ONNX extra pins protobuf 7 and
onnxruntime-gpu, which clash with tritonclient and the CPU onnxruntime, so the extra lists the pieces it
needs by hand.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from export.components import ExportableComponent, SampleSize
from export.parity import Tolerance

if TYPE_CHECKING:
    from service.models.loading import LoadedModels

log = logging.getLogger(__name__)

# E4M3 keeps 3 mantissa bits: each quantized operand is within 1/16 of its value, and the errors add up
# over a block's GEMMs. On the tiny transformer the simulated graph lands at ~4% of the output's scale;
# a wrong scale or a broken graph is off by the whole scale.
FP8_TOLERANCE = Tolerance(atol=2e-2, rtol=1.5e-1)
FP8_COMPONENTS = frozenset({"transformer"})


def calibration_data(
    component: ExportableComponent, models: LoadedModels, sizes: tuple[SampleSize, ...] | None = None
) -> list[dict[str, np.ndarray]]:
    """One feed per size: the component's declared sample inputs, as numpy arrays by input name."""
    feeds = []
    for size in sizes or component.parity_samples[:1]:
        inputs = component.sample_inputs(models, size)
        feeds.append({name: t.cpu().numpy() for name, t in zip(component.input_names, inputs, strict=True)})
    return feeds


def quantize_fp8(component: ExportableComponent, models: LoadedModels, fp32_onnx: Path, out: Path) -> Path:
    """Write the FP8 Q/DQ graph of `fp32_onnx` to `out`, calibrated on the component's samples."""
    if component.name not in FP8_COMPONENTS:
        raise ValueError(
            f"fp8 is for the GEMM-heavy components {sorted(FP8_COMPONENTS)}, not {component.name}"
        )
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as missing:
        raise RuntimeError("fp8 needs NVIDIA ModelOpt: pip install '.[fp8]'") from missing
    # Batch 1: ModelOpt splits every calibration array along its first axis as if it were the batch, which
    # would cut fixed-size inputs such as the transformer's stg_skip_blocks at any other batch.
    sample = component.parity_samples[0]._replace(batch=1)
    (feed,) = calibration_data(component, models, (sample,))
    out.parent.mkdir(parents=True, exist_ok=True)
    quantize(
        str(fp32_onnx),
        quantize_mode="fp8",
        calibration_data=feed,
        calibration_method="max",
        calibration_eps=["cpu"],
        high_precision_dtype="fp32",
        output_path=str(out),
    )
    log.info("quantized %s to fp8: %s (%d Q/DQ pairs)", component.name, out, count_fp8_quantizers(out))
    return out


def count_fp8_quantizers(onnx_path: Path) -> int:
    """QuantizeLinear nodes whose zero point is FLOAT8E4M3FN: how many tensors the graph quantizes."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    fp8_initializers = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT8E4M3FN}
    return sum(
        1
        for node in graph.node
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in fp8_initializers
    )
