"""The safety decision: which frames to look at, and when a score fails the job.

The model sits behind `ImageScorer` (one probability of "not safe for work" per image), so the decision
logic is tested apart from the model. A score at or above the threshold fails the job with
JobError(CONTENT_POLICY_VIOLATION) naming the request field, the score, the threshold and the frame.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image

from service.domain.errors import ErrorType, JobError

logger = logging.getLogger(__name__)

DISABLED_MESSAGE = (
    "enable_safety_checker requested but the safety checker is disabled in the service config; "
    "the output is not checked"
)


class ImageScorer(Protocol):
    def scores(self, images: Sequence[np.ndarray]) -> list[float]:
        """P(not safe for work) in [0, 1] for each uint8 RGB image [H, W, 3], in order."""
        ...


def sample_frame_indices(num_frames: int, count: int) -> list[int]:
    """At most `count` distinct indices, evenly spaced over the frames, the first and last always in."""
    if num_frames < 1:
        raise ValueError("no frames to sample")
    if count < 2:
        raise ValueError(f"need at least 2 samples (first and last frame), got {count}")
    positions = np.linspace(0, num_frames - 1, num=min(count, num_frames))
    # floor(x + 0.5), not np.round: round-half-to-even could map neighbours 1.5 and 2.5 to one frame.
    return sorted({int(index) for index in np.floor(positions + 0.5)})


def _as_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    return image


class SafetyChecker:
    """Fails a job whose input images or output frames the scorer flags."""

    def __init__(self, scorer: ImageScorer, *, threshold: float, frames_to_sample: int) -> None:
        self._scorer = scorer
        self.threshold = threshold
        self.frames_to_sample = frames_to_sample

    def check_frames(self, frames: np.ndarray, *, field: str) -> None:
        """Score a sample of `frames` (uint8 [F, H, W, 3]); raise on the highest score past the threshold."""
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {frames.shape}")
        indices = sample_frame_indices(frames.shape[0], self.frames_to_sample)
        scores = self._scorer.scores([frames[index] for index in indices])
        worst = int(np.argmax(scores))
        logger.info(
            "safety check of %s: highest score %.4f at frame %d (%d of %d frames sampled)",
            field,
            scores[worst],
            indices[worst],
            len(indices),
            frames.shape[0],
        )
        if scores[worst] >= self.threshold:
            raise self._violation(field, scores[worst], f" at frame {indices[worst]}")

    def check_image(self, image: np.ndarray | Image.Image, *, field: str) -> None:
        """Score one input image (uint8 [H, W, 3] or PIL); raise when it passes the threshold."""
        (score,) = self._scorer.scores([_as_rgb_array(image)])
        logger.info("safety check of %s: score %.4f", field, score)
        if score >= self.threshold:
            raise self._violation(field, score, "")

    def _violation(self, field: str, score: float, where: str) -> JobError:
        return JobError(
            ErrorType.CONTENT_POLICY_VIOLATION,
            f"{field}: flagged by the safety checker (score {score:.3f} >= threshold {self.threshold}{where})",
        )
