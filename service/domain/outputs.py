"""What engines return and what a finished job holds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GeneratedVideo:
    """Decoded frames as uint8 [frames, height, width, 3] RGB, ready to encode."""

    frames: np.ndarray
    frame_rate: float
    prompt: str  # the prompt actually used (after any expansion)
    seed: int
    audio: np.ndarray | None = None  # float32 [channels, samples] in [-1, 1]
    audio_sample_rate: int = 0


@dataclass(frozen=True)
class StoredFile:
    """A file kept by storage and reachable at `url`."""

    url: str
    content_type: str
    file_name: str
    file_size: int


@dataclass(frozen=True)
class JobOutput:
    """The result of a completed job, before the API turns it into the endpoint's output message."""

    prompt: str
    seed: int
    video: StoredFile
    width: int
    height: int
    num_frames: int
    frame_rate: float
