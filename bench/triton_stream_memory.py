"""Peak RSS of the service and of tritonserver's processes for long 720p videos generated through Triton.

    python -m bench.triton_stream_memory [--frames 121 1441] [--steps 2]

A real `ltx-serve --engine triton` subprocess and the bundled tritonserver on the checked-in repository
(tiny preset, CPU). Each length is one distilled multiconditioning request at 720p 16:9 (1280x720),
submitted over gRPC and waited for; the result's frame count is checked. Peak RSS is each process's
VmHWM (/proc/PID/status), reset before each request (`echo 5 > /proc/PID/clear_refs`), so each row is
that request's own peak: the service (prepare, receiving the streamed frames, safety check, encode), the
tritonserver process, and each Python-backend stub (ltx_pipeline and the component models). The steps are
few (`--steps`: both passes) because the denoising step count does not change what is held in memory.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import urllib.request
from pathlib import Path

import av
import psutil

from ltx.v1 import video_generation_pb2 as pb
from service.engines.tritonserver_process import TritonServerProcess
from tests.integration.service_process import ServiceProcess

REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
ENDPOINT = "ltx-video-13b-distilled/multiconditioning"


def request_json(frames: int, steps: int) -> dict[str, object]:
    return {
        "prompt": "a lighthouse on a cliff at dusk, waves below",
        "resolution": "720p",
        "aspect_ratio": "16:9",
        "num_frames": frames,
        "first_pass_num_inference_steps": steps,
        "second_pass_num_inference_steps": steps,
        "second_pass_skip_initial_steps": max(0, steps - 1),
        "seed": 11,
        "enable_safety_checker": True,
    }


def processes(root_pid: int) -> dict[str, psutil.Process]:
    """The process and its descendants, each named by what it runs."""
    root = psutil.Process(root_pid)
    named = {"tritonserver": root}
    for child in root.children(recursive=True):
        cmdline = " ".join(child.cmdline())
        model = next((part.split("/")[-3] for part in child.cmdline() if part.endswith("/model.py")), None)
        named[f"stub {model}" if model else cmdline[:40]] = child
    return named


def reset_peak(process: psutil.Process) -> None:
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")


def peak_mib(process: psutil.Process) -> float:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {process.pid}")


def run_one(
    service: ServiceProcess, tracked: dict[str, psutil.Process], frames: int, steps: int
) -> dict[str, float]:
    for process in tracked.values():
        reset_peak(process)
    started = time.perf_counter()
    request_id = service.submit(ENDPOINT, request_json(frames, steps)).request_id
    status = service.wait_completed(request_id, timeout_s=3600)
    elapsed = time.perf_counter() - started
    if status.HasField("error"):
        raise RuntimeError(f"{frames} frames failed: {status.error}")
    result = service.stub.Result(pb.ResultRequest(request_id=request_id))
    with urllib.request.urlopen(result.output.distilled_multiconditioning.video.url) as response:
        mp4 = response.read()
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        got = (stream.frames, stream.width, stream.height)
    if got != (frames, 1280, 720):
        raise RuntimeError(f"asked for {frames} frames at 1280x720, got {got}")
    return {"wall_s": elapsed, **{name: peak_mib(process) for name, process in tracked.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, nargs="+", default=[121, 1441])
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        server = TritonServerProcess(REPOSITORY, Path(work) / "triton")
        (Path(work) / "triton").mkdir()
        server.start(timeout_s=600)
        data_dir = Path(work) / "service"
        data_dir.mkdir()
        service = ServiceProcess(data_dir, ["--engine", "triton", "--triton-url", server.grpc_url])
        try:
            service.start(timeout_s=300)
            assert server.proc is not None and service.proc is not None
            tracked = {"service": psutil.Process(service.proc.pid), **processes(server.proc.pid)}
            rows = {frames: run_one(service, tracked, frames, args.steps) for frames in args.frames}
        finally:
            service.stop()
            server.stop()
    names = list(next(iter(rows.values())))
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        "| frames (720p) | " + " | ".join(f"{n} (MiB)" if n != "wall_s" else "wall (s)" for n in names) + " |"
    )
    print("|---" * (len(names) + 1) + "|")
    for frames, row in rows.items():
        print(f"| {frames} | " + " | ".join(f"{row[n]:.0f}" for n in names) + " |")


if __name__ == "__main__":
    main()
