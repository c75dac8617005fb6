"""Peak RSS of the service and of every tritonserver process, per video length, generated through Triton.

    python -m bench.triton_stream_memory --frames 121 1441 --width 1280 --height 720 --steps 2   # 720p
    python -m bench.triton_stream_memory --frames 25 121 --width 320 --height 192 --steps 2      # small

The bundled tritonserver on the checked-in repository (tiny preset, CPU). Each length is one distilled
multiconditioning request, waited for; the result's frame count and size are checked. Where it runs:
  - a size the endpoint offers (720p or 480p, 16:9, 1:1 or 9:16: the API takes no other) goes to a real
    `ltx-serve --engine triton` subprocess over gRPC, as a client would send it;
  - any other size (a quick check at a small size) runs the service's worker code, the job runner's
    three stages (prepare, TritonEngine, finish: safety check, encode, store), in this process, with the
    spec's width and height set directly: the same path for the frames minus the gRPC API and the queue,
    which hold none of them. Its row is "service (worker in-process)".
Peak RSS is each process's VmHWM (/proc/PID/status), reset before each request (`echo 5 >
/proc/PID/clear_refs`), so each row is that request's own peak: the service, the tritonserver process
and each Python-backend stub (ltx_pipeline and the component models). The last table says how each peak
grew from the shortest to the longest video: bounded memory is a ratio near 1 while the frames grow.
The steps are few (`--steps`, both passes): the step count does not change what is held in memory.

A slow Status call on a loaded machine does not stop the run: each poll may take a minute, and a poll
that times out or finds the service busy is retried until the request's own deadline (`--timeout-s`).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import av
import grpc
import psutil

from ltx.v1 import video_generation_pb2 as pb
from service.config import EngineKind, ServiceConfig
from service.domain.geometry import AspectRatio, FrameSize, Resolution, frame_size
from service.domain.job_context import JobContext
from service.domain.specs import DistilledMulticonditioningSpec, Endpoint, spec_to_json
from service.engines.triton import TritonEngine
from service.engines.tritonserver_process import TritonServerProcess
from service.jobs.records import JobRecord, JobState
from service.jobs.runner import JobRunner, output_from_json
from service.storage.local import LocalStorage
from tests.integration.service_process import ServiceProcess

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
ENDPOINT = Endpoint.DISTILLED_MULTICONDITIONING
PROMPT = "a lighthouse on a cliff at dusk, waves below"
STATUS_TIMEOUT_S = 60.0  # one Status call; a loaded machine answers slowly
POLL_INTERVAL_S = 1.0
RETRIED = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE})

# A request: (frames) -> (MP4 bytes, wall seconds)
RunRequest = Callable[[int], tuple[bytes, float]]


def preset_for(size: FrameSize) -> tuple[Resolution, AspectRatio] | None:
    """The endpoint's (resolution, aspect ratio) whose frame is `size`, if it offers that size."""
    for resolution in Resolution:
        for aspect in (AspectRatio.R16_9, AspectRatio.R1_1, AspectRatio.R9_16):
            if frame_size(resolution, aspect) == size:
                return resolution, aspect
    return None


def request_json(frames: int, steps: int, resolution: Resolution, aspect: AspectRatio) -> dict[str, object]:
    return {
        "prompt": PROMPT,
        "resolution": resolution.value,
        "aspect_ratio": aspect.value,
        "num_frames": frames,
        "first_pass_num_inference_steps": steps,
        "second_pass_num_inference_steps": steps,
        "second_pass_skip_initial_steps": max(1, steps - 1),
        "seed": 11,
        "enable_safety_checker": True,
    }


def direct_spec(frames: int, steps: int, size: FrameSize) -> DistilledMulticonditioningSpec:
    """The spec the API would build for `request_json`, at any size (the in-process path)."""
    return DistilledMulticonditioningSpec(
        prompt=PROMPT,
        negative_prompt="worst quality, inconsistent motion, blurry, jittery, distorted",
        resolution=Resolution.P480,
        aspect_ratio=AspectRatio.R16_9,
        width=size.width,
        height=size.height,
        num_frames=frames,
        first_pass_num_inference_steps=steps,
        second_pass_num_inference_steps=steps,
        second_pass_skip_initial_steps=max(1, steps - 1),
        frame_rate=30,
        seed=11,
        temporal_adain_factor=0.5,
        tone_map_compression_ratio=0.0,
        constant_rate_factor=29,
    )


def triton_processes(root_pid: int) -> dict[str, psutil.Process]:
    """tritonserver and its descendants (the Python-backend stubs), each named by what it runs."""
    root = psutil.Process(root_pid)
    named = {"tritonserver": root}
    for child in root.children(recursive=True):
        model = next((part.split("/")[-3] for part in child.cmdline() if part.endswith("/model.py")), None)
        named[f"stub {model}" if model else " ".join(child.cmdline())[:40]] = child
    return named


def reset_peak(process: psutil.Process) -> None:
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")


def peak_mib(process: psutil.Process) -> float:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {process.pid}")


