"""The frame rule and the pixel convention of service/contract/frames.py, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.contract.frames import (
    frames_to_generate,
    is_legal_frame_count,
    legal_frames_at_most,
    pixel_frame_count,
    uint8_frames,
    uint8_from_unit,
    unit_from_uint8,
)


@pytest.mark.parametrize(
    ("frames", "expected"), [(1, 1), (8, 1), (9, 9), (24, 17), (25, 25), (30, 25), (0, 1)]
)
def test_legal_frames_at_most_is_the_largest_8k_plus_1_below(frames: int, expected: int) -> None:
    assert legal_frames_at_most(frames) == expected


def test_legal_counts_and_latent_pixel_frames() -> None:
    assert [n for n in range(1, 30) if is_legal_frame_count(n)] == [1, 9, 17, 25]
    assert not is_legal_frame_count(0)
    assert pixel_frame_count(16) == 121
    assert frames_to_generate(10, temporal_compression=4) == 13


def test_every_uint8_value_survives_the_round_trip() -> None:
    values = torch.arange(256, dtype=torch.uint8)
    unit = unit_from_uint8(values)
    assert unit.dtype == torch.float32
    assert unit[0].item() == -1.0 and unit[255].item() == 1.0
    assert torch.equal(uint8_from_unit(unit), values)


def test_out_of_range_values_clamp_and_consume_writes_in_place() -> None:
    unit = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5])
    assert uint8_from_unit(unit).tolist() == [0, 0, 128, 255, 255]  # 0.0 -> 127.5 rounds to even: 128
    assert unit.tolist() == [-3.0, -1.0, 0.0, 1.0, 2.5]  # not consumed: unchanged
    uint8_from_unit(unit, consume=True)
    assert unit[1].item() != -1.0  # consumed: overwritten


def test_uint8_frames_moves_channels_last() -> None:
    video = torch.full((3, 2, 4, 5), -1.0)
    video[0] = 1.0  # red channel full
    frames = uint8_frames(video)
    assert frames.shape == (2, 4, 5, 3) and frames.dtype == np.uint8
    assert frames[0, 0, 0].tolist() == [255, 0, 0]
