"""The latent upsampler: tiny seeded preset, its torch binding, and loading it from local directories."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel
from safetensors import safe_open
from safetensors.torch import save_file

from service.config import ModelConfig
from service.engines import torch_bindings
from service.models import loading
from service.models import upsampler as upsampler_models
from service.models.torch_components import TorchLatentUpsampler

REAL_PRESET = "ltx-video-0.9.7"


@pytest.fixture(scope="module")
def tiny() -> loading.LoadedModels:
    return loading.load_models(ModelConfig())


@pytest.fixture(scope="module")
def model_dir(tiny: loading.LoadedModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return loading.save_diffusers_layout(tiny, tmp_path_factory.mktemp("ltx") / "model")


def _latents(channels: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, channels, 3, 2, 3, generator=torch.Generator().manual_seed(seed))


def _assert_same_weights(expected: torch.nn.Module, actual: torch.nn.Module) -> None:
    want, got = expected.state_dict(), actual.state_dict()
    assert want.keys() == got.keys()
    assert [key for key in want if not torch.equal(want[key], got[key])] == []


def test_tiny_preset_has_an_upsampler_for_the_tiny_vae_latents(tiny: loading.LoadedModels) -> None:
    assert tiny.upsampler is not None
    assert tiny.upsampler.config["in_channels"] == tiny.vae.config["latent_channels"]
    assert tiny.upsampler.config["spatial_upsample"] and not tiny.upsampler.config["temporal_upsample"]


def test_the_binding_doubles_height_and_width_and_keeps_channels_and_frames(
    tiny: loading.LoadedModels,
) -> None:
    components = torch_bindings.bind_components(tiny)
    assert components.upsampler is not None
    channels = components.geometry.latent_channels
    latents = _latents(channels)
    upsampled = components.upsampler.upsample(latents)
    assert upsampled.shape == (1, channels, 3, 4, 6)
    assert tiny.upsampler is not None
    with torch.inference_mode():
        assert torch.equal(upsampled, tiny.upsampler(latents))


def test_same_seed_same_upsampler_weights_and_other_seed_different() -> None:
    first, second = loading._build_tiny(ModelConfig(seed=5)), loading._build_tiny(ModelConfig(seed=5))
    other = loading._build_tiny(ModelConfig(seed=6))
    assert first.upsampler is not None and second.upsampler is not None and other.upsampler is not None
    _assert_same_weights(first.upsampler, second.upsampler)
    assert not torch.equal(first.upsampler.initial_conv.weight, other.upsampler.initial_conv.weight)


def test_save_pretrained_then_load_round_trips(tiny: loading.LoadedModels, tmp_path: Path) -> None:
    assert tiny.upsampler is not None
    tiny.upsampler.save_pretrained(tmp_path / "upsampler", safe_serialization=True)
    loaded = upsampler_models.load_upsampler(tmp_path / "upsampler")
    assert isinstance(loaded, LTXLatentUpsamplerModel)
    _assert_same_weights(tiny.upsampler, loaded)
    latents = _latents(tiny.upsampler.config["in_channels"], seed=1)
    expected, actual = TorchLatentUpsampler(tiny.upsampler), TorchLatentUpsampler(loaded)
    assert torch.equal(expected.upsample(latents), actual.upsample(latents))


def test_real_preset_loads_the_upsampler_next_to_the_model(
    tiny: loading.LoadedModels, model_dir: Path
) -> None:
    assert (model_dir / upsampler_models.UPSAMPLER_SUBFOLDER / "config.json").is_file()
    loaded = loading._load_checkpoint(ModelConfig(preset=REAL_PRESET, model_dir=str(model_dir)))
    assert tiny.upsampler is not None and loaded.upsampler is not None
    _assert_same_weights(tiny.upsampler, loaded.upsampler)
    assert torch_bindings.bind_components(loaded).upsampler is not None


def test_a_configured_upsampler_dir_wins_and_may_be_a_pipeline_dir(
    tiny: loading.LoadedModels, model_dir: Path, tmp_path: Path
) -> None:
    # A diffusers LTXLatentUpsamplePipeline directory keeps the model under latent_upsampler/.
    assert tiny.upsampler is not None
    other = upsampler_models.build_tiny_upsampler(tiny.upsampler.config["in_channels"])
    upsampler_models.save_upsampler(other, tmp_path / "pipeline")
    cfg = ModelConfig(preset=REAL_PRESET, model_dir=str(model_dir), upsampler_dir=str(tmp_path / "pipeline"))
    assert upsampler_models.upsampler_dir(cfg) == tmp_path / "pipeline"
    loaded = loading._load_checkpoint(cfg)
    assert loaded.upsampler is not None
    _assert_same_weights(other, loaded.upsampler)


def test_without_an_upsampler_directory_the_component_is_absent(
    tiny: loading.LoadedModels, tmp_path: Path
) -> None:
    loading.save_diffusers_layout(dataclasses.replace(tiny, upsampler=None), tmp_path / "model")
    loaded = loading._load_checkpoint(ModelConfig(preset=REAL_PRESET, model_dir=str(tmp_path / "model")))
    assert loaded.upsampler is None
    assert torch_bindings.bind_components(loaded).upsampler is None


def test_a_configured_upsampler_dir_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    cfg = ModelConfig(preset=REAL_PRESET, upsampler_dir=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"model.upsampler_dir"):
        upsampler_models.upsampler_dir(cfg)
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(ValueError, match=r"model.upsampler_dir: .*safetensors"):
        upsampler_models.upsampler_dir(ModelConfig(preset=REAL_PRESET, upsampler_dir=str(text)))


def test_an_upsampler_for_other_latent_channels_is_refused(tiny: loading.LoadedModels) -> None:
    channels = tiny.vae.config["latent_channels"]
    mismatched = upsampler_models.build_tiny_upsampler(channels * 2)
    models = dataclasses.replace(tiny, upsampler=mismatched)
    with pytest.raises(ValueError, match="upsampler"):
        loading._check_compatible(models)


def test_the_original_single_file_loads_the_same_upsampler(
    tiny: loading.LoadedModels, model_dir: Path, tmp_path: Path
) -> None:
    # Lightricks' ltxv-spatial-upscaler-0.9.7.safetensors: the state dict, its config in the metadata.
    assert tiny.upsampler is not None
    path = upsampler_models.save_upsampler_single_file(tiny.upsampler, tmp_path / "upscaler.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert set(handle.keys()) == set(tiny.upsampler.state_dict())
        assert json.loads(handle.metadata()["config"])["in_channels"] == tiny.upsampler.config["in_channels"]
    cfg = ModelConfig(preset=REAL_PRESET, model_dir=str(model_dir), upsampler_dir=str(path))
    loaded = loading._load_checkpoint(cfg)
    assert loaded.upsampler is not None
    _assert_same_weights(tiny.upsampler, loaded.upsampler)


def test_a_single_file_without_its_config_or_not_fitting_it_is_refused(
    tiny: loading.LoadedModels, tmp_path: Path
) -> None:
    assert tiny.upsampler is not None
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.upsampler.state_dict().items()}, str(bare))
    with pytest.raises(ValueError, match=r"model.upsampler_dir: .*config"):
        upsampler_models.load_upsampler(bare)
    wrong = tmp_path / "wrong.safetensors"
    config = {**upsampler_models.tiny_upsampler_config(4), "num_blocks_per_stage": 2}
    save_file({"initial_conv.weight": torch.zeros(1)}, str(wrong), metadata={"config": json.dumps(config)})
    with pytest.raises(ValueError, match=r"model.upsampler_dir: .*does not fit"):
        upsampler_models.load_upsampler(wrong)
