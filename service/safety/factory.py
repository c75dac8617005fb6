"""Building the safety checker from the config, once at start-up (the model itself loads on first use)."""

from __future__ import annotations

import logging

from service.safety.checker import SafetyChecker
from service.safety.config import SafetyConfig, SafetyModel

logger = logging.getLogger(__name__)


def build_safety_checker(config: SafetyConfig) -> SafetyChecker | None:
    """The configured checker, or None when the service config turns safety checking off."""
    if not config.enabled:
        logger.warning("safety checker disabled: requests with enable_safety_checker run unchecked")
        return None
    if config.model is SafetyModel.OPEN_NSFW:
        # Imported here so that importing the config does not import onnxruntime.
        from service.safety.open_nsfw import OpenNsfwScorer

        scorer = OpenNsfwScorer(model_path=config.model_path, threads=config.threads)
    else:  # pragma: no cover - SafetyConfig only accepts SafetyModel members
        raise ValueError(f"unknown safety model {config.model!r}")
    return SafetyChecker(scorer, threshold=config.threshold, frames_to_sample=config.frames_to_sample)
