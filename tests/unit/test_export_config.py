"""config.pbtxt generation from the declarations, against the checked-in model repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.components import DEFAULT_COMPONENTS, ApiRanges, AxisRange, ExportableComponent, declare
from export.repository import CHECKED_IN_REPOSITORY, config_parameters, model_shim, write_cpu_repository
from export.shapes import CONDITIONING_KEYFRAME_LATENT_FRAMES
from export.triton_config import (
    ComponentBackend,
    component_config,
    declared_signature,
    read_config,
    render,
    tensor_signature,
)
from service.config import Ltx2ModelConfig, ModelConfig
from service.contract import pipeline as contract
from service.contract.ltx2_components import LTX2_COMPONENTS
from service.domain.specs import Endpoint
from service.engines.endpoint_pipelines import served_endpoints
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
    write_cpu_repository(tmp_path, ModelConfig(), components, ltx2=Ltx2ModelConfig())

    for name in (contract.PIPELINE_MODEL, *DEFAULT_COMPONENTS, *LTX2_COMPONENTS):
        for relative in ("config.pbtxt", "1/model.py"):
            generated = (tmp_path / name / relative).read_text()
            assert generated == (CHECKED_IN_REPOSITORY / name / relative).read_text(), (
                f"{name}/{relative} is stale"
            )


def test_pipeline_config_is_decoupled_and_names_the_contract_tensors() -> None:
    config = read_config(CHECKED_IN_REPOSITORY / contract.PIPELINE_MODEL / "config.pbtxt")
    assert config.model_transaction_policy.decoupled
    required = [t.name for t in config.input if not t.optional]
    optional = [t.name for t in config.input if t.optional]
    assert required == []  # a fetch request carries only FETCH_FRAMES; the model checks the others
    assert optional == [
        contract.ENDPOINT,
        contract.SPEC_JSON,
        *contract.CONDITION_INPUTS,
        contract.KEPT_FRAMES,
        contract.MAX_RESPONSE_BYTES,
        contract.FETCH_FRAMES,
    ]
    outputs = {t.name for t in config.output}
    assert outputs == set(contract.PROGRESS_OUTPUTS) | set(contract.FRAMES_OUTPUTS) | set(
        contract.AUDIO_OUTPUTS
    ) | set(contract.RESULT_OUTPUTS)


def test_checked_in_pipeline_serves_every_endpoint() -> None:
    config = read_config(CHECKED_IN_REPOSITORY / contract.PIPELINE_MODEL / "config.pbtxt")
    names = config.parameters[contract.COMPONENTS_PARAMETER].string_value
    assert set(names.split(",")) == {
        "text_encoder",
        "transformer",
        "vae_decoder",
        "vae_encoder",
        "latent_upsampler",
        *LTX2_COMPONENTS,
    }
    assert served_endpoints(names) == {
        Endpoint.TEXT_TO_VIDEO,
        Endpoint.MULTICONDITIONING,
        Endpoint.EXTEND,
        Endpoint.DISTILLED_MULTICONDITIONING,
        Endpoint.LTX2_TEXT_TO_VIDEO,
    }
    # Without the upsampler the distilled endpoint is not served; without the encoder no conditioning.
    assert Endpoint.DISTILLED_MULTICONDITIONING not in served_endpoints(
        "text_encoder,transformer,vae_decoder,vae_encoder"
    )
    assert served_endpoints("text_encoder,transformer,vae_decoder") == {Endpoint.TEXT_TO_VIDEO}


def test_stg_inputs_are_optional_for_python_and_required_for_tensorrt(
    components: list[ExportableComponent],
) -> None:
    transformer = next(c for c in components if c.name == "transformer")
    python = component_config(transformer, ComponentBackend.PYTHON)
    tensorrt = component_config(transformer, ComponentBackend.TENSORRT)
    assert [t.name for t in python.input if t.optional] == ["stg_skip_blocks", "stg_rows"]
    assert not any(t.optional for t in tensorrt.input)
    assert tensor_signature(python)["input"][-2:] == [
        ("stg_skip_blocks", "TYPE_BOOL", (transformer.geometry.transformer_blocks,)),
        ("stg_rows", "TYPE_BOOL", (-1,)),
    ]


def test_tensorrt_config_uses_the_same_tensors(components: list[ExportableComponent]) -> None:
    transformer = next(c for c in components if c.name == "transformer")
    config = component_config(transformer, ComponentBackend.TENSORRT)
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert tensor_signature(config) == declared_signature(transformer)
    assert "tensorrt_plan" in render(config)


def test_profiles_follow_the_api_ranges(components: list[ExportableComponent]) -> None:
    by_name = {c.name: c for c in components}
    ranges = by_name["transformer"].axis_ranges()
    # Tokens = (H/32)(W/32)((F-1)/8+1) of the generated frame (padded up to 32): fewest at 480x480 and 9
    # frames (15*15*2), the endpoint's default 1280x720 (1280x736) and 89 frames (40*23*12) as optimum,
    # most at 1280x736 and 257 frames (40*23*33).
    assert ranges["tokens"] == AxisRange(450, 11040, 30360)
    # Negative + positive prompt at best, with STG's perturbed pass a third row.
    assert ranges["batch"] == AxisRange(1, 2, 3)
    assert by_name["text_encoder"].axis_ranges()["batch"] == AxisRange(1, 2, 2)
    latents = by_name["vae_decoder"].profile()["latents"]
    assert latents == ((1, 8, 2, 15, 15), (1, 8, 12, 23, 40), (1, 8, 33, 40, 40))


def test_serving_ranges_cover_conditioning_and_the_distilled_passes() -> None:
    geometry = model_geometry(load_models(ModelConfig()))
    names = DEFAULT_COMPONENTS  # every component: all four endpoints
    by_name = {c.name: c for c in declare(names, geometry, ApiRanges.serving(names))}
    transformer = by_name["transformer"].axis_ranges()
    # The distilled first pass of 480x480 is 288x288 (int(480 * 0.6666666) = 319, floored to 32: 9x9 cells,
    # 9 frames: 2 latent frames); its second pass of 1280x720 (generated 1280x736, first pass 832x480) is
    # 1664x960 (52x30 cells, 960x1664 turned); 257 frames are 33 latent frames, and up to 10 images plus
    # 4 videos x 2 latent frames of keyframe tokens ride along.
    assert transformer["tokens"] == AxisRange(9 * 9 * 2, 11040, 52 * 30 * (33 + 18))
    assert by_name["vae_decoder"].profile()["latents"][2] == (1, 8, 33, 52, 52)
    # An image condition is one frame: the VAE encoder's profile starts there.
    assert by_name["vae_encoder"].profile()["video"][0] == (1, 3, 1, 288, 288)
    assert by_name["latent_upsampler"].profile()["latents"][0] == (1, 8, 2, 9, 9)


def test_keyframe_bound_follows_validation() -> None:
    from service.api.validation import MAX_IMAGE_CONDITIONS, MAX_VIDEO_CONDITIONS
    from service.pipelines.conditioning import DEFAULT_PREFIX_LATENT_FRAMES

    expected = MAX_IMAGE_CONDITIONS + MAX_VIDEO_CONDITIONS * DEFAULT_PREFIX_LATENT_FRAMES
    assert expected == CONDITIONING_KEYFRAME_LATENT_FRAMES


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


def test_checked_in_ltx2_component_configs_carry_the_declared_tensors() -> None:
    from export.repository import ltx2_components

    for decl in ltx2_components(Ltx2ModelConfig()):
        checked_in = read_config(CHECKED_IN_REPOSITORY / decl.name / "config.pbtxt")
        assert tensor_signature(checked_in) == declared_signature(decl), decl.name
        assert checked_in.backend == "python"
        optional = {t.name for t in checked_in.input if t.optional}
        assert optional == {t.name for t in decl.inputs if t.optional}, decl.name
        assert checked_in.parameters["component"].string_value == decl.name
        assert checked_in.parameters["ltx2.preset"].string_value == "tiny-ltx2"
    assert "Ltx2ComponentModel" in model_shim("ltx2_transformer", pipeline=False)
