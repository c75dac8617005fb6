"""python -m bench.gpu [--smoke] [--budget-s 360] [--json results.json] [--no-request] [--no-ltx2]

On one CUDA GPU: LTX-Video 0.9.7 13B at the real shapes (random weights), one transformer step per fast-path
configuration, then the whole distilled two-pass request (1216x704, 121 frames, 7 + 3 steps) with the best
one; prints one markdown table. --smoke: the same code on a CPU at reduced depth and size.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import torch
from diffusers.utils import logging as diffusers_logging

from bench.gpu import build, measure, report, step
from bench.gpu.plan import RunPlan, real_plan, smoke_plan
from bench.gpu.request import RequestResult, run_request, stage_flops
from bench.two_pass_vs_single import spec_for
from service.config import AttentionBackend, FastPathConfig
from service.pipelines import distilled
from service.pipelines.components import Components

logger = logging.getLogger("bench.gpu")

DTYPE_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="reduced depth and size, on a CPU")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=360.0,
        help="seconds; step rows start only in the first 60%%, LTX-2.3 rows only before the end",
    )
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--no-request", action="store_true", help="only the step rows")
    parser.add_argument("--no-ltx2", action="store_true", help="leave out the LTX-2.3 rows")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    diffusers_logging.set_verbosity_error()  # its per-cast "kept in float32: []" notices, once per row
    plan = smoke_plan() if args.smoke else real_plan(args.budget_s)
    if plan.device == "cuda" and not torch.cuda.is_available():
        print("bench.gpu needs a CUDA GPU (torch.cuda.is_available() is False); on a CPU run --smoke")
        return 2
    results = run(plan, not args.no_request, not args.no_ltx2)
    print(results["markdown"])
    if args.json:
        with open(args.json, "w") as out:
            json.dump({k: v for k, v in results.items() if k != "markdown"}, out, indent=2, default=str)
    return 0 if results["eager_ok"] else 1


def run(plan: RunPlan, with_request: bool = True, with_ltx2: bool = True) -> dict[str, Any]:
    started = time.monotonic()
    device = torch.device(plan.device)
    peak = measure.matmul_peak_flops(device, plan.dtype, plan.matmul_size)
    logger.info("bf16 matmul peak %.1f TFLOP/s", peak / 1e12)
    geometry = build.geometry(
        plan,
        build.on_meta(build.LTXVideoTransformer3DModel, plan.transformer),
        build.on_meta(build.AutoencoderKLLTXVideo, plan.vae),
    )
    spec = spec_for(plan.width, plan.height, plan.num_frames)
    clip = distilled.clip_geometry(
        cast(Components, SimpleNamespace(geometry=geometry)), spec, plan.num_frames
    )
    shape = clip.second_pass
    flops = step.step_flops(plan, shape, geometry)
    inputs = step.step_inputs(plan, geometry, shape, device)
    rows_deadline = started + 0.6 * plan.budget_s
    rows = step_rows(plan, inputs, rows_deadline)
    eager_ok = bool(rows) and rows[0].ok
    lines = report.step_lines(rows, flops, peak, shape.num_tokens)
    chosen, chosen_name = choose(rows, plan)
    request: RequestResult | None = None
    if with_request and eager_ok:
        calls = {"first pass": len(clip.timesteps.first_pass), "second pass": len(clip.timesteps.second_pass)}
        try:
            request = run_request(plan, chosen, stage_flops(plan, clip.first_pass, clip.second_pass, calls))
            lines += report.request_lines(request, peak, plan.anchor_s, chosen_name)
        except Exception as error:  # the step rows above must still be printed
            logger.exception("the request failed")
            lines.append(
                f"| request ({chosen_name}) | failed: {type(error).__name__}: {str(error).splitlines()[0][:120]} | - | - | - | - | - | - |"
            )
        measure.free(device)
    if with_ltx2:
        from bench.gpu import ltx2

        # The smoke run's chosen configuration is eager on a CPU: exercise the fast-path code on LTX-2.3 anyway.
        fast = (
            FastPathConfig(fp8=True, attention_backend=AttentionBackend.FLASH)
            if plan.device == "cpu"
            else chosen
        )
        lines += ltx2.lines(plan, peak, started + plan.budget_s, fast)
    heading = _heading(plan, peak, shape.num_tokens, flops, time.monotonic() - started)
    return {
        "markdown": heading
        + "\n\n"
        + report.table(lines)
        + "\n\n"
        + report.fast_path_toml(chosen, chosen_name),
        "eager_ok": eager_ok,
        "peak_flops": peak,
        "step_flops": flops,
        "step_tokens": shape.num_tokens,
        "rows": [{k: v for k, v in dataclasses.asdict(r).items() if k != "output"} for r in rows],
        "chosen": dataclasses.asdict(chosen),
        "request": dataclasses.asdict(request) if request else None,
        "seconds": time.monotonic() - started,
    }


def step_rows(plan: RunPlan, inputs: step.StepInputs, deadline: float) -> list[step.StepRow]:
    rows: list[step.StepRow] = []
    dtype = DTYPE_NAMES[plan.dtype]
    for config in step.step_configs():
        config = dataclasses.replace(config, fast_path=dataclasses.replace(config.fast_path, dtype=dtype))
        reference = rows[0].output if rows and rows[0].ok else None
        rows.append(
            step.guarded(
                functools.partial(step.run_step, config, plan, inputs, reference), config.name, deadline
            )
        )
        _forget_compiled()
        if not rows[0].ok:
            break  # nothing to compare with
    if rows and rows[0].ok:
        best = step.best_config(rows, dtype)
        if all(r.fast_path != best for r in rows if r.ok):
            config = step.StepConfig(f"best: {step.describe(best)}", best)
            rows.append(
                step.guarded(
                    lambda: step.run_step(config, plan, inputs, rows[0].output), config.name, deadline
                )
            )
            _forget_compiled()
    return rows


def choose(rows: list[step.StepRow], plan: RunPlan) -> tuple[FastPathConfig, str]:
    """The fastest measured configuration the service can be set to (static FP8 scales are bench-only)."""
    usable = [r for r in rows if r.ok and r.fast_path is not None and "static" not in r.name]
    fp8_ok = [r for r in usable if not r.fast_path.fp8 or r.relative_error <= step.FP8_MAX_RELATIVE_ERROR]  # type: ignore[union-attr]
    if not fp8_ok:
        return FastPathConfig(dtype=DTYPE_NAMES[plan.dtype]), "eager"
    fastest = min(fp8_ok, key=lambda r: r.seconds)
    return cast(FastPathConfig, fastest.fast_path), fastest.name


def _forget_compiled() -> None:
    # Compiled code keeps guards on the modules it saw; drop it so that each row's transformer is freed.
    torch._dynamo.reset()
    gc.collect()


def _heading(plan: RunPlan, peak: float, tokens: int, flops: float, seconds: float) -> str:
    if plan.device == "cuda":
        machine = f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
    else:
        machine = f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"
    return (
        f"bench.gpu: {plan.name}\n"
        f"machine: {machine}; torch {torch.__version__}; dtype {DTYPE_NAMES[plan.dtype]}; "
        f"measured {DTYPE_NAMES[plan.dtype]} matmul peak {peak / 1e12:.2f} TFLOP/s ({plan.matmul_size}^3)\n"
        f"step: the request's second pass, {tokens} tokens, batch 1, {flops / 1e12:.3g} TFLOP per call "
        f"(counted on meta); request: {plan.width}x{plan.height}, {plan.num_frames} frames, distilled 8/8/5 "
        f"(7 + 3 steps); whole run {seconds:.0f} s" + ("" if math.isfinite(peak) else " (no peak)")
    )


if __name__ == "__main__":
    sys.exit(main())
