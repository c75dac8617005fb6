"""Issue 9: what each `acceleration` level buys and costs on the tiny LTX-2.3 preset.

Run: `OMP_NUM_THREADS=2 .venv/bin/python -m bench.ltx2_acceleration [--width 256 --height 160 --frames 25]`.

The spec example (15 beta steps, CFG/STG/modality guidance on both modalities, restart sampling, multiscale,
the distilled LoRA per pass) at a small size, through the in-process runner the service uses, once per level
with the same seed. Per level: the pipeline's wall time and stage 1's (from its first transformer call to the
upsampler; wall and this process's CPU seconds, which a loaded machine inflates far less), stage 1's
transformer calls and passes (batch rows: cond, uncond and STG share one call, the
modality pass is a second; counted by a forward hook), the speed-ups against
`none`, and the deviation of its result from `none`'s:
  PSNR (dB)      of the decoded uint8 frames (higher = closer; inf = identical)
  video / audio  relative RMSE of the final latents entering the video and audio VAE decoders,
                 rms(x - x_none) / rms(x_none)
  wave           relative RMSE of the 48 kHz waveform
Random weights show how far a level moves the result, not whether it looks or sounds worse: a real
checkpoint is needed for perceptual quality.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from google.protobuf import json_format

from ltx.v1 import endpoints_pb2 as pb
from service.api.convert import ltx2_spec
from service.config import ServiceConfig, load_config
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.domain.progress import Progress, Stage
from service.domain.specs import Acceleration, Ltx2TextToVideoSpec
from service.engines.endpoint_pipelines import EndpointInputs, run_endpoint
from service.engines.ltx2_local import Ltx2ModelSet
from service.models.lora import FetchedLora

EXAMPLE = Path(__file__).resolve().parents[1] / "tests/data/spec_examples/ltx-2.3-22b-text-to-video-lora.json"


@dataclasses.dataclass
class LevelRun:
    level: Acceleration
    total_s: float
    stage1_s: float
    stage1_cpu_s: float  # this process's CPU seconds: what a shared machine's load does not inflate
    stage1_calls: int
    stage1_passes: int
    video: GeneratedVideo
    video_latents: torch.Tensor
    audio_latents: torch.Tensor


def bench_spec(width: int, height: int, frames: int) -> Ltx2TextToVideoSpec:
    """The spec example at a small size, without prompt expansion (it does not depend on the level)."""
    message = json_format.ParseDict(json.loads(EXAMPLE.read_text()), pb.Ltx2TextToVideoInput())
    spec = ltx2_spec(message, rng=random.Random(0))
    return dataclasses.replace(spec, width=width, height=height, num_frames=frames, expand_prompt=False)


@contextmanager
def captured_inputs(module: torch.nn.Module, into: list[torch.Tensor]) -> Iterator[None]:
    """Record the first positional input of every call of `module`."""
    handle = module.register_forward_pre_hook(lambda _m, args: into.append(args[0].detach().float().clone()))
    try:
        yield
    finally:
        handle.remove()


class Ltx2LocalRunner:
    """The in-process path the service takes for this endpoint: LocalEngine's LTX-2.3 model set (lock,
    prompt expansion, LoRAs per stage) and the registry's `run_endpoint`, on the LTX-2.3 models only."""

    def __init__(self, config: ServiceConfig) -> None:
        self.model_set = Ltx2ModelSet(config)
        self.models = self.model_set.models

    def generate(
        self, spec: Ltx2TextToVideoSpec, loras: list[FetchedLora], ctx: JobContext
    ) -> GeneratedVideo:
        with self.model_set.job(EndpointInputs(spec), loras, ctx) as job:
            return run_endpoint(job.components, job.inputs, ctx)


