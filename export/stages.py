"""The export as cached, re-runnable stages, keyed by the model settings' hash (ServiceConfig.model_hash).

    <cache>/<model_hash>/assets/                  tokenizer, geometry, scheduler config
    <cache>/<model_hash>/onnx/<component>.<precision>.onnx (+ .data)
    <cache>/<model_hash>/onnx/<component>.parity.json   fp32 graph vs torch, onnxruntime
    <cache>/<model_hash>/onnx/<component>.fp8.parity.json  the FP8 Q/DQ graph vs torch (export/fp8.py)
    <cache>/<model_hash>/engines/<component>.<precision>.<profile hash>.plan (+ .parity.json)
    <cache>/timing-<gpu>.cache                    TensorRT timing cache, shared by every build on that GPU

A stage whose `.done` marker exists is skipped, so a re-run after a failure (or with one more component)
redoes only what is missing. The marker is written last: an interrupted stage is redone from scratch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.components import COMPONENT_TYPES, ApiRanges, ExportableComponent, Family, SampleSize, declare
from export.fp8 import FP8_COMPONENTS, FP8_TOLERANCE
from export.parity import ParityResult, Tolerance, check_parity, require_parity
from export.shapes import BATCH, LATENT_FRAMES, LATENT_HEIGHT, LATENT_WIDTH
from service.config import ServiceConfig
from service.models.assets import PipelineAssets, load_assets, save_assets

if TYPE_CHECKING:
    from service.models.loading import LoadedModels
    from service.models.ltx2 import Ltx2Models

log = logging.getLogger(__name__)


class Precision(StrEnum):
    FP32 = "fp32"
    BF16 = "bf16"
    FP8 = "fp8"  # FP8 GEMMs (ModelOpt Q/DQ) in the GEMM-heavy components, the others in bf16

    @property
    def torch_dtype_name(self) -> str:
        # An fp8 graph is quantized from the fp32 export (export/fp8.py).
        return {Precision.FP32: "float32", Precision.BF16: "bfloat16", Precision.FP8: "float32"}[self]


# A bf16 engine against the fp32 torch model: bf16 keeps 8 mantissa bits (~4e-3 relative per op) and the
# error grows with depth, so a few percent of the output's scale is rounding; a wrong graph is off by ~100%.
BF16_TOLERANCE = Tolerance(atol=2e-2, rtol=5e-2)
ENGINE_TOLERANCE = {
    Precision.FP32: Tolerance(atol=1e-3, rtol=1e-2),
    Precision.BF16: BF16_TOLERANCE,
    Precision.FP8: FP8_TOLERANCE,
}


@dataclass
class ExportStages:
    config: (
        ServiceConfig  # its `model` (LTX-Video) and `ltx2` (LTX-2.3) name the weights; the rest is ignored
    )
    cache_dir: Path
    component_names: tuple[str, ...]  # of either family (export/components.py, export/ltx2_components.py)
    precision: Precision = Precision.BF16
    api: ApiRanges | None = None  # None: the ranges of the endpoints the components serve
    _models: dict[Precision, LoadedModels] = field(default_factory=dict, repr=False)
    _ltx2_models: dict[Precision, Ltx2Models] = field(default_factory=dict, repr=False)

    @property
    def key_dir(self) -> Path:
        return self.cache_dir / self.config.model_hash()

    def models(self, precision: Precision = Precision.FP32) -> LoadedModels:
        """The checkpoint stage: weights loaded in `precision`, once per run (only when a stage needs them)."""
        from service.models.loading import load_models

        if precision not in self._models:
            model = dataclasses.replace(self.config.model, dtype=precision.torch_dtype_name)
            self._models[precision] = load_models(model)
        return self._models[precision]

    def ltx2_models(self, precision: Precision = Precision.FP32) -> Ltx2Models:
        """The LTX-2.3 checkpoint stage (`[ltx2]`), in `precision`, once per run."""
        from service.models.ltx2 import load_ltx2_models

        if precision not in self._ltx2_models:
            ltx2 = dataclasses.replace(self.config.ltx2, dtype=precision.torch_dtype_name)
            self._ltx2_models[precision] = load_ltx2_models(ltx2)
        return self._ltx2_models[precision]

    def models_for(self, component: ExportableComponent[Any], precision: Precision = Precision.FP32) -> Any:
        """The loaded models of `component`'s family."""
        return self.ltx2_models(precision) if component.family is Family.LTX2 else self.models(precision)

    @cached_property
    def assets(self) -> PipelineAssets:
        directory = self.key_dir / "assets"

        def produce() -> None:
            from service.models.loading import model_geometry

            models = self.models()
            save_assets(
                PipelineAssets(models.tokenizer, model_geometry(models), dict(models.scheduler_config)),
                directory,
            )

        _run_stage(directory / ".done", produce, f"assets of model {self.config.model_hash()}")
        return load_assets(directory)

    @cached_property
    def components(self) -> list[ExportableComponent[Any]]:
        """The recipes of `component_names`, LTX-Video's then LTX-2.3's (unknown names: ValueError)."""
        from export.ltx2_components import LTX2_COMPONENT_TYPES, declare_ltx2

        known = {*COMPONENT_TYPES, *LTX2_COMPONENT_TYPES}
        unknown = [name for name in self.component_names if name not in known]
        if unknown:
            raise ValueError(f"unknown components {unknown}; known: {sorted(known)}")
        ltx_video = [name for name in self.component_names if name in COMPONENT_TYPES]
        ltx2 = [name for name in self.component_names if name in LTX2_COMPONENT_TYPES]
        components: list[ExportableComponent[Any]] = []
        if ltx_video:
            api = self.api or ApiRanges.serving(ltx_video)
            components += declare(ltx_video, self.assets.geometry, api)
        if ltx2:
            from service.models.ltx2_component_modules import ltx2_geometry

            components += declare_ltx2(ltx2, ltx2_geometry(self.ltx2_models()))
        return components

    def precision_for(self, component: ExportableComponent) -> Precision:
        """The run's precision, except that fp8 applies to the GEMM-heavy components only (bf16 elsewhere)."""
        if self.precision is Precision.FP8 and component.name not in FP8_COMPONENTS:
            return Precision.BF16
        return self.precision

    def onnx(self, component: ExportableComponent, precision: Precision) -> Path:
        from export.onnx_export import export_onnx

        path = self.key_dir / "onnx" / f"{component.name}.{precision.value}.onnx"
        if precision is Precision.FP8:
            return self._fp8_onnx(component, path)
        _run_stage(
            path.with_suffix(".done"),
            lambda: export_onnx(component, self.models_for(component, precision), path),
            f"ONNX {component.name} ({precision.value})",
        )
        return path

    def _fp8_onnx(self, component: ExportableComponent, path: Path) -> Path:
        """The fp32 graph quantized to FP8 Q/DQ, checked against torch on onnxruntime like the fp32 one."""
        from export.fp8 import quantize_fp8

        fp32 = self.onnx(component, Precision.FP32)
        report = path.with_suffix(".parity.json")

        def produce() -> None:
            quantize_fp8(component, self.models(), fp32, path)
            results = check_parity(component, self.models(), path, FP8_TOLERANCE, optimize=False)
            _write_report(report, results)
            require_parity(results)

        _run_stage(path.with_suffix(".done"), produce, f"ONNX {component.name} (fp8)")
        return path

    def parity(self, component: ExportableComponent) -> None:
        """The fp32 graph against torch on onnxruntime (CPU); a failure stops the export."""
        report = self.key_dir / "onnx" / f"{component.name}.parity.json"

        def produce() -> None:
            onnx_path = self.onnx(component, Precision.FP32)
            results = check_parity(component, self.models_for(component), onnx_path)
            _write_report(report, results)
            require_parity(results)

        _run_stage(report.with_suffix(".done"), produce, f"ONNX parity {component.name}")

    def engine(self, component: ExportableComponent, workspace_gib: float | None = None) -> Path:
        from export.tensorrt_build import build_engine

        precision = self.precision_for(component)
        onnx_path = self.onnx(component, precision)
        plan = (
            self.key_dir / "engines" / f"{component.name}.{precision.value}.{_profile_hash(component)}.plan"
        )

        def produce() -> None:
            build_engine(component, onnx_path, plan, self._timing_cache(), workspace_gib)
            self._engine_parity(component, plan, precision)

        _run_stage(plan.with_suffix(".done"), produce, f"TensorRT {component.name} ({precision.value})")
        return plan

    def _engine_parity(self, component: ExportableComponent, plan: Path, precision: Precision) -> None:
        """The plan against the fp32 torch model, at shapes inside its optimization profile."""
        import torch

        from export.parity import compare
        from export.tensorrt_build import EngineRunner

        runner, module = EngineRunner(component, plan), component.module(self.models())
        results = []
        for size in profile_samples(component):
            inputs = component.sample_inputs(self.models(), size)
            with torch.no_grad():
                expected = module(*inputs).float().cpu().numpy()
            actual = runner(*inputs).float().cpu().numpy()
            results.append(compare(component, size, expected, actual, ENGINE_TOLERANCE[precision]))
        _write_report(plan.with_suffix(".parity.json"), results)
        require_parity(results)

    def _timing_cache(self) -> Path:
        import torch

        gpu = torch.cuda.get_device_name().replace(" ", "_")
        return self.cache_dir / f"timing-{gpu}.cache"


def profile_samples(component: ExportableComponent) -> tuple[SampleSize, ...]:
    """Sample sizes inside the TensorRT profile: the smallest grid, at the smallest and largest batch."""
    ranges = component.axis_ranges()
    grid = (ranges[LATENT_FRAMES].min, ranges[LATENT_HEIGHT].min, ranges[LATENT_WIDTH].min)
    batches = sorted({ranges[BATCH].min, ranges[BATCH].max})
    return tuple(SampleSize(batch, *grid) for batch in batches)


def _profile_hash(component: ExportableComponent) -> str:
    import tensorrt

    blob = json.dumps({"profile": component.profile(), "tensorrt": tensorrt.__version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _run_stage(marker: Path, produce: Callable[[], object], what: str) -> None:
    if marker.exists():
        log.info("%s: cached (%s)", what, marker.parent)
        return
    log.info("%s: running", what)
    produce()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("done\n")


def _write_report(path: Path, results: list[ParityResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**dataclasses.asdict(result), "passed": result.passed} for result in results]
    path.write_text(json.dumps(rows, indent=2))
