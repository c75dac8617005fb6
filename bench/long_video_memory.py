"""Peak memory of a long video against a one-chunk one: it must not grow with the length.

    python -m bench.long_video_memory [--lengths 121 241 1441] [--width 832 --height 480] [--no-meters]

Each length runs the distilled pipeline (tiny preset, default latent windows: 16 latent frames (121
frames) overlapping by 3, decode tiles of 16 overlapping by 4) in its own fresh subprocess after a small
warm-up run, and reports:
  - peak RSS (ru_maxrss) and its rise over the RSS after the warm-up, the process's whole footprint,
    and for the longest request its high-water mark when decoding starts and at the end;
  - peak live torch tensor bytes and the largest tensor (bench.torch_memory.LiveTensorMeter);
  - tracemalloc's peak (numpy arrays and Python objects);
  - wall time (with the meters on, which cost a few percent; --no-meters for the time alone);
  - the output's size: the frames go to an unlinked temporary file, not to memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from bench.torch_memory import LiveTensorMeter
from bench.two_pass_vs_single import spec_for
from service.config import ModelConfig
from service.contract.frames import latent_frame_count
from service.domain.geometry import Resolution
from service.domain.job_context import JobContext
from service.domain.progress import Progress, ProgressCallback, Stage
from service.engines import torch_bindings
from service.pipelines.distilled import DistilledOptions, generate_distilled
from service.pipelines.long_video import window_plan

MIB = 1024 * 1024


def run_length(num_frames: int, width: int, height: int, meters: bool) -> dict[str, Any]:
    components = torch_bindings.load_components(ModelConfig())
    spec = dataclasses.replace(spec_for(width, height, num_frames), resolution=Resolution.P480)
    generate_distilled(
        components,
        dataclasses.replace(spec, width=64, height=64, num_frames=9),
        (),
        JobContext.create(),
    )  # warm-up: kernels, lazy init
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    meter = LiveTensorMeter()
    with ExitStack() as stack:
        if meters:
            stack.enter_context(meter)
            tracemalloc.start()
        rss_by_chunk: list[float] = []  # peak RSS so far, as decoding starts and at the end
        started = time.perf_counter()
        video = generate_distilled(
            components, spec, (), JobContext.create(on_progress=_rss_recorder(rss_by_chunk))
        )
        rss_by_chunk.append(_max_rss_mib())
        seconds = time.perf_counter() - started
        traced_peak = tracemalloc.get_traced_memory()[1] if meters else 0
    assert video.frames.shape == (num_frames, height, width, 3), video.frames.shape
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "num_frames": num_frames,
        "chunks": len(window_plan(latent_frame_count(num_frames), DistilledOptions().long_video)),
        "seconds": seconds,
        "peak_rss_mib": peak_kib / 1024,
        "rss_rise_mib": (peak_kib - baseline_kib) / 1024,
        "torch_peak_mib": meter.peak_bytes / MIB,
        "torch_largest_mib": meter.largest_bytes / MIB,
        "traced_peak_mib": traced_peak / MIB,
        "output_mib": video.frames.nbytes / MIB,
        "output_in": type(video.frames).__name__,
        "peak_rss_after_chunk_mib": rss_by_chunk,
    }


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _rss_recorder(into: list[float]) -> ProgressCallback:
    def record(progress: Progress) -> None:
        if progress.stage is Stage.DECODING:
            into.append(_max_rss_mib())

    return record


def _in_subprocess(num_frames: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.long_video_memory",
        "--one",
        str(num_frames),
        "--width",
        str(args.width),
        "--height",
        str(args.height),
    ] + (["--no-meters"] if args.no_meters else [])
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[121, 241, 1441])
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--no-meters", action="store_true", help="time only: no tensor meter, no tracemalloc")
    parser.add_argument("--one", type=int, help="run one length here and print JSON (internal)")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_length(args.one, args.width, args.height, not args.no_meters)))
        return
    rows = [_in_subprocess(length, args) for length in args.lengths]
    print(
        f"{args.width}x{args.height}, tiny preset, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "| frames | windows | wall time (s) | peak RSS (MiB) | RSS rise (MiB) | torch peak (MiB) "
        "| largest tensor (MiB) | tracemalloc peak (MiB) | output (MiB, in) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['num_frames']} | {row['chunks']} | {row['seconds']:.1f} | {row['peak_rss_mib']:.0f} "
            f"| {row['rss_rise_mib']:.0f} | {row['torch_peak_mib']:.0f} | {row['torch_largest_mib']:.0f} "
            f"| {row['traced_peak_mib']:.1f} | {row['output_mib']:.0f}, {row['output_in']} |"
        )
    last = rows[-1]
    after = ", ".join(f"{mib:.0f}" for mib in last["peak_rss_after_chunk_mib"])
    print(
        f"{last['num_frames']} frames ({last['chunks']} windows), peak RSS (MiB) as decoding starts, at the end: {after}"
    )
    for row in rows[:-1]:
        print(
            f"{last['num_frames']} vs {row['num_frames']} frames: peak RSS "
            f"{last['peak_rss_mib'] / row['peak_rss_mib']:.2f}x, torch peak "
            f"{last['torch_peak_mib'] / max(row['torch_peak_mib'], 1e-9):.2f}x"
        )


if __name__ == "__main__":
    main()
