"""Picks the engine the config names. Imports lazily so a deployment loads only what it uses."""

from __future__ import annotations

from service.config import EngineKind, ServiceConfig
from service.engines.base import Engine


def create_engine(config: ServiceConfig) -> Engine:
    if config.engine is EngineKind.TRITON:
        from service.engines.triton import TritonEngine

        return TritonEngine(config)
    from service.engines.local import LocalEngine

    return LocalEngine(config)
