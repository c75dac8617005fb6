"""The real-checkpoint code path (`ltx-video-0.9.7`), exercised offline with the tiny weights saved in the
layouts real checkpoints come in: a diffusers directory and the original single file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from diffusers.loaders.single_file_utils import (
    convert_ltx_transformer_checkpoint_to_diffusers,
    convert_ltx_vae_checkpoint_to_diffusers,
)
from diffusers.models.autoencoders.autoencoder_kl_ltx import AutoencoderKLLTXVideo

from service.config import ModelConfig
from service.engines import torch_bindings
from service.models import loading
from service.pipelines.components import Components
from tests.fixtures_checkpoint import TINY_VAE_097_CONFIG, original_checkpoint, write_single_file

REAL_PRESET = "ltx-video-0.9.7"


@pytest.fixture(scope="module")
def tiny() -> loading.LoadedModels:
    return loading.load_models(ModelConfig())


@pytest.fixture(scope="module")
def diffusers_dir(tiny: loading.LoadedModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return loading.save_diffusers_layout(tiny, tmp_path_factory.mktemp("ltx") / "model")


def _assert_same_weights(expected: torch.nn.Module, actual: torch.nn.Module) -> None:
    want, got = expected.state_dict(), actual.state_dict()
    assert want.keys() == got.keys()
    mismatched = [key for key in want if not torch.equal(want[key], got[key])]
    assert not mismatched


def _velocity(components: Components) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    tokens = 2 * 2 * 2
    embeds, mask = components.text_encoder.encode(["a red fox"])
    return components.transformer.velocity(
        torch.randn(1, tokens, components.geometry.latent_channels, generator=generator),
        torch.full((1, tokens), 0.6),
        torch.rand(1, 3, tokens, generator=generator) * 32,
        embeds,
        mask,
    )


def test_diffusers_layout_loads_the_same_models(tiny: loading.LoadedModels, diffusers_dir: Path) -> None:
    loaded = loading._load_checkpoint(ModelConfig(preset=REAL_PRESET, model_dir=str(diffusers_dir)))
    for name in ("transformer", "vae", "text_encoder"):
        _assert_same_weights(getattr(tiny, name), getattr(loaded, name))
    assert loaded.scheduler_config["use_dynamic_shifting"] is True
    assert loaded.scheduler_config["shift_terminal"] == tiny.scheduler_config["shift_terminal"]
    ours, theirs = torch_bindings.bind_components(tiny), torch_bindings.bind_components(loaded)
    assert theirs.geometry == ours.geometry
    assert torch.equal(_velocity(theirs), _velocity(ours))


def test_inverse_key_mapping_matches_diffusers_conversion(tiny: loading.LoadedModels) -> None:
    original = original_checkpoint(tiny.transformer, tiny.vae)
    assert set(convert_ltx_vae_checkpoint_to_diffusers(dict(original))) == set(tiny.vae.state_dict())
    assert set(convert_ltx_transformer_checkpoint_to_diffusers(dict(original))) == set(
        tiny.transformer.state_dict()
    )


def test_single_file_checkpoint_loads_the_same_models(
    tiny: loading.LoadedModels, diffusers_dir: Path, tmp_path: Path
) -> None:
    checkpoint = write_single_file(tmp_path / "ltxv.safetensors", tiny.transformer, tiny.vae)
    cfg = ModelConfig(preset=REAL_PRESET, single_file=str(checkpoint), config_dir=str(diffusers_dir))
    loaded = loading._load_checkpoint(cfg)
    _assert_same_weights(tiny.transformer, loaded.transformer)
    _assert_same_weights(tiny.vae, loaded.vae)


def test_missing_model_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model.model_dir"):
        loading.load_models(ModelConfig(preset=REAL_PRESET, model_dir=str(tmp_path / "absent")))


def test_single_file_that_does_not_exist_is_a_config_error(diffusers_dir: Path, tmp_path: Path) -> None:
    cfg = ModelConfig(
        preset=REAL_PRESET, single_file=str(tmp_path / "none.safetensors"), config_dir=str(diffusers_dir)
    )
    with pytest.raises(ValueError, match=r"model.single_file"):
        loading.load_models(cfg)


def test_unknown_preset_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown preset 'ltx-9'"):
        loading.load_models(ModelConfig(preset="ltx-9"))


@pytest.fixture(scope="module")
def tiny_097(tiny: loading.LoadedModels) -> loading.LoadedModels:
    """The tiny models with a VAE in the 0.9.7 layout (tests/fixtures_checkpoint.py)."""
    vae = AutoencoderKLLTXVideo(**TINY_VAE_097_CONFIG).eval()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in vae.parameters():  # non-trivial weights, so a key mix-up shows in the output
            parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
        vae.latents_mean.copy_(0.1 * torch.randn(8, generator=generator))
        vae.latents_std.copy_(1.0 + 0.1 * torch.rand(8, generator=generator))
    return dataclasses.replace(tiny, vae=vae)


def test_the_097_vae_inverse_key_mapping_matches_diffusers_conversion(tiny_097: loading.LoadedModels) -> None:
    original = original_checkpoint(tiny_097.transformer, tiny_097.vae, vae_layout="0.9.7")
    assert original["vae.encoder.conv_out.conv.weight"].shape[1] == 2048  # what selects the 0.9.5+ branch
    assert set(convert_ltx_vae_checkpoint_to_diffusers(dict(original))) == set(tiny_097.vae.state_dict())


def test_a_097_single_file_loads_through_from_single_file(
    tiny_097: loading.LoadedModels, tmp_path: Path
) -> None:
    config_dir = loading.save_diffusers_layout(tiny_097, tmp_path / "configs")
    checkpoint = write_single_file(
        tmp_path / "ltxv-097.safetensors", tiny_097.transformer, tiny_097.vae, "0.9.7"
    )
    cfg = ModelConfig(preset=REAL_PRESET, single_file=str(checkpoint), config_dir=str(config_dir))
    loaded = loading._load_checkpoint(cfg)
    _assert_same_weights(tiny_097.vae, loaded.vae)
    _assert_same_weights(tiny_097.transformer, loaded.transformer)
    latents = torch.randn(1, 8, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = tiny_097.vae.decode(latents, torch.tensor([0.05])).sample
        got = loaded.vae.decode(latents, torch.tensor([0.05])).sample
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
