"""The whole distilled two-pass request (`generate_distilled`, the service's own pipeline code) with timed
components: first pass, latent upsampler, second pass, VAE decode, and the rest (noise, AdaIN, frames)."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.gpu import build, measure
from bench.gpu.plan import RunPlan
from bench.two_pass_vs_single import spec_for
from service.config import FastPathConfig
from service.domain.job_context import JobContext
from service.models import fast_path as fast_path_models
from service.models import torch_components as tc
from service.pipelines import distilled
from service.pipelines.components import Components
from service.pipelines.latents import LatentShape

logger = logging.getLogger(__name__)

STAGES = ("first pass", "upsampler", "second pass", "VAE decode")


@dataclass
class StageTotals:
    seconds: float = 0.0
    calls: int = 0
    peak_gib: float = float("nan")
    flops: float = float("nan")


class TimedComponent:
    """Proxy of one component: each call is drained and timed, and its peak memory read, into the stage
    that `stage_of(args)` names."""

    def __init__(
        self, inner: Any, device: torch.device, stage_of: Any, totals: dict[str, StageTotals]
    ) -> None:
        self.inner, self.device, self.stage_of, self.totals = inner, device, stage_of, totals

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with measure.peak_memory(self.device) as memory:
                result, seconds = measure.timed_call(lambda: method(*args, **kwargs), self.device)
            stage = self.totals[self.stage_of(args)]
            stage.seconds += seconds
            stage.calls += 1
            stage.peak_gib = (
                max(stage.peak_gib, memory["peak_gib"]) if stage.calls > 1 else memory["peak_gib"]
            )
            return result

        return timed


@dataclass
class RequestResult:
    wall_s: float
    cold_wall_s: float  # the first run: compiles and graph captures included
    stages: dict[str, StageTotals]
    first_tokens: int
    second_tokens: int
    frames_shape: tuple[int, ...]
    peak_gib: float
    notes: list[str] = field(default_factory=list)


def run_request(plan: RunPlan, cfg: FastPathConfig, flops: dict[str, float]) -> RequestResult:
    """Builds the three models with `cfg` applied, runs the request twice (cold, then timed)."""
    device = torch.device(plan.device)
    measure.free(device)
    transformer = build.build_transformer(plan)
    fast_path_models.apply_fast_path(transformer, cfg, plan.compile_options)
    base = build.components(plan, transformer, build.build_vae(plan), build.build_upsampler(plan))
    spec = spec_for(plan.width, plan.height, plan.num_frames)
    clip = distilled.clip_geometry(base, spec, plan.num_frames)
    first, second = clip.first_pass.num_tokens, clip.second_pass.num_tokens
    totals: dict[str, StageTotals] = {}
    timed = _timed_components(base, device, first, totals)

    def run() -> Any:
        return distilled.generate_distilled(timed, spec, (), JobContext.create())

    _, cold = measure.timed_call(run, device)
    totals.clear()
    totals.update({stage: StageTotals() for stage in STAGES})
    with measure.peak_memory(device) as memory:
        video, wall = measure.timed_call(run, device)
    for stage, value in flops.items():
        totals[stage].flops = value
    return RequestResult(
        wall_s=wall,
        cold_wall_s=cold,
        stages=dict(totals),
        first_tokens=first,
        second_tokens=second,
        frames_shape=tuple(video.frames.shape),
        peak_gib=memory["peak_gib"],
    )


def _timed_components(
    base: Components, device: torch.device, first_tokens: int, totals: dict[str, StageTotals]
) -> Components:
    for stage in STAGES:
        totals.setdefault(stage, StageTotals())

    def transformer_stage(args: tuple[Any, ...]) -> str:
        return "first pass" if args[0].shape[1] == first_tokens else "second pass"

    return dataclasses.replace(
        base,
        transformer=TimedComponent(base.transformer, device, transformer_stage, totals),
        upsampler=TimedComponent(base.upsampler, device, lambda _a: "upsampler", totals),
        vae_decoder=TimedComponent(base.vae_decoder, device, lambda _a: "VAE decode", totals),
    )


def stage_flops(
    plan: RunPlan, first: LatentShape, second: LatentShape, calls: dict[str, int]
) -> dict[str, float]:
    """FLOPs of each stage at these shapes, counted on the meta device (NaN where counting fails)."""
    from bench.gpu.step import step_flops

    vae = build.on_meta(build.AutoencoderKLLTXVideo, plan.vae).to(plan.dtype)
    geometry = build.geometry(plan, build.on_meta(build.LTXVideoTransformer3DModel, plan.transformer), vae)
    upsampler = build.on_meta(build.LTXLatentUpsamplerModel, plan.upsampler).to(plan.dtype)

    def latents(shape: LatentShape) -> torch.Tensor:
        return torch.empty(shape.batch, shape.channels, shape.frames, shape.height, shape.width, device="meta",
                           dtype=plan.dtype)  # fmt: skip

    counters = {
        "first pass": lambda: calls["first pass"] * step_flops(plan, first, geometry),
        "second pass": lambda: calls["second pass"] * step_flops(plan, second, geometry),
        "upsampler": lambda: measure.count_flops(
            lambda: tc.TorchLatentUpsampler(upsampler).upsample(latents(first))
        ),
        "VAE decode": lambda: measure.count_flops(
            lambda: tc.TorchVaeDecoder(vae).decode(
                latents(second), torch.zeros(1, device="meta", dtype=plan.dtype)
            )
        ),
    }
    result: dict[str, float] = {}
    for stage, count in counters.items():
        started = time.monotonic()
        try:
            result[stage] = float(count())
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as error:  # a meta-kernel gap
            logger.warning("could not count the FLOPs of %s: %s", stage, error)
            result[stage] = float("nan")
        logger.info("counted %s FLOPs in %.1f s", stage, time.monotonic() - started)
    return result
