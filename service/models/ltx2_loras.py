"""LoRAs on the LTX-2.3 transformer and text connectors, through diffusers' `LTX2LoraLoaderMixin`.

Three kinds, all named peft adapters, mixed per stage with `set_adapters` (exact: W + sum s_i B_i A_i):
- `distilled`: the distilled LoRA, loaded once and kept resident; stage 1 uses it at
  `distill_lora_first_pass_scale`, stage 2 at `distill_lora_second_pass_scale` (0 leaves it out).
- `camera_<name>`: the seven camera-control LoRAs from `ltx2.camera_lora_dir`, loaded on first use and kept.
- `job_lora_<i>`: the request's `loras`, loaded for the job and deleted after it. An entry with an empty
  `path` (the spec's own example sends `{"path": "", "scale": 1}`) is skipped with a log line.

Both key formats load: the original (`diffusion_model.`, `text_embedding_projection.`) and diffusers'
(`transformer.`, `connectors.`); diffusers converts the first. A key that names no module of the
transformer or connectors fails the job with `lora_load_failed`, naming the LoRA and the key (diffusers
itself only logs such keys and drops them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler

from service.domain.errors import ErrorType, JobError
from service.domain.specs import CameraLora, Ltx2TextToVideoSpec
from service.models.lora import FetchedLora
from service.models.ltx2 import Ltx2Models

logger = logging.getLogger(__name__)

DISTILLED = "distilled"
# The seven Lightricks camera-control LoRAs (LTX-2 19B files; MODELS-LTX-2.3.md lists them), by spec value.
CAMERA_LORA_FILES: dict[CameraLora, str] = {
    camera: f"LTX-2-19b-LoRA-Camera-Control-{title}.safetensors"
    for camera, title in (
        (CameraLora.DOLLY_IN, "Dolly-In"),
        (CameraLora.DOLLY_OUT, "Dolly-Out"),
        (CameraLora.DOLLY_LEFT, "Dolly-Left"),
        (CameraLora.DOLLY_RIGHT, "Dolly-Right"),
        (CameraLora.JIB_UP, "Jib-Up"),
        (CameraLora.JIB_DOWN, "Jib-Down"),
        (CameraLora.STATIC, "Static"),
    )
}
_MODULES = ("transformer", "connectors")


def ltx2_helper_pipeline(
    models: Ltx2Models, scheduler: FlowMatchEulerDiscreteScheduler | None = None
) -> LTX2Pipeline:
    """An `LTX2Pipeline` around the models, for its LoRA loader (`load_lora_weights`); our loop does the
    sampling, so the scheduler is a placeholder unless given (the parity test runs the pipeline itself)."""
    return LTX2Pipeline(
        scheduler=scheduler or FlowMatchEulerDiscreteScheduler(),  # type: ignore[arg-type]
        vae=models.vae,
        audio_vae=models.audio_vae,
        text_encoder=models.text_encoder,  # type: ignore[arg-type]
        tokenizer=models.tokenizer,
        connectors=models.connectors,
        transformer=models.transformer,
        vocoder=models.vocoder,
    )


def camera_lora_path(camera_lora_dir: str | None, camera: CameraLora) -> Path | None:
    """The installed file of `camera`, or None (Submit then answers FAILED_PRECONDITION)."""
    if camera is CameraLora.NONE or not camera_lora_dir:
        return None
    path = Path(camera_lora_dir) / CAMERA_LORA_FILES[camera]
    return path if path.is_file() else None


def read_ltx2_lora(source: str | dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """A LoRA in diffusers' key format (`transformer.` / `connectors.` prefixes); JobError if unreadable."""
    try:
        state_dict = LTX2Pipeline.lora_state_dict(
            source if isinstance(source, dict) else str(source), use_safetensors=True, local_files_only=True
        )
    except Exception as error:  # diffusers raises OSError, SafetensorError, ValueError, ...
        raise JobError(ErrorType.LORA_LOAD_FAILED, f"{what}: not a readable LTX-2 LoRA ({error})") from error
    return dict(state_dict)


def check_placeable(models: Ltx2Models, state_dict: dict[str, torch.Tensor], what: str) -> None:
    """Every key must name a module of the transformer or the connectors."""
    modules = {name: dict(getattr(models, name).named_modules()) for name in _MODULES}
    for key in state_dict:
        prefix, _, rest = key.partition(".")
        module_path = rest.split(".lora_")[0]
        if prefix not in modules or ".lora_" not in rest or module_path not in modules[prefix]:
            raise JobError(ErrorType.LORA_LOAD_FAILED, f"{what}: key {key!r} names no LTX-2.3 module")


def load_adapter(
    pipe: LTX2Pipeline, models: Ltx2Models, source: str | dict[str, torch.Tensor], name: str, what: str
) -> None:
    state_dict = read_ltx2_lora(source, what)
    check_placeable(models, state_dict, what)
    try:
        pipe.load_lora_weights(state_dict, adapter_name=name)
    except Exception as error:  # peft: shape mismatches, bad ranks
        _delete(models, [name])
        raise JobError(ErrorType.LORA_LOAD_FAILED, f"{what}: cannot be applied ({error})") from error


@dataclass(frozen=True)
class ActiveAdapter:
    name: str
    first_pass: float
    second_pass: float


