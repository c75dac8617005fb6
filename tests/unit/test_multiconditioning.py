"""The multiconditioning (13B dev) pipeline on the tiny preset: guidance schedule, STG, conditions."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from service.config import ModelConfig
from service.domain.errors import Cancelled
from service.domain.geometry import AspectRatio, Resolution
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress, ProgressCallback
from service.domain.specs import ImageConditionSpec, MulticonditioningSpec
from service.engines import torch_bindings
from service.pipelines.components import Components, PerturbableTransformer, Perturbation
from service.pipelines.conditioning import ConditioningMedia
from service.pipelines.multiconditioning import NO_STG_MESSAGE, generate_multiconditioning, map_skip_blocks
from service.pipelines.schedules import linear_quadratic_sigmas

SPEC = MulticonditioningSpec(
    prompt="a red kite over green hills",
    negative_prompt="blurry",
    resolution=Resolution.P480,
    aspect_ratio=AspectRatio.AUTO,
    width=64,
    height=64,
    num_frames=9,
    num_inference_steps=3,
    frame_rate=25,
    seed=11,
)

# configs/ltxv-13b-0.9.7-dev.yaml, first pass, written out here independently of schedules.py.
OFFICIAL_STARTS = (1.0, 0.996, 0.9933, 0.9850, 0.9767, 0.9008, 0.6180)
OFFICIAL_CFG = (1, 1, 6, 8, 6, 1, 1)
OFFICIAL_STG = (0, 0, 4, 4, 4, 2, 1)


@pytest.fixture(scope="module")
def components() -> Components:
    return torch_bindings.load_components(ModelConfig())


class RecordingTransformer:
    """Wraps the tiny transformer binding and records each call's batch size and perturbation."""

    def __init__(self, inner: PerturbableTransformer, num_blocks: int | None = None) -> None:
        self.inner = inner
        self._num_blocks = num_blocks if num_blocks is not None else inner.num_blocks
        self.batches: list[int] = []
        self.perturbations: list[Perturbation | None] = []

    @property
    def num_blocks(self) -> int:
        return self._num_blocks

    def velocity(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        video_coords: torch.Tensor,
        embeds: torch.Tensor,
        mask: torch.Tensor,
        perturbation: Perturbation | None = None,
    ) -> torch.Tensor:
        self.batches.append(hidden_states.shape[0])
        self.perturbations.append(perturbation)
        if perturbation is not None:  # the tiny model has one block: run the real STG on block 0
            perturbation = Perturbation(skip_blocks=(0,), rows=perturbation.rows)
        return self.inner.velocity(hidden_states, timestep, video_coords, embeds, mask, perturbation)


