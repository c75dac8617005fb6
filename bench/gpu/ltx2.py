"""LTX-2.3 rows (placeholder until written)."""

from __future__ import annotations

from bench.gpu.plan import RunPlan


def lines(plan: RunPlan, peak: float, deadline: float) -> list[str]:
    return []
