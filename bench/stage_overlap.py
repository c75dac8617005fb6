"""Accelerator idle time between back-to-back jobs, and an 8-job burst through the service against the
bare engine.

    python -m bench.stage_overlap [--jobs 8] [--frames 49] [--steps 8]

The service runs in this process (`start_service` with a LocalEngine on the tiny preset, gRPC on an
ephemeral port, results over HTTP); `--jobs` multiconditioning requests, each with one JPEG condition
fetched from a local HTTP server and the safety checker on, are submitted at once over gRPC, so the queue
is full from the start. The accelerator's busy intervals are the endpoint pipeline calls
(`run_endpoint`, the engine's work on the accelerator), timed by a wrapper; the idle gap is one job's
pipeline end to the next job's pipeline start. The bare side runs the same pipeline calls back to back on
inputs prepared beforehand (the accelerator's lower bound for the burst).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from PIL import Image

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.api.endpoints import input_from_json, to_spec
from service.client.cli import build_request
from service.config import ServiceConfig
from service.domain.job_context import JobContext
from service.engines import local as local_engine
from service.media.fetch import FetchLimits
from service.server import start_service

ENDPOINT = "ltx-video-lora/multiconditioning"


class BusyLog:
    """(start, end) of every pipeline call, from any thread."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def wrap(self, run: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return run(*args, **kwargs)
            finally:
                with self._lock:
                    self.intervals.append((start, time.perf_counter()))

        return timed

    def gaps(self) -> list[float]:
        ordered = sorted(self.intervals)
        return [max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(ordered)]

    def busy(self) -> list[float]:
        return [end - start for start, end in self.intervals]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_image(directory: Path) -> ThreadingHTTPServer:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(720, 1280, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    (directory / "condition.jpg").write_bytes(buffer.getvalue())
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def request_json(image_url: str, frames: int, steps: int, seed: int) -> dict[str, Any]:
    return {
        "prompt": "a red ball rolling across a wooden floor",
        "resolution": "480p",
        "aspect_ratio": "16:9",
        "number_of_frames": frames,
        "number_of_steps": steps,
        "seed": seed,
        "enable_safety_checker": True,
        "images": [{"image_url": image_url, "start_frame_number": 0, "strength": 1.0}],
    }


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def burst(config: ServiceConfig, requests: list[dict[str, Any]]) -> float:
    running = await start_service(config)
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}")
        stub = pb_grpc.VideoGenerationStub(channel)
        start = time.perf_counter()
        ids = [(await stub.Submit(build_request(ENDPOINT, r))).request_id for r in requests]
        pending = set(ids)
        while pending:
            for request_id in list(pending):
                status = await stub.Status(pb.StatusRequest(request_id=request_id))
                if status.status == pb.COMPLETED:
                    if status.HasField("error"):
                        raise RuntimeError(f"{request_id}: {status.error}")
                    pending.discard(request_id)
            await asyncio.sleep(0.02)
        wall = time.perf_counter() - start
        await channel.close(grace=None)
        return wall
    finally:
        await running.stop()


def bare_back_to_back(config: ServiceConfig, requests: list[dict[str, Any]]) -> float:
    """The same pipeline calls back to back on inputs prepared beforehand."""
    import random

    from service.inputs import prepare_endpoint_inputs

    engine = local_engine.LocalEngine(config)
    specs = [to_spec(input_from_json(ENDPOINT, r), rng=random.Random(0)) for r in requests]
    inputs = [prepare_endpoint_inputs(spec, config.media, None, lambda _p: None) for spec in specs]
    start = time.perf_counter()
    for prepared in inputs:
        engine.generate(prepared, [], JobContext.create())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    busy = BusyLog()
    local_engine.run_endpoint = busy.wrap(local_engine.run_endpoint)
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        images.mkdir()
        http = serve_image(images)
        url = f"http://127.0.0.1:{http.server_port}/condition.jpg"
        requests = [request_json(url, args.frames, args.steps, seed) for seed in range(args.jobs)]
        config = ServiceConfig(data_dir=str(Path(tmp) / "data"), port=0, http_port=0)
        config = replace(config, media=FetchLimits(allow_private_networks=True))
        bare = bare_back_to_back(config, requests)
        busy.intervals.clear()
        wall = asyncio.run(burst(config, requests))
        http.shutdown()
    gaps, engine = busy.gaps(), busy.busy()
    engine_median = statistics.median(engine)
    print(
        f"load average {os.getloadavg()[0]:.1f}; {args.jobs} jobs, {args.frames} frames, {args.steps} steps"
    )
    print(
        "| code | engine time per job, median (s) | idle gap median (s) | idle gap p95 (s) "
        "| gap / engine time | burst through the service (s) | bare engine back to back (s) | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.label} | {engine_median:.2f} | {statistics.median(gaps):.3f} | {p95(gaps):.3f} "
        f"| {statistics.median(gaps) / engine_median:.1%} | {wall:.2f} | {bare:.2f} | {wall / bare:.2f}x |"
    )


if __name__ == "__main__":
    main()
