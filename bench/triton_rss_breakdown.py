"""What tritonserver's own memory is made of while frames stream through it, per video length.

    python -m bench.triton_rss_breakdown --frames 121 361 721                # 320x192, the fix as shipped
    MALLOC_MMAP_THRESHOLD_=33554432 python -m bench.triton_rss_breakdown    # a threshold that lets pieces into the heap

Loads only the LTX-Video models (`--model-control-mode=explicit`: starts in about a minute instead of
four) and runs the distilled endpoint at a small size through the service's worker code in this process,
as `bench.triton_stream_memory` does. Every 0.25 s it reads tritonserver's /proc status: RssAnon (its
heap: gRPC responses, the Python backend's copies) and RssShmem (the Python backend's shared-memory
pool it has touched), and it records when each frames piece reached the client. Per length: the peak
of each, what is left when the request has ended, and the pieces' arrival times. A heap that keeps
growing piece after piece, and keeps it after the request, is memory held per response.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.triton_stream_memory import REPOSITORY, in_process, reset_peak
from service.config import EngineKind, ServiceConfig
from service.domain.geometry import FrameSize
from service.engines import triton as triton_engine
from service.engines.tritonserver_process import TritonServerProcess

MODELS = ("ltx_pipeline", "text_encoder", "transformer", "vae_decoder", "vae_encoder", "latent_upsampler")
FIELDS = ("VmHWM", "RssAnon", "RssShmem")


def memory_mib(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            values[key] = int(value.split()[0]) // 1024
    return values


class Sampler:
    """tritonserver's memory every `interval_s` while a request runs, in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.samples: list[dict[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(memory_mib(self.pid))
            time.sleep(self.interval_s)


def record_arrivals(arrivals: list[float]) -> None:
    """Note when each frames piece reaches TritonEngine's receiver (this process)."""
    add = triton_engine.FrameReceiver.add

    def timed_add(self: triton_engine.FrameReceiver, result: Any) -> None:
        if result.as_numpy("frames") is not None:
            arrivals.append(time.monotonic())
        add(self, result)

    triton_engine.FrameReceiver.add = timed_add  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, nargs="+", default=[121, 361, 721])
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=192)
    args = parser.parse_args()
    arrivals: list[float] = []
    record_arrivals(arrivals)
    with tempfile.TemporaryDirectory() as work:
        loads = [f"--load-model={name}" for name in MODELS]
        server = TritonServerProcess(
            REPOSITORY, Path(work) / "triton", extra_args=["--model-control-mode=explicit", *loads]
        )
        server.start(timeout_s=900)
        try:
            assert server.proc is not None
            pid = server.proc.pid
            config = dataclasses.replace(
                ServiceConfig(), engine=EngineKind.TRITON, triton_url=server.grpc_url
            )
            run = in_process(config, Path(work) / "results", FrameSize(args.width, args.height), steps=2)
            print(
                f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', '(tritonserver_process default)')}"
            )
            print("| frames | peak RSS | peak RssAnon | RssAnon after | RssShmem | pieces arrived at (s) |")
            print("|---|---|---|---|---|---|")
            for frames in args.frames:
                arrivals.clear()
                reset_peak(psutil.Process(pid))
                started = time.monotonic()
                with Sampler(pid) as sampler:
                    run(frames)
                after = memory_mib(pid)
                peak_anon = max(sample["RssAnon"] for sample in sampler.samples)
                times = ", ".join(f"{moment - started:.1f}" for moment in arrivals)
                print(
                    f"| {frames} | {after['VmHWM']} | {peak_anon} | {after['RssAnon']} | {after['RssShmem']} "
                    f"| {times} |",
                    flush=True,
                )
        finally:
            server.stop()
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