def wait_finished(service: ServiceProcess, request_id: str, timeout_s: float) -> pb.StatusResponse:
    """Poll Status until the job is done; a slow or refused poll is retried, not fatal."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status = service.stub.Status(pb.StatusRequest(request_id=request_id), timeout=STATUS_TIMEOUT_S)
        except grpc.RpcError as exc:
            if exc.code() not in RETRIED:
                raise
            print(f"  Status {exc.code().name} (a loaded machine?); polling on", flush=True)
        else:
            if status.status == pb.COMPLETED:
                return status
        time.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"{request_id} not finished after {timeout_s:.0f} s")


def through_service(
    service: ServiceProcess, preset: tuple[Resolution, AspectRatio], steps: int, timeout_s: float
) -> RunRequest:
    def run(frames: int) -> tuple[bytes, float]:
        started = time.perf_counter()
        submitted = service.submit(ENDPOINT, request_json(frames, steps, *preset))
        status = wait_finished(service, submitted.request_id, timeout_s)
        elapsed = time.perf_counter() - started
        if status.HasField("error"):
            raise RuntimeError(f"{frames} frames failed: {status.error}")
        result = service.stub.Result(
            pb.ResultRequest(request_id=submitted.request_id), timeout=STATUS_TIMEOUT_S
        )
        with urllib.request.urlopen(result.output.distilled_multiconditioning.video.url) as response:
            return response.read(), elapsed

    return run


def in_process(config: ServiceConfig, results: Path, size: FrameSize, steps: int) -> RunRequest:
    runner = JobRunner(TritonEngine(config), LocalStorage(results, "http://unused"), config)

    def run(frames: int) -> tuple[bytes, float]:
        spec = direct_spec(frames, steps, size)
        record = JobRecord(f"bench-{frames}", ENDPOINT, spec_to_json(spec), JobState.RUNNING, time.time())
        started = time.perf_counter()
        output = output_from_json(runner(record, JobContext.create(record.job_id)))
        elapsed = time.perf_counter() - started
        return (results / record.job_id / output.video.file_name).read_bytes(), elapsed

    return run


def measure(
    run: RunRequest, tracked: dict[str, psutil.Process], frames: int, size: FrameSize
) -> dict[str, float]:
    for process in tracked.values():
        reset_peak(process)
    mp4, elapsed = run(frames)
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        got = (stream.frames, stream.width, stream.height)
    if got != (frames, size.width, size.height):
        raise RuntimeError(f"asked for {frames} frames at {size.width}x{size.height}, got {got}")
    row = {"wall_s": elapsed, **{name: peak_mib(process) for name, process in tracked.items()}}
    print(f"  {frames} frames: " + json.dumps({k: round(v) for k, v in row.items()}), flush=True)
    return row


def print_tables(rows: dict[int, dict[str, float]], size: FrameSize) -> None:
    names = list(next(iter(rows.values())))
    print(f"load average {os.getloadavg()[0]:.1f}; {size.width}x{size.height}")
    print("| frames | " + " | ".join("wall (s)" if n == "wall_s" else f"{n} (MiB)" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for frames, row in rows.items():
        print(f"| {frames} | " + " | ".join(f"{row[n]:.0f}" for n in names) + " |")
    shortest, longest = min(rows), max(rows)
    print(f"\npeak growth from {shortest} to {longest} frames ({longest / shortest:.1f}x the frames):")
    for name in names[1:]:
        print(f"  {name}: {rows[longest][name] / rows[shortest][name]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, nargs="+", default=[121, 1441])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=4 * 3600, help="per request")
    args = parser.parse_args()
    size = FrameSize(args.width, args.height)
    preset = preset_for(size)
    with tempfile.TemporaryDirectory() as work, ExitStack() as stack:
        (Path(work) / "triton").mkdir()
        server = TritonServerProcess(REPOSITORY, Path(work) / "triton")
        server.start(timeout_s=600)
        stack.callback(server.stop)
        assert server.proc is not None
        tracked = triton_processes(server.proc.pid)
        if preset is not None:
            (Path(work) / "service").mkdir()
            service = ServiceProcess(
                Path(work) / "service", ["--engine", "triton", "--triton-url", server.grpc_url]
            )
            stack.callback(service.stop)
            service.start(timeout_s=300)
            assert service.proc is not None
            tracked = {"service": psutil.Process(service.proc.pid), **tracked}
            run = through_service(service, preset, args.steps, args.timeout_s)
        else:
            config = dataclasses.replace(
                ServiceConfig(), engine=EngineKind.TRITON, triton_url=server.grpc_url
            )
            tracked = {"service (worker in-process)": psutil.Process(os.getpid()), **tracked}
            run = in_process(config, Path(work) / "results", size, args.steps)
        print(f"{size.width}x{size.height}: " + ("through ltx-serve" if preset else "worker in this process"))
        rows = {frames: measure(run, tracked, frames, size) for frames in args.frames}
    print_tables(rows, size)


if __name__ == "__main__":
    main()