class PlainTransformer:
    """A binding without STG (like Triton's): only the base `Transformer.velocity`."""

    def __init__(self, inner: PerturbableTransformer) -> None:
        self.inner = inner
        self.batches: list[int] = []

    def velocity(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        video_coords: torch.Tensor,
        embeds: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        self.batches.append(hidden_states.shape[0])
        return self.inner.velocity(hidden_states, timestep, video_coords, embeds, mask)


def _official(sigma: float, column: tuple[int, ...]) -> int:
    for start, value in zip(OFFICIAL_STARTS, column, strict=True):
        if start <= sigma:
            return value
    return column[-1]


def _generate(
    components: Components,
    spec: MulticonditioningSpec = SPEC,
    media: Sequence[ConditioningMedia] = (),
    events: list[Progress] | None = None,
) -> GeneratedVideo:
    sink: ProgressCallback = events.append if events is not None else (lambda _: None)
    return generate_multiconditioning(components, spec, list(media), JobContext.create(on_progress=sink))


@pytest.mark.parametrize(
    ("blocks", "num_blocks", "expected"),
    [((11, 25, 35, 39), 48, (11, 25, 35, 39)), ((11, 25, 35, 39), 1, (0,)), ((11, 25, 35, 39), 4, (1, 3))],
)
def test_skip_blocks_map_modulo_the_block_count(
    blocks: tuple[int, ...], num_blocks: int, expected: tuple[int, ...]
) -> None:
    assert map_skip_blocks(blocks, num_blocks) == expected


def test_dev_schedule_runs_cfg_and_stg_on_the_official_steps(components: Components) -> None:
    steps = 30
    recorder = RecordingTransformer(components.transformer, num_blocks=4)  # type: ignore[arg-type]
    spec = dataclasses.replace(SPEC, num_inference_steps=steps)
    _generate(dataclasses.replace(components, transformer=recorder), spec)
    sigmas = linear_quadratic_sigmas(steps)
    # One call per step, batching [uncond if CFG] + cond + [perturbed if STG].
    expected_batches = [
        1 + (_official(s, OFFICIAL_CFG) > 1) + (_official(s, OFFICIAL_STG) > 0) for s in sigmas
    ]
    assert recorder.batches == expected_batches
    perturbed_steps = [i for i, p in enumerate(recorder.perturbations) if p is not None]
    assert perturbed_steps == [i for i, s in enumerate(sigmas) if _official(s, OFFICIAL_STG) > 0]
    assert 0 < len(perturbed_steps) < steps  # the first, high-noise steps run without STG
    first = recorder.perturbations[perturbed_steps[0]]
    assert first is not None
    # STG first runs in the third interval, whose official skip blocks (22, 35, 39) are (2, 3) modulo 4.
    assert first.skip_blocks == (2, 3)
    assert first.rows.tolist()[-1] is True and not any(first.rows.tolist()[:-1])  # the last pass only


def test_binding_without_stg_runs_cfg_only_and_says_so(components: Components) -> None:
    plain = PlainTransformer(components.transformer)  # type: ignore[arg-type]
    events: list[Progress] = []
    spec = dataclasses.replace(SPEC, num_inference_steps=10)
    video = _generate(dataclasses.replace(components, transformer=plain), spec, events=events)
    assert video.frames.shape == (9, 64, 64, 3)
    assert NO_STG_MESSAGE in [event.message for event in events]
    sigmas = linear_quadratic_sigmas(10)
    assert plain.batches == [1 + (_official(s, OFFICIAL_CFG) > 1) for s in sigmas]


def test_torch_binding_perturbs_only_the_marked_rows(components: Components) -> None:
    transformer = components.transformer
    assert isinstance(transformer, PerturbableTransformer)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 8, 8, generator=generator).repeat(2, 1, 1)
    timestep = torch.full((2, 8), 0.5)
    coords = torch.rand(1, 3, 8, generator=generator).repeat(2, 1, 1)
    embeds, mask = components.text_encoder.encode(["a", "a"])
    plain = transformer.velocity(latents, timestep, coords, embeds, mask)
    rows = torch.tensor([False, True])
    perturbed = transformer.velocity(latents, timestep, coords, embeds, mask, Perturbation((0,), rows))
    assert torch.equal(perturbed[0], plain[0])
    assert not torch.allclose(perturbed[1], plain[1])


def test_output_has_the_requested_frames_and_is_reproducible(components: Components) -> None:
    spec = dataclasses.replace(SPEC, num_frames=10, width=96)
    first, second = _generate(components, spec), _generate(components, spec)
    assert first.frames.shape == (10, 64, 96, 3)
    assert np.array_equal(first.frames, second.frames)
    assert (first.prompt, first.seed, first.frame_rate) == (spec.prompt, spec.seed, 25.0)


def test_conditions_change_the_output_and_reverse_reverses(components: Components) -> None:
    image = torch.rand(1, 3, 1, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    spec = dataclasses.replace(SPEC, images=(ImageConditionSpec("unused", 0, 1.0),))
    media = [ConditioningMedia(image, start_frame=0, strength=1.0)]
    free = _generate(components, SPEC).frames
    conditioned = _generate(components, spec, media).frames
    assert not np.array_equal(free, conditioned)
    backward = _generate(components, dataclasses.replace(spec, reverse_video=True), media).frames
    assert np.array_equal(backward, conditioned[::-1])


def test_unresolved_auto_size_is_refused(components: Components) -> None:
    with pytest.raises(ValueError, match="AUTO"):
        _generate(components, dataclasses.replace(SPEC, width=0, height=0))


def test_cancel_is_checked_between_steps(components: Components) -> None:
    calls = iter([False, False, True])  # cancelled after the second step
    events: list[Progress] = []
    with pytest.raises(Cancelled):
        generate_multiconditioning(
            components,
            SPEC,
            [],
            JobContext.create(on_progress=events.append, is_cancelled=lambda: next(calls)),
        )
    assert [event.step for event in events if event.stage == "denoising"] == [1, 2]
