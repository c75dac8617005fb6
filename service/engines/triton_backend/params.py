"""config.pbtxt `parameters` -> typed settings (strings in, typed values out; no `bool("false")`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from service.config import FastPathConfig, Ltx2ModelConfig, ModelConfig

LTX2_PREFIX = "ltx2."  # config.pbtxt parameters of the LTX-2.3 models: ltx2.<Ltx2ModelConfig field>


def model_parameters(args: dict[str, str]) -> dict[str, str]:
    """The `parameters` of the model's config.pbtxt, from the `args` Triton passes to `initialize`."""
    config: dict[str, Any] = json.loads(args["model_config"])
    return {key: str(value.get("string_value", "")) for key, value in config.get("parameters", {}).items()}


def model_config_from(parameters: dict[str, str]) -> ModelConfig:
    """A ModelConfig from the parameters named like its fields; absent or empty ones keep their defaults."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(ModelConfig):
        raw = parameters.get(field.name, "").strip()
        if not raw:
            continue
        try:
            values[field.name] = int(raw) if isinstance(field.default, int) else raw
        except ValueError:
            raise ValueError(f"config.pbtxt parameter {field.name}: {raw!r} is not an integer") from None
    return ModelConfig(**values)


def ltx2_config_from(parameters: dict[str, str]) -> Ltx2ModelConfig:
    """An Ltx2ModelConfig from the parameters `ltx2.<field>`; absent or empty ones keep their defaults."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Ltx2ModelConfig):
        name = f"{LTX2_PREFIX}{field.name}"
        raw = parameters.get(name, "").strip()
        if not raw:
            continue
        try:
            values[field.name] = _typed(field.default, raw)
        except ValueError:
            raise ValueError(f"config.pbtxt parameter {name}: {raw!r} is not an integer (list)") from None
    return Ltx2ModelConfig(**values)


def _typed(default: Any, raw: str) -> Any:
    """`raw` as the type of `default`: an integer, a tuple of comma-separated integers, or the string."""
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, tuple):
        return tuple(int(item) for item in raw.split(","))
    return raw


def fast_path_config_from(parameters: dict[str, str]) -> FastPathConfig:
    """A FastPathConfig from the parameters `fast_path.<field>` (booleans "true"/"false"); absent: defaults."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(FastPathConfig):
        name = f"fast_path.{field.name}"
        raw = parameters.get(name, "").strip()
        if not raw:
            continue
        if isinstance(field.default, bool):
            if raw.lower() not in ("true", "false"):
                raise ValueError(f"config.pbtxt parameter {name}: {raw!r} is not true or false")
            values[field.name] = raw.lower() == "true"
        else:
            values[field.name] = raw
    return FastPathConfig(**values)


def version_dir(args: dict[str, str]) -> Path:
    """The model's version directory (where model.py lives): relative paths in parameters start here."""
    return Path(args["model_repository"]) / args["model_version"]


def resolve_path(parameters: dict[str, str], name: str, base: Path) -> Path | None:
    raw = parameters.get(name, "").strip()
    if not raw:
        return None
    path = Path(raw)
    return path if path.is_absolute() else base / path
