"""What `ltx_pipeline` needs besides the component models: tokenizer, model geometry, scheduler config.

With the tiny preset they come from building the (tiny) models in the pipeline's process. A real 13B
transformer must not be loaded there just to learn its geometry, so `python -m export` writes them next to
the GPU repository's pipeline model (`assets/`) and the pipeline reads them from there.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from service.config import ModelConfig
from service.pipelines.components import ModelGeometry

ASSETS_FILE = "pipeline_assets.json"
TOKENIZER_DIR = "tokenizer"


@dataclass(frozen=True)
class PipelineAssets:
    tokenizer: PreTrainedTokenizerBase
    geometry: ModelGeometry
    scheduler_config: dict[str, Any]


def assets_from_models(cfg: ModelConfig) -> PipelineAssets:
    """Load (or build, for tiny presets) the models of `cfg` and take the assets from them."""
    from service.models.loading import load_models, model_geometry

    models = load_models(cfg)
    return PipelineAssets(models.tokenizer, model_geometry(models), dict(models.scheduler_config))


def save_assets(assets: PipelineAssets, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    assets.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    document = {"geometry": dataclasses.asdict(assets.geometry), "scheduler_config": assets.scheduler_config}
    (directory / ASSETS_FILE).write_text(json.dumps(document, indent=2, sort_keys=True))
    return directory


def load_assets(directory: Path) -> PipelineAssets:
    document = json.loads((directory / ASSETS_FILE).read_text())
    # JSON has no tuples: the per-channel statistics come back as lists.
    geometry_fields: dict[str, Any] = {
        key: tuple(value) if isinstance(value, list) else value for key, value in document["geometry"].items()
    }
    tokenizer = AutoTokenizer.from_pretrained(str(directory / TOKENIZER_DIR), local_files_only=True)
    return PipelineAssets(tokenizer, ModelGeometry(**geometry_fields), dict(document["scheduler_config"]))
