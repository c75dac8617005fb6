"""One transformer step per fast-path configuration, against eager at the same weights and inputs."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from bench.gpu import build, measure
from bench.gpu.plan import RunPlan
from service.config import AttentionBackend, FastPathConfig
from service.contract.geometry import ModelGeometry
from service.models import fast_path
from service.models import torch_components as tc
from service.pipelines.latents import LatentShape, video_coords

logger = logging.getLogger(__name__)

# FP8 joins the best configuration only if its output stays this close to eager's (relative L2 norm).
FP8_MAX_RELATIVE_ERROR = 0.1
STEP_SIGMA = 0.725  # a mid-schedule noise level of the distilled second pass


@dataclass(frozen=True)
class StepConfig:
    name: str
    fast_path: FastPathConfig = dataclasses.field(default_factory=FastPathConfig)
    static_fp8: bool = False  # FP8 with activation scales calibrated on one eager call (bench only)
    needs_backend: AttentionBackend | None = None  # the row is n/a where this backend cannot serve


def step_configs() -> list[StepConfig]:
    sdpa = [
        StepConfig(f"SDPA {b.value}", FastPathConfig(attention_backend=b), needs_backend=b)
        for b in (AttentionBackend.FLASH, AttentionBackend.CUDNN, AttentionBackend.EFFICIENT)
    ]
    return [
        StepConfig("eager"),
        *sdpa,
        StepConfig("torch.compile (regional)", FastPathConfig(compile=True)),
        StepConfig("FP8 scaled mm (dynamic scales)", FastPathConfig(fp8=True)),
        StepConfig("FP8 scaled mm (static scales)", static_fp8=True),
        StepConfig("CUDA graphs", FastPathConfig(cuda_graphs=True)),
    ]


@dataclass
class StepRow:
    name: str
    status: str = "ok"  # or "n/a: why", "skipped: why", "failed: why"
    fast_path: FastPathConfig | None = None
    seconds: float = float("nan")  # median step
    first_call_s: float = float("nan")  # includes compile or capture
    peak_gib: float = float("nan")
    max_abs_diff: float = float("nan")
    relative_error: float = float("nan")
    output: torch.Tensor | None = dataclasses.field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


StepInputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def step_inputs(
    plan: RunPlan, geometry: ModelGeometry, shape: LatentShape, device: torch.device
) -> StepInputs:
    """One denoiser call's inputs at `shape`: seeded noise tokens, one sigma, rope coords, text."""
    timestep = torch.full((shape.batch, shape.num_tokens), STEP_SIGMA, device=device)
    coords = video_coords(shape, geometry, 24.0, device)
    text_shape = (shape.batch, plan.text_max_length, plan.text_dim)
    if device.type == "meta":  # for counting FLOPs: shapes only
        tokens = torch.empty(shape.batch, shape.num_tokens, shape.channels, device=device, dtype=plan.dtype)
        embeds = torch.empty(text_shape, device=device, dtype=plan.dtype)
        return tokens, timestep, coords, embeds, torch.ones(text_shape[:2], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(plan.seed + 10)
    tokens = torch.randn(shape.batch, shape.num_tokens, shape.channels, generator=generator, device=device)
    embeds, mask = build.RandomTextEncoder(plan).encode(["a prompt"] * shape.batch)
    return tokens.to(plan.dtype), timestep, coords, embeds, mask


def step_flops(plan: RunPlan, shape: LatentShape, geometry: ModelGeometry) -> int:
    """FLOPs of one transformer call at `shape`, counted on the meta device."""
    meta = build.on_meta(build.LTXVideoTransformer3DModel, plan.transformer).to(plan.dtype)
    inputs = step_inputs(plan, geometry, shape, torch.device("meta"))
    return measure.count_flops(lambda: tc.TorchTransformer(meta).velocity(*inputs))


def backend_unavailable(backend: AttentionBackend, plan: RunPlan, device: torch.device) -> str | None:
    """Why `backend` cannot run the self-attention of this model, or None when it can."""
    heads, head_dim = plan.transformer["num_attention_heads"], plan.transformer["attention_head_dim"]
    q = torch.randn(1, heads, 256, head_dim, device=device).to(plan.dtype)
    try:
        with fast_path.only_sdpa_backend(backend):
            F.scaled_dot_product_attention(q, q, q)
    except RuntimeError as error:
        return str(error).splitlines()[0][:60]
    return None


def run_step(
    config: StepConfig,
    plan: RunPlan,
    inputs: StepInputs,
    reference: torch.Tensor | None,
) -> StepRow:
    device = torch.device(plan.device)
    row = StepRow(config.name, fast_path=config.fast_path)
    if config.fast_path.cuda_graphs and device.type != "cuda":
        row.status = "n/a: CUDA graphs need a CUDA device"
        return row
    if config.needs_backend is not None:
        why = backend_unavailable(config.needs_backend, plan, device)
        if why:
            row.status = f"n/a: {why}"
            return row
    measure.free(device)
    with measure.peak_memory(device) as memory:
        transformer = build.build_transformer(plan)
        binding = tc.TorchTransformer(transformer)

        def call() -> torch.Tensor:
            return binding.velocity(*inputs)

        prepare(config, transformer, call, plan.compile_options)
        _, row.first_call_s = measure.timed_call(call, device)
        for _ in range(plan.warmups - 1):
            call()
        output, row.seconds = measure.median_seconds(call, device, plan.repeats)
    row.peak_gib = memory["peak_gib"]
    row.output = output.float().cpu()
    if reference is not None:
        row.max_abs_diff = measure.max_abs_diff(row.output, reference)
        row.relative_error = float((row.output - reference).norm() / reference.norm())
    return row


def prepare(
    config: StepConfig, transformer: torch.nn.Module, call: Callable[[], Any], compile_options: dict[str, Any]
) -> None:
    if config.static_fp8:
        scales = fast_path.calibrate_input_scales(transformer, call)
        fast_path.swap_fp8_linears(transformer, scales)
    fast_path.apply_fast_path(transformer, config.fast_path, compile_options)


def guarded(run: Callable[[], StepRow], name: str, deadline: float) -> StepRow:
    """`run()`, or a row that says why it did not run (time budget) or how it failed."""
    if time.monotonic() > deadline:
        return StepRow(name, status="skipped: time budget spent")
    try:
        return run()
    except Exception as error:  # one configuration's failure must not cost the others' numbers
        logger.exception("%s failed", name)
        return StepRow(name, status=f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}")


def best_config(rows: list[StepRow], dtype: str) -> FastPathConfig:
    """The fastest backend, plus each of compile / FP8 / CUDA graphs that beat eager (FP8 only when its
    output stays within FP8_MAX_RELATIVE_ERROR of eager's)."""
    by_name = {row.name: row for row in rows if row.ok}
    eager = by_name["eager"].seconds
    backends = [r for r in by_name.values() if r.name == "eager" or r.name.startswith("SDPA ")]
    fastest = min(backends, key=lambda r: r.seconds)
    backend = fastest.fast_path.attention_backend if fastest.fast_path else AttentionBackend.DEFAULT

    def wins(name: str) -> bool:
        return name in by_name and by_name[name].seconds < eager

    fp8 = wins("FP8 scaled mm (dynamic scales)") and (
        by_name["FP8 scaled mm (dynamic scales)"].relative_error <= FP8_MAX_RELATIVE_ERROR
    )
    return FastPathConfig(
        dtype=dtype,
        attention_backend=backend,
        compile=wins("torch.compile (regional)"),
        fp8=fp8,
        cuda_graphs=wins("CUDA graphs"),
    )


def describe(cfg: FastPathConfig) -> str:
    parts = [f"SDPA {cfg.attention_backend.value}"]
    parts += [
        name
        for name, on in (("compile", cfg.compile), ("FP8", cfg.fp8), ("CUDA graphs", cfg.cuda_graphs))
        if on
    ]
    return " + ".join(parts)
