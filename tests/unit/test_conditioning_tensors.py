"""Conditioning media as ltx_pipeline's tensors: exact round trips, and malformed tensors refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.contract import pipeline as contract
from service.domain.geometry import AspectRatio, Resolution
from service.domain.specs import ExtendSpec, ImageConditionSpec, MulticonditioningSpec, VideoConditionSpec
from service.engines.conditioning_tensors import (
    kept_from_arrays,
    kept_to_arrays,
    media_from_arrays,
    media_to_arrays,
)
from service.engines.endpoint_pipelines import EndpointInputs
from service.inputs import prepare_endpoint_inputs
from service.media.fetch import FetchLimits
from service.pipelines.conditioning import ConditioningMedia, unit_pixels
from tests.unit.test_media_inputs import mp4_uri, png_uri

SPEC = MulticonditioningSpec(
    prompt="p",
    negative_prompt="n",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.R16_9,
    width=64,
    height=32,
    num_frames=17,
    num_inference_steps=2,
    frame_rate=24,
    seed=0,
    images=(
        ImageConditionSpec(png_uri(40, 20, level=90), 0, 1.0),
        ImageConditionSpec(png_uri(8, 4), 16, 0.7),
    ),
    videos=(VideoConditionSpec(mp4_uri(12), start_frame=8, strength=0.35),),
    enable_safety_checker=False,
)


def _prepared() -> EndpointInputs:
    return prepare_endpoint_inputs(SPEC, FetchLimits(), None, lambda _: None)


def test_decoded_media_round_trip_bit_for_bit() -> None:
    media = _prepared().media
    assert [m.num_frames for m in media] == [1, 1, 9]  # two images, a 12-frame video trimmed to 8k + 1

    arrays = media_to_arrays(media)
    rebuilt = media_from_arrays(arrays)

    assert arrays[contract.CONDITION_FRAMES].dtype == np.uint8
    assert arrays[contract.CONDITION_FRAMES].shape == (11, 32, 64, 3)
    assert len(rebuilt) == len(media)
    for original, copy in zip(media, rebuilt, strict=True):
        # Videos are held as uint8 (issue 8), images as floats: the values are the same either way.
        assert torch.equal(unit_pixels(copy.pixels), unit_pixels(original.pixels))
        assert (copy.start_frame, copy.strength) == (original.start_frame, original.strength)
    assert [m.strength for m in rebuilt] == [1.0, 0.7, 0.35]  # exactly the spec's floats


def test_no_media_sends_no_tensors() -> None:
    assert media_to_arrays(()) == {}
    assert media_from_arrays({}) == ()


def test_condition_tensors_that_do_not_agree_are_refused() -> None:
    arrays = media_to_arrays(_prepared().media)
    short = {**arrays, contract.CONDITION_FRAME_COUNTS: np.array([1, 1, 8], dtype=np.int32)}
    with pytest.raises(ValueError, match="do not describe 11"):
        media_from_arrays(short)
    partial = {name: arrays[name] for name in (contract.CONDITION_FRAMES, contract.CONDITION_FRAME_COUNTS)}
    with pytest.raises(ValueError, match="missing"):
        media_from_arrays(partial)


def test_media_of_different_sizes_cannot_be_sent() -> None:
    small = ConditioningMedia(torch.zeros(1, 3, 1, 32, 32), 0, 1.0)
    wide = ConditioningMedia(torch.zeros(1, 3, 1, 32, 64), 8, 1.0)
    with pytest.raises(ValueError, match="one frame size"):
        media_to_arrays([small, wide])


def test_kept_frames_round_trip_and_none_kept() -> None:
    spec = ExtendSpec(
        prompt="p",
        negative_prompt="n",
        width=64,
        height=32,
        num_frames=17,
        frame_rate=24,
        num_inference_steps=2,
        seed=0,
        video=VideoConditionSpec(mp4_uri(12), start_frame=8),
    )
    kept = prepare_endpoint_inputs(spec, FetchLimits(), None, lambda _: None).kept_pixels
    assert kept is not None and kept.shape == (3, 8, 32, 64)

    assert torch.equal(kept_from_arrays(kept_to_arrays(kept), 64, 32), kept)
    assert kept_to_arrays(kept[:, :0]) == {}
    assert kept_from_arrays({}, 64, 32).shape == (3, 0, 32, 64)
    with pytest.raises(ValueError, match="64x48"):
        kept_from_arrays(kept_to_arrays(kept), 64, 48)
