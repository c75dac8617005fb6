"""End-to-end latency through the service against a bare pipeline call, in one run.

    python -m bench.service_overhead [--repeats 3]

Both sides run the same requests on the tiny preset, one after the other on the same machine: the bare
side calls `LocalEngine.generate` in this process (the pipeline alone); the service side submits over
gRPC to a real `ltx-serve` subprocess with `Generate` and downloads the MP4, so it adds validation, the
queue, SQLite, progress streaming, H.264 encoding, storage and the HTTP download.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltx.v1 import video_generation_pb2 as pb
from service.api.endpoints import input_from_json, to_spec
from service.client.cli import build_request
from service.config import ServiceConfig
from service.domain.job_context import JobContext
from service.engines.endpoint_pipelines import EndpointInputs
from service.engines.local import LocalEngine
from service.media.encode import encode_mp4
from tests.integration.service_process import ServiceProcess

EXAMPLE = Path(__file__).resolve().parents[1] / "tests/data/spec_examples/ltx-video-lora.json"
SMALL = {
    "prompt": "a red ball rolling",
    "resolution": "480p",
    "aspect_ratio": "16:9",
    "number_of_frames": 25,
    "number_of_steps": 8,
    "seed": 3,
}


@dataclass(frozen=True)
class Bare:
    pipeline_s: float  # LocalEngine.generate alone (text to video: nothing to prepare)
    encode_s: float  # encode_mp4 of its frames


def bare_latency(engine: LocalEngine, request: dict[str, Any], repeats: int) -> Bare:
    spec = to_spec(input_from_json("ltx-video-lora", request), rng=random.Random(0))
    pipeline, encode = [], []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(repeats):
            start = time.perf_counter()
            video = engine.generate(EndpointInputs(spec), (), JobContext.create())
            middle = time.perf_counter()
            encode_mp4(video, Path(out) / "bare.mp4")
            pipeline.append(middle - start)
            encode.append(time.perf_counter() - middle)
    return Bare(statistics.median(pipeline), statistics.median(encode))


def service_latency(service: ServiceProcess, request: dict[str, Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        last = None
        for event in service.stub.Generate(build_request("ltx-video-lora", request)):
            last = event
        assert last is not None and last.status == pb.COMPLETED and not last.HasField("error"), last
        with urllib.request.urlopen(last.result.text_to_video.video.url) as response:
            response.read()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    example = json.loads(EXAMPLE.read_text())
    cases = {"480p 16:9, 25 frames, 8 steps": SMALL, "spec example: 720p 16:9, 89 frames, 30 steps": example}
    engine = LocalEngine(ServiceConfig())
    bare = {name: bare_latency(engine, req, args.repeats) for name, req in cases.items()}
    with tempfile.TemporaryDirectory() as data_dir:
        service = ServiceProcess(Path(data_dir))
        service.start()
        try:
            served = {name: service_latency(service, req, args.repeats) for name, req in cases.items()}
        finally:
            service.stop()
    print(
        "| request | pipeline (s) | + H.264 encode (s) | through the service (s) | service / pipeline "
        "| rest: queue, gRPC, storage, HTTP (s) |"
    )
    print("|---|---|---|---|---|---|")
    for name in cases:
        b, total = bare[name], served[name]
        rest = total - b.pipeline_s - b.encode_s
        print(
            f"| {name} | {b.pipeline_s:.2f} | {b.encode_s:.2f} | {total:.2f} | {total / b.pipeline_s:.2f}x "
            f"| {rest:.2f} |"
        )


if __name__ == "__main__":
    main()
