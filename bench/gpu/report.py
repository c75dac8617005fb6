"""The one markdown table: the step per configuration, then the request stage by stage."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.gpu.request import STAGES, RequestResult
from bench.gpu.step import StepRow
from service.config import FastPathConfig

HEADER = (
    "| what | status | time | vs eager / vs anchor | MFU (measured matmul peak) | peak GPU memory (GiB) "
    "| max abs diff vs eager | relative L2 vs eager |"
)


def _num(value: float, fmt: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, fmt)


def step_lines(rows: Sequence[StepRow], flops: float, peak_flops: float, tokens: int) -> list[str]:
    eager = next((r.seconds for r in rows if r.name == "eager" and r.ok), math.nan)
    lines = []
    for row in rows:
        speedup = eager / row.seconds if row.ok else math.nan
        mfu = flops / row.seconds / peak_flops if row.ok else math.nan
        lines.append(
            f"| step ({tokens} tokens): {row.name} | {row.status} | {_num(row.seconds * 1000, '.1f')} ms "
            f"(first call {_num(row.first_call_s, '.1f')} s) | {_num(speedup, '.2f')}x | {_num(mfu * 100, '.1f')}% "
            f"| {_num(row.peak_gib, '.1f')} | {_num(row.max_abs_diff, '.3g')} | {_num(row.relative_error, '.3g')} |"
        )
    return lines


def request_lines(result: RequestResult, peak_flops: float, anchor_s: float, config: str) -> list[str]:
    lines = []
    for stage in STAGES:
        totals = result.stages[stage]
        mfu = totals.flops / totals.seconds / peak_flops if totals.seconds else math.nan
        lines.append(
            f"| request: {stage} ({totals.calls} calls) | ok | {totals.seconds:.2f} s | "
            f"{totals.seconds / anchor_s:.2f} of {anchor_s:g} s | {_num(mfu * 100, '.1f')}% "
            f"| {_num(totals.peak_gib, '.1f')} | - | - |"
        )
    rest = result.wall_s - sum(result.stages[s].seconds for s in STAGES)
    lines.append(
        f"| request: the rest (noise, AdaIN, frames to uint8) | ok | {rest:.2f} s | - | - | - | - | - |"
    )
    lines.append(
        f"| **request total ({config})** | ok | **{result.wall_s:.2f} s** (cold {result.cold_wall_s:.1f} s) | "
        f"**{result.wall_s / anchor_s:.2f}x the {anchor_s:g} s anchor** | - | {_num(result.peak_gib, '.1f')} | - | - |"
    )
    return lines


def table(lines: Sequence[str]) -> str:
    return "\n".join([HEADER, "|---|---|---|---|---|---|---|---|", *lines])


def fast_path_toml(cfg: FastPathConfig, name: str) -> str:
    """The `[fast_path]` section that runs the fastest measured configuration (README, "The fast path")."""
    return "\n".join(
        [
            f"# the fastest configuration measured here ({name}), for the service's config file:",
            "[fast_path]",
            f'dtype = "{cfg.dtype}"',
            f'attention_backend = "{cfg.attention_backend.value}"',
            f"compile = {str(cfg.compile).lower()}",
            f"fp8 = {str(cfg.fp8).lower()}",
            f"cuda_graphs = {str(cfg.cuda_graphs).lower()}",
        ]
    )
