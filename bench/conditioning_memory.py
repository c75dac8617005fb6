"""Peak RSS of a distilled request with four conditioning videos against the same request without them
(issue 8's Done-when: under 1.5x).

    python -m bench.conditioning_memory [--width 1280 --height 704 --frames 161] [--videos 4]

Each variant runs in its own fresh subprocess (tiny preset, in-process): the media preparation of the
job (data URIs -> fetch -> decode -> conditioning media, exactly as a job does it) and the distilled
pipeline, after a small warm-up. Reported: peak RSS (ru_maxrss), its rise over the post-warm-up RSS,
and wall time. The conditioning videos are small synthetic H.264 clips (64x64, `--frames` frames),
decoded and scaled to the output size by the service, which is where the memory went before the fix.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import resource
import subprocess
import sys
import time
from typing import Any

import av
import numpy as np

from bench.two_pass_vs_single import spec_for
from service.config import ModelConfig
from service.domain.job_context import JobContext
from service.domain.specs import DistilledMulticonditioningSpec, VideoConditionSpec
from service.engines import torch_bindings
from service.engines.endpoint_pipelines import narrowed
from service.inputs.media import prepare_conditioning_inputs
from service.media.fetch import FetchLimits
from service.pipelines.distilled import generate_distilled

MIB = 1024 * 1024


def _video_data_uri(frames: int, seed: int) -> str:
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return "data:video/mp4;base64," + base64.b64encode(buffer.getvalue()).decode()


def run_variant(width: int, height: int, frames: int, videos: int) -> dict[str, Any]:
    components = torch_bindings.load_components(ModelConfig())
    spec = spec_for(width, height, frames)
    generate_distilled(
        components,
        dataclasses.replace(spec, width=64, height=64, num_frames=9),
        (),
        JobContext.create(),
    )  # warm-up
    conditions = tuple(VideoConditionSpec(url=_video_data_uri(frames, i)) for i in range(videos))
    spec = dataclasses.replace(spec, videos=conditions)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    prepared = prepare_conditioning_inputs(spec, FetchLimits(), None, lambda _: None)
    distilled = narrowed(prepared.spec, DistilledMulticonditioningSpec)
    video = generate_distilled(components, distilled, prepared.media, JobContext.create())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "videos": videos,
        "frames": int(video.frames.shape[0]),
        "size": f"{video.frames.shape[2]}x{video.frames.shape[1]}",
        "conditioning_bytes": sum(m.pixels.element_size() * m.pixels.nelement() for m in prepared.media),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "rise_mib": round((peak_kib - baseline_kib) / 1024, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=704)
    parser.add_argument("--frames", type=int, default=161)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_variant(args.width, args.height, args.frames, args.child)))
        return
    rows = []
    for videos in (0, args.videos):
        command = [
            sys.executable,
            "-m",
            "bench.conditioning_memory",
            "--width",
            str(args.width),
            "--height",
            str(args.height),
            "--frames",
            str(args.frames),
            "--child",
            str(videos),
        ]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    ratio = rows[1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(f"peak RSS with {args.videos} videos / without: {ratio:.2f}x (Done-when: under 1.5x)")


if __name__ == "__main__":
    main()
