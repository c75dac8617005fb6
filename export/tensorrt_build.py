"""ONNX -> TensorRT plan, and running a plan on torch CUDA buffers (GPU only; needs `tensorrt`).

Precision lives in the ONNX graph: TensorRT 11 removed the weak-typing flags (BuilderFlag.FP16/BF16/FP8),
and 10.x deprecated them, so a bf16 engine is built from the bf16 graph (`Precision.BF16` export) as a
strongly typed network, on both versions. FP8 is the same: an FP8 Q/DQ graph (`Precision.FP8`, quantized by
NVIDIA ModelOpt in export/fp8.py) built strongly typed.

The plan must be built with the TensorRT version of the Triton container that serves it (Triton 24.10 =
TensorRT 10.5): build inside that container, or with the matching `tensorrt` wheel.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from export.components import ExportableComponent
from service.models.component_modules import torch_dtype_of

log = logging.getLogger(__name__)


class EngineBuildError(RuntimeError):
    pass


def tensorrt_available() -> tuple[bool, str]:
    """(available, reason): a CUDA device and an importable `tensorrt` are both needed."""
    if not torch.cuda.is_available():
        return False, "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return False, f"the tensorrt Python package is not installed ({exc})"
    return True, ""


def build_engine(
    component: ExportableComponent,
    onnx_path: Path,
    plan_path: Path,
    timing_cache_path: Path,
    workspace_gib: float | None = None,
) -> Path:
    """Build `component`'s plan from `onnx_path` with its optimization profile; raise on any failure."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_strongly_typed_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise EngineBuildError(f"{component.name}: TensorRT cannot parse {onnx_path}:\n  {errors}")
    _check_network_io(component, network)
    config = builder.create_builder_config()
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 1024**3))
    profile = builder.create_optimization_profile()
    for name, (smallest, optimal, largest) in component.profile().items():
        profile.set_shape(name, smallest, optimal, largest)
    config.add_optimization_profile(profile)
    cached = timing_cache_path.read_bytes() if timing_cache_path.exists() else b""
    config.set_timing_cache(config.create_timing_cache(cached), False)
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{component.name}: TensorRT failed to build an engine (see its log above)")
    _write_atomically(plan_path, bytes(memoryview(serialized)))
    _write_atomically(timing_cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    log.info("built %s in %.0f s: %s", component.name, time.monotonic() - started, plan_path)
    return plan_path


def _strongly_typed_flags(trt: Any) -> int:
    # TensorRT 10 needs the flag for a strongly typed network; 11 is always strongly typed (flag may be gone).
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 1 << int(flag) if flag is not None else 0


def _check_network_io(component: ExportableComponent, network: Any) -> None:
    inputs = [network.get_input(index).name for index in range(network.num_inputs)]
    outputs = [network.get_output(index).name for index in range(network.num_outputs)]
    if inputs != component.input_names or outputs != component.output_names:
        raise EngineBuildError(
            f"{component.name}: network I/O {inputs} -> {outputs} differs from the declaration "
            f"{component.input_names} -> {component.output_names}"
        )


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


class EngineRunner:
    """Runs a plan on torch CUDA tensors: the component's buffers are torch allocations."""

    def __init__(self, component: ExportableComponent, plan_path: Path) -> None:
        import tensorrt as trt

        self.component = component
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if self.engine is None:
            raise EngineBuildError(f"cannot deserialize {plan_path} (built by another TensorRT version?)")
        self.context = self.engine.create_execution_context()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        device_inputs = []  # kept alive until the stream is done
        for declared, tensor in zip(self.component.inputs, inputs, strict=True):
            buffer = tensor.to("cuda", torch_dtype_of(declared.dtype)).contiguous()
            device_inputs.append(buffer)
            self.context.set_input_shape(declared.name, tuple(buffer.shape))
            self.context.set_tensor_address(declared.name, buffer.data_ptr())
        declared_output = self.component.outputs[0]
        shape = tuple(self.context.get_tensor_shape(declared_output.name))
        output = torch.empty(shape, dtype=torch_dtype_of(declared_output.dtype), device="cuda")
        self.context.set_tensor_address(declared_output.name, output.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.component.name}: TensorRT execution failed")
        stream.synchronize()
        return output
