"""Per-request overhead of the Triton path against the in-process path, same requests, one run.

    python -m bench.triton_overhead [--repeats 3]

Starts the tritonserver bundled with nvidia-pytriton on the checked-in repository (tiny preset, Python
backend models on CPU) and runs each request through `TritonEngine` and through `LocalEngine` in this
process. Both produce the same frames (tests/integration/test_triton_engine.py checks that); the
difference is the BLS round trips (tensors copied between processes at every denoising step) and the
streaming. The per-step transformer time through Triton against PyTorch eager needs a GPU and TensorRT
plans: see tests/integration/test_triton_gpu.py.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from service.api.endpoints import input_from_json, to_spec
from service.config import ServiceConfig
from service.domain.job_context import JobContext
from service.engines.endpoint_pipelines import EndpointInputs
from service.engines.local import LocalEngine
from service.engines.triton import TritonEngine
from service.engines.tritonserver_process import TritonServerProcess

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
CASES = {
    "480p 1:1, 9 frames, 2 steps": {
        "resolution": "480p",
        "aspect_ratio": "1:1",
        "number_of_frames": 9,
        "number_of_steps": 2,
    },
    "480p 16:9, 25 frames, 8 steps": {
        "resolution": "480p",
        "aspect_ratio": "16:9",
        "number_of_frames": 25,
        "number_of_steps": 8,
    },
    "720p 16:9, 89 frames, 30 steps": {
        "resolution": "720p",
        "aspect_ratio": "16:9",
        "number_of_frames": 89,
        "number_of_steps": 30,
    },
}


def median_latency(engine: object, request: dict[str, object], repeats: int) -> float:
    spec = to_spec(
        input_from_json("ltx-video-lora", {"prompt": "a red ball", "seed": 5, **request}),
        rng=random.Random(0),
    )
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        # The text-to-video spec needs no preparing: the generate stage alone, as the job runner calls it.
        engine.generate(EndpointInputs(spec), (), JobContext.create())  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    local = LocalEngine(ServiceConfig())
    in_process = {name: median_latency(local, req, args.repeats) for name, req in CASES.items()}
    with tempfile.TemporaryDirectory() as work:
        server = TritonServerProcess(REPOSITORY, Path(work))
        server.start(timeout_s=300)
        try:
            triton = TritonEngine(ServiceConfig(triton_url=server.grpc_url))
            through_triton = {name: median_latency(triton, req, args.repeats) for name, req in CASES.items()}
        finally:
            server.stop()
    print("| request | in-process (s) | through Triton (s) | overhead (s) | Triton / in-process |")
    print("|---|---|---|---|---|")
    for name in CASES:
        a, b = in_process[name], through_triton[name]
        print(f"| {name} | {a:.2f} | {b:.2f} | {b - a:.2f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