def run_level(runner: Ltx2LocalRunner, spec: Ltx2TextToVideoSpec, level: Acceleration) -> LevelRun:
    models = runner.models
    marks: dict[str, float] = {}
    cpu: dict[str, float] = {}
    forwards = {"calls": 0, "passes": 0}

    def progress(event: Progress) -> None:
        if event.stage is Stage.UPSAMPLING:
            marks.setdefault("upsampler", time.perf_counter())
            cpu.setdefault("upsampler", time.process_time())

    def count(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        if "upsampler" not in marks:  # stage 1: from its first transformer call to the upsampler
            marks.setdefault("stage 1", time.perf_counter())
            cpu.setdefault("stage 1", time.process_time())
            forwards["calls"] += 1
            forwards["passes"] += int(kwargs["hidden_states"].shape[0])  # cond/uncond/STG rows of one call

    video_in: list[torch.Tensor] = []
    audio_in: list[torch.Tensor] = []
    hook = models.transformer.register_forward_pre_hook(count, with_kwargs=True)
    try:
        with (
            captured_inputs(models.vae.decoder, video_in),
            captured_inputs(models.audio_vae.decoder, audio_in),
        ):
            started = time.perf_counter()
            video = runner.generate(
                dataclasses.replace(spec, acceleration=level), [], JobContext.create(on_progress=progress)
            )
            total = time.perf_counter() - started
    finally:
        hook.remove()
    stage1 = marks["upsampler"] - marks["stage 1"]
    stage1_cpu = cpu["upsampler"] - cpu["stage 1"]
    return LevelRun(
        level,
        total,
        stage1,
        stage1_cpu,
        forwards["calls"],
        forwards["passes"],
        video,
        video_in[-1],
        audio_in[-1],
    )


def best_of(
    repeats: int, runner: Ltx2LocalRunner, spec: Ltx2TextToVideoSpec, level: Acceleration
) -> LevelRun:
    """The fastest of `repeats` runs (a shared machine only ever adds time); the results are seeded, so
    every run's output is the same."""
    runs = [run_level(runner, spec, level) for _ in range(repeats)]
    if any(not np.array_equal(run.video.frames, runs[0].video.frames) for run in runs):
        raise RuntimeError(f"acceleration {level.value}: repeated runs gave different frames")
    return min(runs, key=lambda run: run.total_s)


def relative_rmse(x: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> float:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))


def psnr(frames: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean((frames.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def table(runs: list[LevelRun]) -> str:
    base = runs[0]
    rows = [
        "| level | pipeline s | x | stage 1 s | x | stage 1 CPU s | x | stage-1 calls / passes | PSNR dB "
        "| video latents | audio latents | wave |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        audio = run.video.audio if run.video.audio is not None else np.zeros(1)
        reference_audio = base.video.audio if base.video.audio is not None else np.zeros(1)
        rows.append(
            f"| {run.level.value} | {run.total_s:.1f} | {base.total_s / run.total_s:.2f} "
            f"| {run.stage1_s:.1f} | {base.stage1_s / run.stage1_s:.2f} "
            f"| {run.stage1_cpu_s:.1f} | {base.stage1_cpu_s / run.stage1_cpu_s:.2f} | {run.stage1_calls} / {run.stage1_passes} "
            f"| {psnr(run.video.frames, base.video.frames):.1f} "
            f"| {relative_rmse(run.video_latents, base.video_latents):.3f} "
            f"| {relative_rmse(run.audio_latents, base.audio_latents):.3f} "
            f"| {relative_rmse(audio, reference_audio):.3f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=160)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="times are the best of this many runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = bench_spec(args.width, args.height, args.frames)
    runner = Ltx2LocalRunner(load_config())
    runner.generate(dataclasses.replace(spec, num_inference_steps=2), [], JobContext.create())  # warm-up
    runs = [best_of(args.repeats, runner, spec, level) for level in Acceleration]
    print(
        f"{spec.width}x{spec.height}, {spec.num_frames} frames, {spec.num_inference_steps} {spec.scheduler.value} "
        f"steps, multiscale {spec.use_multiscale}, {args.threads} threads"
    )
    print(table(runs))


if __name__ == "__main__":
    main()
