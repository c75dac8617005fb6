"""`python -m export`: ONNX export and parity, TensorRT build, Triton model repositories.

  onnx            export each component to ONNX and check it against PyTorch on onnxruntime (any machine)
  build           onnx + TensorRT engines + the GPU model repository at --out (needs a GPU and tensorrt)
  cpu-repository  (re)write the Python-backend repository (the checked-in model_repository/ for tiny)

Every stage is cached under --cache-dir by the model settings' hash and skipped when done. Any failure
(export, parity beyond tolerance, engine build) exits with status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from export.components import COMPONENT_TYPES, DEFAULT_COMPONENTS, LatentUpsamplerComponent, declare
from export.ltx2_components import LTX2_EXPORT_COMPONENTS
from export.onnx_export import ExportError
from export.parity import ParityError
from export.repository import CHECKED_IN_REPOSITORY, write_cpu_repository, write_gpu_repository
from export.stages import ExportStages, Precision
from export.tensorrt_build import EngineBuildError, tensorrt_available
from service.config import ServiceConfig, load_config

log = logging.getLogger("export")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("onnx", "export ONNX graphs and check parity"),
        ("build", "onnx + TensorRT engines + GPU model repository"),
        ("cpu-repository", "write the Python-backend model repository"),
    ):
        command = commands.add_parser(name, help=help_text)
        _model_arguments(command)
        command.add_argument(
            "--components",
            help=f"comma-separated, of {sorted(COMPONENT_TYPES)} (LTX-Video) and "
            f"{list(LTX2_EXPORT_COMPONENTS)} (LTX-2.3, onnx only); default: all the models have",
        )
        command.add_argument("--cache-dir", default="var/export-cache", help="stage outputs (ONNX, engines)")
        command.add_argument("--log-level", default="INFO")
        if name != "cpu-repository":
            command.add_argument(
                "--precision", choices=[p.value for p in Precision], default=Precision.BF16.value
            )
            command.add_argument(
                "--skip-parity", action="store_true", help="skip the onnxruntime parity check"
            )
    build = commands.choices["build"]
    build.add_argument("--out", required=True, help="directory of the generated GPU model repository")
    build.add_argument("--workspace-gib", type=float, help="TensorRT builder workspace limit")
    commands.choices["cpu-repository"].add_argument("--out", default=str(CHECKED_IN_REPOSITORY))
    return parser.parse_args(argv)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file with ServiceConfig settings (its [model] section)")
    parser.add_argument("--preset", help="tiny (default) or ltx-video-0.9.7")
    parser.add_argument("--model-dir", help="local diffusers-layout checkpoint directory")
    parser.add_argument("--single-file", help="original LTX checkpoint (.safetensors), with --config-dir")
    parser.add_argument("--config-dir", help="local diffusers configs for --single-file")
    parser.add_argument("--seed", type=int, help="seed of the tiny preset's random weights")
    parser.add_argument("--device", help="where torch runs during export (cpu, cuda)")
    parser.add_argument("--ltx2-preset", help="LTX-2.3 models: tiny-ltx2 (default), ltx-2.3 or none")
    parser.add_argument("--ltx2-model-dir", help="local diffusers-layout LTX-2.3 checkpoint directory")


def service_config(args: argparse.Namespace) -> ServiceConfig:
    return load_config(
        args.config,
        **{
            "model.preset": args.preset,
            "model.model_dir": args.model_dir,
            "model.single_file": args.single_file,
            "model.config_dir": args.config_dir,
            "model.seed": args.seed,
            "model.device": args.device,
            "ltx2.preset": args.ltx2_preset,
            "ltx2.model_dir": args.ltx2_model_dir,
            "ltx2.device": args.device,
        },
    )


def default_components(config: ServiceConfig, command: str = "onnx") -> tuple[str, ...]:
    """Every LTX-Video component, less the latent upsampler when the checkpoint has none (its endpoint is
    then not served; the tiny preset builds one); for `onnx`, also the LTX-2.3 components unless
    `ltx2.preset` is none (TensorRT engines and the GPU repository are LTX-Video's only so far)."""
    from service.models.ltx2 import Ltx2Preset
    from service.models.presets import Preset
    from service.models.upsampler import upsampler_dir

    model = config.model
    names = DEFAULT_COMPONENTS
    if model.preset != Preset.TINY and upsampler_dir(model) is None:
        log.info("no latent upsampler configured: %s left out", LatentUpsamplerComponent.name)
        names = tuple(name for name in DEFAULT_COMPONENTS if name != LatentUpsamplerComponent.name)
    if command == "onnx" and config.ltx2.preset != Ltx2Preset.NONE:
        names = (*names, *LTX2_EXPORT_COMPONENTS)
    return names


def run(args: argparse.Namespace) -> None:
    config = service_config(args)
    if args.components:
        names = tuple(name.strip() for name in args.components.split(",") if name.strip())
    else:
        names = default_components(config, args.command)
    stages = ExportStages(
        config=config,
        cache_dir=Path(args.cache_dir),
        component_names=names,
        precision=Precision(getattr(args, "precision", Precision.FP32.value)),
    )
    if args.command == "cpu-repository":
        model = stages.config.model
        components = declare(stages.component_names, stages.assets.geometry)
        write_cpu_repository(Path(args.out), model, components, ltx2=stages.config.ltx2)
        return
    if args.command == "build":
        if ltx2 := [name for name in names if name in LTX2_EXPORT_COMPONENTS]:
            raise ValueError(f"TensorRT builds are for the LTX-Video components; {ltx2}: use `onnx`")
        available, reason = tensorrt_available()
        if not available:
            raise EngineBuildError(f"cannot build TensorRT engines: {reason}")
    for component in stages.components:
        stages.onnx(component, stages.precision_for(component))
        if not args.skip_parity:
            stages.parity(component)
    if args.command == "build":
        engines = {
            component.name: stages.engine(component, args.workspace_gib) for component in stages.components
        }
        write_gpu_repository(Path(args.out), stages.assets, engines, stages.components)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        run(args)
    except (ExportError, ParityError, EngineBuildError, ValueError, FileNotFoundError) as exc:
        log.error("export failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
