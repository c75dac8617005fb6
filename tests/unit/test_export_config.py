"""config.pbtxt generation from the declarations, against the checked-in model repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.components import DEFAULT_COMPONENTS, AxisRange, ExportableComponent, declare
from export.repository import CHECKED_IN_REPOSITORY, config_parameters, model_shim, write_cpu_repository
from export.triton_config import (
    ComponentBackend,
    component_config,
    declared_signature,
    read_config,
    render,
    tensor_signature,
)
from service.config import ModelConfig
from service.engines import triton_contract as contract
from service.models.loading import load_models, model_geometry


@pytest.fixture(scope="module")
def components() -> list[ExportableComponent]:
    return declare(DEFAULT_COMPONENTS, model_geometry(load_models(ModelConfig())))


def test_checked_in_component_configs_carry_the_declared_tensors(
    components: list[ExportableComponent],
) -> None:
    for component in components:
        checked_in = read_config(CHECKED_IN_REPOSITORY / component.name / "config.pbtxt")
        assert tensor_signature(checked_in) == declared_signature(component), component.name
        assert checked_in.backend == "python"


def test_checked_in_repository_is_what_the_generator_writes(
    components: list[ExportableComponent], tmp_path: Path
) -> None:
    write_cpu_repository(tmp_path, ModelConfig(), components)

    for name in (contract.PIPELINE_MODEL, *DEFAULT_COMPONENTS):
        for relative in ("config.pbtxt", "1/model.py"):
            generated = (tmp_path / name / relative).read_text()
            assert generated == (CHECKED_IN_REPOSITORY / name / relative).read_text(), (
                f"{name}/{relative} is stale"
            )


def test_pipeline_config_is_decoupled_and_names_the_contract_tensors() -> None:
    config = read_config(CHECKED_IN_REPOSITORY / contract.PIPELINE_MODEL / "config.pbtxt")
    assert config.model_transaction_policy.decoupled
    assert [t.name for t in config.input] == [contract.ENDPOINT, contract.SPEC_JSON]
    outputs = {t.name for t in config.output}
    assert outputs == set(contract.PROGRESS_OUTPUTS) | set(contract.RESULT_OUTPUTS)


def test_tensorrt_config_uses_the_same_tensors(components: list[ExportableComponent]) -> None:
    transformer = next(c for c in components if c.name == "transformer")
    config = component_config(transformer, ComponentBackend.TENSORRT)
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert tensor_signature(config) == declared_signature(transformer)
    assert "tensorrt_plan" in render(config)


def test_profiles_follow_the_api_ranges(components: list[ExportableComponent]) -> None:
    by_name = {c.name: c for c in components}
    ranges = by_name["transformer"].axis_ranges()
    # Tokens = (H/32)(W/32)((F-1)/8+1): fewest at 480x480 and 9 frames (15*15*2), the endpoint's default
    # 1280x704 and 89 frames (40*22*12) as optimum, most at 1280x704 and 257 frames (40*22*33).
    assert ranges["tokens"] == AxisRange(450, 10560, 29040)
    assert ranges["batch"] == AxisRange(1, 2, 2)
    latents = by_name["vae_decoder"].profile()["latents"]
    assert latents == ((1, 8, 2, 15, 15), (1, 8, 12, 22, 40), (1, 8, 33, 40, 40))


def test_parameters_and_shims() -> None:
    assert config_parameters(ModelConfig(seed=3)) == {
        "preset": "tiny",
        "seed": "3",
        "dtype": "float32",
        "device": "cpu",
    }
    shim = model_shim("transformer", pipeline=False)
    assert "service.engines.triton_backend.component_model" in shim and "parents[3]" in shim
    compile(shim, "model.py", "exec")
