"""config.pbtxt parameters and exported pipeline assets, as the Triton models read them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.config import ModelConfig
from service.engines.triton_backend.params import model_config_from, model_parameters, resolve_path
from service.models.assets import assets_from_models, load_assets, save_assets
from service.models.torch_components import tokenize


def test_parameters_become_a_typed_model_config() -> None:
    args = {
        "model_config": json.dumps(
            {"parameters": {"seed": {"string_value": "7"}, "model_dir": {"string_value": ""}}}
        )
    }
    parameters = model_parameters(args)

    config = model_config_from({**parameters, "preset": "tiny", "unrelated": "x"})

    assert config == ModelConfig(preset="tiny", seed=7)  # empty model_dir keeps its default (None)
    with pytest.raises(ValueError, match="seed"):
        model_config_from({"seed": "seven"})


def test_relative_paths_start_at_the_version_directory(tmp_path: Path) -> None:
    assert resolve_path({"assets_dir": "assets"}, "assets_dir", tmp_path) == tmp_path / "assets"
    assert resolve_path({"assets_dir": "/abs"}, "assets_dir", tmp_path) == Path("/abs")
    assert resolve_path({}, "assets_dir", tmp_path) is None


def test_exported_assets_load_back_the_same(tmp_path: Path) -> None:
    original = assets_from_models(ModelConfig())

    loaded = load_assets(save_assets(original, tmp_path / "assets"))

    assert loaded.geometry == original.geometry
    assert loaded.scheduler_config == original.scheduler_config
    prompts = ["a red fox", "snow, dawn, ünïcode"]
    length = original.geometry.text_max_length
    assert tokenize(loaded.tokenizer, prompts, length)["input_ids"].tolist() == (
        tokenize(original.tokenizer, prompts, length)["input_ids"].tolist()
    )
