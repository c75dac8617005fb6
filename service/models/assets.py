"""`ltx_pipeline`'s assets with the tokenizer: built from the models, or read from an exported directory.

With the tiny preset they come from building the (tiny) models in the pipeline's process; a GPU
repository carries them in `assets/` (file layout: service/contract/assets.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from service.config import ModelConfig
from service.contract.assets import TOKENIZER_DIR, AssetsDocument
from service.contract.geometry import ModelGeometry


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
    AssetsDocument(assets.geometry, assets.scheduler_config).write(directory)
    return directory


def load_assets(directory: Path) -> PipelineAssets:
    document = AssetsDocument.read(directory)
    tokenizer = AutoTokenizer.from_pretrained(str(directory / TOKENIZER_DIR), local_files_only=True)
    return PipelineAssets(tokenizer, document.geometry, dict(document.scheduler_config))
