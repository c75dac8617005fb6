"""ONNX export (dynamo) of each tiny LTX-2.3 component and its parity with PyTorch on onnxruntime (CPU).

Each component is exported once per module (the stages cache it) and checked at two sizes, every output,
within its stated fp32 tolerance (export/ltx2_components.py). The transformer's, the video VAE decoder's
and the audio decoder's exports take well over 30 s on two shared cores: they are `slow`; the default run
keeps the text encoder (Gemma-3 + connectors: the stable-sort translation) and the latent upsampler, and
tests/unit/test_export_onnx_translations.py keeps the transformer's squeeze fix fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from export.components import ExportableComponent
from export.ltx2_components import LTX2_EXPORT_COMPONENTS, Ltx2TransformerComponent
from export.parity import check_parity
from export.stages import ExportStages, Precision
from service.config import ServiceConfig

pytestmark = pytest.mark.timeout(900)

SLOW = {"ltx2_transformer", "ltx2_vae_decoder", "ltx2_audio_decoder"}
PARAMS = [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in LTX2_EXPORT_COMPONENTS
]


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> ExportStages:
    cache = tmp_path_factory.mktemp("export-ltx2")
    return ExportStages(ServiceConfig(), cache, LTX2_EXPORT_COMPONENTS, precision=Precision.FP32)


def _component(stages: ExportStages, name: str) -> ExportableComponent[Any]:
    (component,) = [c for c in stages.components if c.name == name]
    return component


@pytest.mark.parametrize("name", PARAMS)
def test_ltx2_component_exports_with_declared_io_and_matches_torch(stages: ExportStages, name: str) -> None:
    component = _component(stages, name)

    path = stages.onnx(component, Precision.FP32)
    results = check_parity(component, stages.ltx2_models(), path)

    graph = onnx.load(str(path), load_external_data=False).graph
    # The graph takes every declared input but the distilled-LoRA scale (torch models only).
    assert [value.name for value in graph.input] == component.exported_input_names
    assert "distilled_lora_scale" not in component.exported_input_names
    assert [value.name for value in graph.output] == component.output_names
    for declared, value in zip(component.exported_inputs, graph.input, strict=True):
        dims = [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]
        assert dims == list(declared.axes), f"{name}.{declared.name}"
    # Every output at two sizes or more, the second unlike the export sample: the axes really are dynamic.
    assert {result.output for result in results} == set(component.output_names)
    assert len({result.size for result in results}) >= 2
    for result in results:
        assert result.passed, result.line()
        assert result.reference_scale > 0


@pytest.mark.slow
def test_ltx2_transformer_graph_takes_stg_and_isolation_as_inputs(stages: ExportStages) -> None:
    """The graph's STG and isolation inputs change what they say, as the torch adapter does: STG only the
    perturbed row, isolation every row."""
    import onnxruntime
    import torch

    component = _component(stages, Ltx2TransformerComponent.name)
    session = onnxruntime.InferenceSession(
        str(stages.onnx(component, Precision.FP32)), providers=["CPUExecutionProvider"]
    )
    models = stages.ltx2_models()
    module = component.module(models)
    names = component.exported_input_names
    base = list(component.sample_inputs(models, component.parity_samples[0]))
    rows = base[names.index("stg_rows")]
    plain = _with(base, names, stg_rows=torch.zeros_like(rows))
    isolated = _with(plain, names, isolate_modalities=torch.tensor([True]))

    outputs = {
        label: _run(session, names, inputs)
        for label, inputs in (("stg", base), ("plain", plain), ("iso", isolated))
    }
    with torch.no_grad():
        expected_iso = [t.numpy() for t in module(*isolated)]

    for index in range(2):  # video and audio velocity
        stg, plain_out, iso = outputs["stg"][index], outputs["plain"][index], outputs["iso"][index]
        np.testing.assert_array_equal(stg[:-1], plain_out[:-1])  # unperturbed rows untouched
        assert np.abs(stg[-1] - plain_out[-1]).max() > 1e-3  # the perturbed row moved
        assert np.abs(iso - plain_out).max() > 1e-3
        np.testing.assert_allclose(iso, expected_iso[index], atol=1e-3 * np.abs(expected_iso[index]).max())


def _with(inputs: list[Any], names: list[str], **replaced: Any) -> list[Any]:
    out = list(inputs)
    for name, value in replaced.items():
        out[names.index(name)] = value
    return out


def _run(session: Any, names: list[str], inputs: list[Any]) -> list[np.ndarray]:
    return list(session.run(None, {name: tensor.numpy() for name, tensor in zip(names, inputs, strict=True)}))


def test_tiny_ltx2_components_are_in_the_default_onnx_export() -> None:
    from export.__main__ import default_components

    assert set(LTX2_EXPORT_COMPONENTS) <= set(default_components(ServiceConfig(), "onnx"))
    assert not set(LTX2_EXPORT_COMPONENTS) & set(default_components(ServiceConfig(), "build"))


def test_tensorrt_build_of_an_ltx2_component_fails_with_status_1(tmp_path: Path) -> None:
    from export.__main__ import main as export_main

    argv = ["build", "--components", "ltx2_transformer", "--cache-dir", str(tmp_path), "--out", str(tmp_path)]
    assert export_main(argv) == 1
