"""The safety checker: input images and output frames scored by an image classifier that runs offline."""

from service.safety.checker import DISABLED_MESSAGE, ImageScorer, SafetyChecker, sample_frame_indices
from service.safety.config import SafetyConfig, SafetyModel
from service.safety.factory import build_safety_checker

__all__ = [
    "DISABLED_MESSAGE",
    "ImageScorer",
    "SafetyChecker",
    "SafetyConfig",
    "SafetyModel",
    "build_safety_checker",
    "sample_frame_indices",
]