@contextmanager
def ltx2_job_adapters(
    pipe: LTX2Pipeline, models: Ltx2Models, spec: Ltx2TextToVideoSpec, loras: Sequence[FetchedLora]
) -> Iterator[list[ActiveAdapter]]:
    """Load the job's LoRAs (and camera/distilled ones not yet resident); yields the per-stage scales.
    The job's own adapters are deleted on exit, however the block ends."""
    loaded: list[str] = []
    active: list[ActiveAdapter] = []
    try:
        for fetched in loras:  # the prepare stage resolved them to local files (empty paths skipped)
            name = f"job_lora_{fetched.position}"
            load_adapter(pipe, models, str(fetched.path), name, f"loras[{fetched.position}]")
            loaded.append(name)
            active.append(ActiveAdapter(name, fetched.spec.scale, fetched.spec.scale))
        active += _resident_adapters(pipe, models, spec)
        yield active
    finally:
        _delete(models, loaded)
        _disable(models)


def _resident_adapters(
    pipe: LTX2Pipeline, models: Ltx2Models, spec: Ltx2TextToVideoSpec
) -> list[ActiveAdapter]:
    active = []
    camera = camera_lora_path(models.camera_lora_dir, spec.camera_lora)
    if spec.camera_lora is not CameraLora.NONE:
        if camera is None:  # Submit checks this; the directory may have changed since
            raise JobError(
                ErrorType.LORA_LOAD_FAILED, f"camera_lora {spec.camera_lora.value} is not installed"
            )
        name = f"camera_{spec.camera_lora.value}"
        if not _has_adapter(models, name):
            load_adapter(pipe, models, str(camera), name, f"camera_lora {spec.camera_lora.value}")
        active.append(ActiveAdapter(name, spec.camera_lora_scale, spec.camera_lora_scale))
    if _has_adapter(models, DISTILLED):
        first = 1.0 if spec.acceleration.value == "full" else spec.distill_lora_first_pass_scale
        active.append(ActiveAdapter(DISTILLED, first, spec.distill_lora_second_pass_scale))
    elif spec.distill_lora_first_pass_scale or spec.distill_lora_second_pass_scale:
        logger.info("no distilled LoRA installed: the distill_lora_* scales have no effect")
    return active


def set_stage_adapters(models: Ltx2Models, active: Sequence[ActiveAdapter], stage: int) -> None:
    """Activate `active` at their scales for `stage` (1 or 2); scale 0 leaves an adapter out (no FLOPs)."""
    for module_name in _MODULES:
        module = getattr(models, module_name)
        present = set(getattr(module, "peft_config", {}) or {})
        chosen = [
            (a.name, a.first_pass if stage == 1 else a.second_pass) for a in active if a.name in present
        ]
        chosen = [(n, s) for n, s in chosen if s != 0]
        if not present:
            continue
        if chosen:
            module.enable_adapters()
            module.set_adapters([n for n, _ in chosen], weights=[s for _, s in chosen])
        else:
            module.disable_adapters()


def _has_adapter(models: Ltx2Models, name: str) -> bool:
    return any(name in (getattr(getattr(models, m), "peft_config", {}) or {}) for m in _MODULES)


def _delete(models: Ltx2Models, names: Sequence[str]) -> None:
    for module_name in _MODULES:
        module = getattr(models, module_name)
        present = set(getattr(module, "peft_config", {}) or {})
        mine = [n for n in names if n in present]
        if mine:
            module.delete_adapters(mine)


def _disable(models: Ltx2Models) -> None:
    for module_name in _MODULES:
        module = getattr(models, module_name)
        if getattr(module, "peft_config", None):
            module.disable_adapters()


def tiny_distilled_lora(models: Ltx2Models, seed: int = 0, rank: int = 2) -> dict[str, torch.Tensor]:
    """A seeded random LoRA in the original key format for the tiny preset's `distilled` adapter, on the
    attention projections of every block and the connectors' video projection (as the real file targets).
    The layers are found through any peft wrapper (an adapter already loaded turns `to_q` into a
    `lora.Linear`), so the same keys come out whatever adapters the models hold."""
    g = torch.Generator().manual_seed(seed)
    weights: dict[str, torch.Tensor] = {}
    for name, module in models.transformer.named_modules():
        layer = _base_linear(module)
        if layer is not None and name.split(".")[-1] in ("to_q", "to_k", "to_v"):
            weights |= _pair(f"diffusion_model.{name}", layer, rank, g)
    projection = _base_linear(models.connectors.video_text_proj_in)
    assert projection is not None, "the connectors' video_text_proj_in is a Linear"
    weights |= _pair("text_embedding_projection.video_aggregate_embed", projection, rank, g)
    return weights


def _base_linear(module: torch.nn.Module) -> torch.nn.Linear | None:
    """`module` itself, or the layer a peft LoRA wrapper holds, when that is a Linear."""
    get_base_layer = getattr(module, "get_base_layer", None)
    base = get_base_layer() if callable(get_base_layer) else module
    return base if isinstance(base, torch.nn.Linear) else None


def _pair(prefix: str, layer: torch.nn.Linear, rank: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.lora_A.weight": 0.3 * torch.randn(rank, layer.in_features, generator=g),
        f"{prefix}.lora_B.weight": 0.3 * torch.randn(layer.out_features, rank, generator=g),
    }


def install_distilled(pipe: LTX2Pipeline, models: Ltx2Models, tiny_seed: int | None) -> None:
    """The resident `distilled` adapter: the configured file, or for the tiny preset a seeded random one.
    The models are shared by every runner of the same config (service/models/ltx2.py caches them), so a
    second runner finds the adapter already resident and leaves it as it is."""
    if _has_adapter(models, DISTILLED):
        logger.info("distilled LoRA already resident on the shared LTX-2.3 models")
    elif models.distilled_lora:
        load_adapter(pipe, models, models.distilled_lora, DISTILLED, "distilled LoRA")
    elif tiny_seed is not None:
        load_adapter(pipe, models, tiny_distilled_lora(models, tiny_seed), DISTILLED, "tiny distilled LoRA")
    else:
        logger.info("no distilled LoRA configured (ltx2.distilled_lora)")
    _disable(models)
