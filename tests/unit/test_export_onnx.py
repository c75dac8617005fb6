"""ONNX export (dynamo) of each tiny component and its parity with PyTorch on onnxruntime (CPU)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from export.__main__ import main as export_main
from export.components import (
    DEFAULT_COMPONENTS,
    EXPORT_SAMPLE,
    TensorDecl,
    TensorType,
    TextEncoderComponent,
)
from export.onnx_export import ExportError, name_declared_axes
from export.parity import FP32_TOLERANCE, check_parity
from export.stages import ExportStages, Precision
from service.config import ServiceConfig

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> ExportStages:
    cache = tmp_path_factory.mktemp("export-cache")
    return ExportStages(ServiceConfig(), cache, DEFAULT_COMPONENTS, precision=Precision.FP32)


@pytest.mark.parametrize("name", DEFAULT_COMPONENTS)
def test_component_exports_with_declared_io_and_matches_torch(stages: ExportStages, name: str) -> None:
    (component,) = [c for c in stages.components if c.name == name]

    path = stages.onnx(component, Precision.FP32)
    results = check_parity(component, stages.models(), path)

    graph = onnx.load(str(path), load_external_data=False).graph
    assert [value.name for value in graph.input] == component.input_names
    assert [value.name for value in graph.output] == component.output_names
    for declared, value in zip(component.inputs, graph.input, strict=True):
        dims = [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]
        assert dims == list(declared.axes), f"{name}.{declared.name}"
    # Two sizes or more, the second unlike the export sample: the graph really has dynamic axes.
    assert len({result.size for result in results}) >= 2
    for result in results:
        assert result.max_abs <= FP32_TOLERANCE.atol + FP32_TOLERANCE.rtol * result.reference_scale, (
            result.line()
        )
        assert result.reference_scale > 0


def test_transformer_graph_carries_stg(stages: ExportStages) -> None:
    """The graph's STG inputs perturb the marked rows as the in-process binding's STG does, and only them."""
    import numpy as np
    import onnxruntime
    import torch

    from service.models.torch_components import TorchTransformer
    from service.pipelines.components import Perturbation

    (component,) = [c for c in stages.components if c.name == "transformer"]
    models = stages.models()
    inputs = component.sample_inputs(models, EXPORT_SAMPLE)
    skip_mask, rows = inputs[5], inputs[6]
    assert rows.tolist() == [False, True] and bool(skip_mask[0])  # the sample perturbs row 1 in block 0
    session = onnxruntime.InferenceSession(
        str(stages.onnx(component, Precision.FP32)), providers=["CPUExecutionProvider"]
    )

    def run_graph(*tensors: torch.Tensor) -> np.ndarray:
        feed = {name: t.numpy() for name, t in zip(component.input_names, tensors, strict=True)}
        return np.asarray(session.run(component.output_names, feed)[0])

    perturbed = run_graph(*inputs)
    plain = run_graph(*inputs[:5], torch.zeros_like(skip_mask), rows)
    binding = TorchTransformer(models.transformer)
    skip_blocks = tuple(int(i) for i in torch.nonzero(skip_mask).flatten())
    hidden, timestep, coords, encoder_states, encoder_mask = inputs[:5]
    perturbation = Perturbation(skip_blocks=skip_blocks, rows=rows)
    expected = binding.velocity(hidden, timestep, coords, encoder_states, encoder_mask, perturbation).numpy()
    expected_plain = binding.velocity(hidden, timestep, coords, encoder_states, encoder_mask).numpy()

    tolerance = FP32_TOLERANCE.atol + FP32_TOLERANCE.rtol * float(np.abs(expected).max())
    assert np.abs(perturbed - expected).max() <= tolerance
    assert np.abs(plain - expected_plain).max() <= tolerance
    assert np.abs(perturbed[0] - plain[0]).max() <= tolerance  # the unperturbed row is left alone
    # STG really changed row 1: by ~0.15 on outputs of scale ~1, where the tolerance is ~2e-3.
    assert np.abs(perturbed[1] - plain[1]).max() > 20 * tolerance


def test_export_stage_is_cached(stages: ExportStages) -> None:
    component = stages.components[0]
    path = stages.onnx(component, Precision.FP32)
    written = path.stat().st_mtime_ns

    again = stages.onnx(component, Precision.FP32)

    assert again == path and path.stat().st_mtime_ns == written


def test_graph_that_disagrees_with_its_declaration_is_refused(stages: ExportStages) -> None:
    component = stages.components[0]
    assert isinstance(component, TextEncoderComponent)
    path = stages.onnx(component, Precision.FP32)

    class ShorterPrompts(TextEncoderComponent):
        @property
        def inputs(self) -> tuple[TensorDecl, ...]:
            return tuple(TensorDecl(t.name, TensorType.INT64, ("batch", 64)) for t in super().inputs)

    with pytest.raises(ExportError, match="declared static 64"):
        name_declared_axes(ShorterPrompts(component.geometry), path)


def test_cli_fails_with_status_1(tmp_path: Path) -> None:
    status = export_main(["onnx", "--components", "no_such_component", "--cache-dir", str(tmp_path)])
    assert status == 1
