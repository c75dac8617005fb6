"""Per-step time of the transformer: PyTorch eager against its TensorRT plan, and through Triton (GPU only).

    python -m bench.transformer_step [--preset ltx-video-0.9.7 --model-dir DIR] [--triton-url HOST:PORT]

One denoising step of the spec example's shape (720p 16:9, 89 frames: 12 x 22 x 40 latent cells, batch 2
for CFG) is timed (wall clock, GPU drained around each call) after warm-up: the bf16 PyTorch module, the bf16 TensorRT plan built by
`export` (cached in --cache-dir), and, with --triton-url, the `transformer` model of a running GPU
repository (`python -m export build ...` served by NVIDIA's Triton container). Without a CUDA GPU it
stops and says so: there is nothing meaningful to measure on a CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from export.components import declare
from export.shapes import SampleSize
from export.stages import ExportStages, Precision
from service.config import ModelConfig, ServiceConfig

SPEC_EXAMPLE_STEP = SampleSize(batch=2, latent_frames=12, latent_height=22, latent_width=40)


def cuda_ms(step: Callable[[], object], repeats: int) -> float:
    """Median wall milliseconds of `step` with the GPU drained before and after, after three warm-ups.
    (Wall time, not CUDA events: the Triton row's work runs in another process.)"""
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def triton_step(url: str, names: list[str], inputs: tuple[torch.Tensor, ...]) -> Callable[[], object]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    client = grpcclient.InferenceServerClient(url)
    request = []
    for name, tensor in zip(names, inputs, strict=True):
        array = tensor.cpu().numpy()
        infer_input = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        infer_input.set_data_from_numpy(array)
        request.append(infer_input)
    return lambda: client.infer("transformer", request)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--model-dir")
    parser.add_argument("--triton-url", help="a running GPU repository's gRPC address")
    parser.add_argument("--cache-dir", default="var/export-cache")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("transformer_step needs a CUDA GPU (torch.cuda.is_available() is False); nothing measured")
        return 2
    model = ModelConfig(preset=args.preset, model_dir=args.model_dir, dtype="bfloat16", device="cuda")
    stages = ExportStages(ServiceConfig(model=model), Path(args.cache_dir), ("transformer",), Precision.BF16)
    models = stages.models(Precision.BF16)
    (component,) = declare(("transformer",), stages.assets.geometry)
    inputs = tuple(t.cuda() for t in component.sample_inputs(models, SPEC_EXAMPLE_STEP))
    module = component.module(models).cuda().eval()
    from export.tensorrt_build import EngineRunner

    runner = EngineRunner(component, stages.engine(component))
    with torch.inference_mode():
        rows = {"PyTorch eager (bf16)": cuda_ms(lambda: module(*inputs), args.repeats),
                "TensorRT plan (bf16)": cuda_ms(lambda: runner(*inputs), args.repeats)}  # fmt: skip
    if args.triton_url:
        rows["through Triton (gRPC)"] = cuda_ms(
            triton_step(args.triton_url, component.input_names, inputs), 5
        )
    eager = rows["PyTorch eager (bf16)"]
    print(f"| transformer step, {torch.cuda.get_device_name()}, {tuple(SPEC_EXAMPLE_STEP)} | ms | vs eager |")
    print("|---|---|---|")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.2f} | {eager / ms:.2f}x faster |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
