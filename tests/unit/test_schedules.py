"""Schedules against values quoted from Lightricks/LTX-Video's configs (0.9.7, before the 0.9.8 rename)."""

from __future__ import annotations

from itertools import pairwise

import pytest

from service.pipelines.schedules import (
    DEV_13B_097_FIRST_PASS,
    DEV_13B_097_SECOND_PASS,
    DISTILLED_13B_097_FIRST_PASS_TIMESTEPS,
    DISTILLED_13B_097_SECOND_PASS_TIMESTEPS,
    GuidanceSchedule,
    distilled_timesteps,
    linear_quadratic_sigmas,
    trim_steps,
)

# configs/ltxv-13b-0.9.7-distilled.yaml
OFFICIAL_DISTILLED_FIRST = [1.0000, 0.9937, 0.9875, 0.9812, 0.9750, 0.9094, 0.7250]
OFFICIAL_DISTILLED_SECOND = [0.9094, 0.7250, 0.4219]


def test_distilled_defaults_reproduce_official_lists_exactly() -> None:
    steps = distilled_timesteps()
    assert list(steps.first_pass) == OFFICIAL_DISTILLED_FIRST
    assert list(steps.second_pass) == OFFICIAL_DISTILLED_SECOND
    assert list(DISTILLED_13B_097_FIRST_PASS_TIMESTEPS) == OFFICIAL_DISTILLED_FIRST
    assert list(DISTILLED_13B_097_SECOND_PASS_TIMESTEPS) == OFFICIAL_DISTILLED_SECOND


def test_linear_quadratic_hand_worked_four_steps() -> None:
    # 4 steps, threshold 0.025: linear noise 0, 0.0125; quadratic a=(2-0.1)/(2*4)=0.2375,
    # b=0.0125-2*1.9/4=-0.9375, c=0.95; noise(2)=0.95-1.875+0.95=0.025, noise(3)=2.1375-2.8125+0.95=0.275
    expected = [1.0, 1 - 0.0125, 1 - 0.025, 1 - 0.275]
    assert linear_quadratic_sigmas(4) == pytest.approx(expected, abs=1e-12)
    assert linear_quadratic_sigmas(1) == (1.0,)


@pytest.mark.parametrize("first", range(2, 13))
def test_distilled_steps_in_api_range(first: int) -> None:
    # API ranges: both step counts 2..12, skip 1..11 (skip must leave at least one step).
    for second, skip in ((s, k) for s in range(2, 13) for k in range(1, s)):
        steps = distilled_timesteps(first, second, skip)
        assert len(steps.first_pass) == first - 1
        assert len(steps.second_pass) == second - skip
        for seq in steps:
            assert all(0.0 < s <= 1.0 for s in seq)
            assert all(b < a for a, b in pairwise(seq))  # strictly decreasing
        assert steps.first_pass[0] == 1.0


def test_distilled_skip_must_leave_a_step() -> None:
    with pytest.raises(ValueError, match="second_pass_skip_initial_steps"):
        distilled_timesteps(8, 4, 4)


def test_trim_steps() -> None:
    assert trim_steps([1.0, 0.8, 0.5, 0.2], 1, 1) == (0.8, 0.5)
    with pytest.raises(ValueError):
        trim_steps([1.0, 0.5], 1, 1)


def test_dev_config_values() -> None:
    # configs/ltxv-13b-0.9.7-dev.yaml, first_pass and second_pass
    g = DEV_13B_097_FIRST_PASS.guidance
    assert list(g.guidance_timesteps) == [1.0, 0.996, 0.9933, 0.9850, 0.9767, 0.9008, 0.6180]
    assert list(g.guidance_scale) == [1, 1, 6, 8, 6, 1, 1]
    assert list(g.stg_scale) == [0, 0, 4, 4, 4, 2, 1]
    assert list(g.rescaling_scale) == [1, 1, 0.5, 0.5, 1, 1, 1]
    assert [list(b) for b in g.skip_block_list] == [
        [],
        [11, 25, 35, 39],
        [22, 35, 39],
        [28],
        [28],
        [28],
        [28],
    ]
    assert g.cfg_star_rescale is True
    assert (DEV_13B_097_FIRST_PASS.num_inference_steps, DEV_13B_097_FIRST_PASS.skip_final_steps) == (30, 3)
    second = DEV_13B_097_SECOND_PASS
    assert (second.num_inference_steps, second.skip_initial_steps) == (30, 17)
    assert second.guidance.settings_at(0.3).skip_blocks == (27,)
    assert second.guidance.settings_at(0.3).stg_scale == 1


@pytest.mark.parametrize(
    ("sigma", "interval"),
    [
        (1.0, 0),  # 1.0 <= 1.0
        (0.998, 1),  # first start <= 0.998 is 0.996
        (0.996, 1),
        (0.995, 2),
        (0.99, 3),  # 0.9850 <= 0.99
        (0.98, 4),
        (0.95, 5),
        (0.7, 6),
        (0.618, 6),
        (0.3, 6),  # below every start: the last interval
    ],
)
def test_dev_interval_selection(sigma: float, interval: int) -> None:
    g = DEV_13B_097_FIRST_PASS.guidance
    assert g.interval_at(sigma) == interval
    settings = g.settings_at(sigma)
    assert settings.guidance_scale == [1, 1, 6, 8, 6, 1, 1][interval]
    assert settings.stg_scale == [0, 0, 4, 4, 4, 2, 1][interval]


def test_dev_step_at_0_99_uses_cfg_8_stg_4_block_28() -> None:
    settings = DEV_13B_097_FIRST_PASS.guidance.settings_at(0.99)
    assert settings.uses_cfg and settings.uses_stg
    assert (settings.guidance_scale, settings.stg_scale, settings.rescaling_scale) == (8, 4, 0.5)
    assert settings.skip_blocks == (28,)
    assert settings.cfg_star_rescale


def test_dev_interval_starts_lie_on_the_30_step_schedule() -> None:
    # The config's starts, rounded to 4 decimals there, are steps of the 30-step linear-quadratic schedule.
    sigmas = linear_quadratic_sigmas(30)
    for step, start in zip((4, 9, 14, 19, 24), (0.9933, 0.9850, 0.9767, 0.9008, 0.6180), strict=True):
        assert sigmas[step] == pytest.approx(start, abs=5e-5)
    first_pass = DEV_13B_097_FIRST_PASS.steps_to_run(sigmas)
    assert len(first_pass) == 27 and first_pass[-1] == sigmas[26]  # 30 steps, the final 3 skipped
    second_pass = DEV_13B_097_SECOND_PASS.steps_to_run(sigmas)
    assert len(second_pass) == 13 and second_pass[0] == sigmas[17]  # the first 17 skipped


def test_schedule_validation() -> None:
    with pytest.raises(ValueError):
        GuidanceSchedule((1.0, 0.5), (1,), (0, 0), (1, 1), ((), ()), False)
    with pytest.raises(ValueError):
        GuidanceSchedule((0.5, 1.0), (1, 1), (0, 0), (1, 1), ((), ()), False)
