"""What `ltx_pipeline` needs besides the component models: model geometry, scheduler config, tokenizer.

A real 13B transformer must not be loaded in the pipeline's process just to learn its geometry, so
`python -m export` writes these next to the GPU repository's pipeline model (`assets/`): this module is
the file layout and the JSON document; service/models/assets.py loads them with the tokenizer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.contract.geometry import ModelGeometry

ASSETS_FILE = "pipeline_assets.json"
TOKENIZER_DIR = "tokenizer"  # a transformers tokenizer directory (save_pretrained)

# scheduler_config.json of LTX-Video 0.9.x in diffusers layout: resolution-dependent ("dynamic") shifting.
# Used when a checkpoint brings no scheduler config of its own.
LTX_VIDEO_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.95,
    "max_shift": 2.05,
    "base_image_seq_len": 1024,
    "max_image_seq_len": 4096,
    "shift_terminal": 0.1,
    "invert_sigmas": False,
}


@dataclass(frozen=True)
class AssetsDocument:
    """The JSON half of the assets (the tokenizer is a directory beside it)."""

    geometry: ModelGeometry
    scheduler_config: Mapping[str, Any]

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        document = {
            "geometry": dataclasses.asdict(self.geometry),
            "scheduler_config": dict(self.scheduler_config),
        }
        path = directory / ASSETS_FILE
        path.write_text(json.dumps(document, indent=2, sort_keys=True))
        return path

    @classmethod
    def read(cls, directory: Path) -> AssetsDocument:
        document = json.loads((directory / ASSETS_FILE).read_text())
        # JSON has no tuples: the per-channel statistics come back as lists.
        geometry_fields: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in document["geometry"].items()
        }
        return cls(ModelGeometry(**geometry_fields), dict(document["scheduler_config"]))
