"""Issue 9: the container write on the LTX-2.3 spec example's frames: time, size and PSNR per output type,
`video_quality` and `video_write_mode`.

Run: `OMP_NUM_THREADS=2 .venv/bin/python -m bench.container_write [--frames-npy F.npy] [--count N]
[--types GIF ...] [--quality high ...] [--write-mode balanced ...]` (types by enum name: X264_MP4, VP9_WEBM,
PRORES4444_MOV, GIF).
Without `--frames-npy` the frames are generated first: the spec example on the tiny preset (as
`bench.ltx2_tiny_stages` runs it, prompt expansion off), and saved to `--save` if given. The write is
`service.media.container.write_video` with the finish path's 16-frame chunks; PSNR is of the GIF's decoded
frames (PyAV, RGB) against the source frames, over all frames. Run the same script with `PYTHONPATH` pointing
at an older checkout to measure that checkout's writer on the same frames.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from service.domain.specs import VideoOutputType, VideoQuality, VideoWriteMode
from service.media.container import EncodeSettings, write_video

CHUNK = 16
FPS = 24.0


def spec_example_frames() -> np.ndarray:
    import dataclasses
    import json
    import random

    import torch
    from google.protobuf import json_format

    from bench.ltx2_tiny_stages import EXAMPLE
    from ltx.v1 import endpoints_pb2 as pb
    from service.api.convert import ltx2_spec
    from service.domain.job_context import JobContext
    from service.engines.ltx2_local import bind_ltx2_components
    from service.models.ltx2 import build_tiny_ltx2
    from service.models.ltx2_loras import (
        DISTILLED,
        ActiveAdapter,
        install_distilled,
        ltx2_helper_pipeline,
        set_stage_adapters,
    )
    from service.pipelines.ltx2.text_to_video import generate_ltx2

    torch.set_num_threads(2)
    message = json_format.ParseDict(json.loads(EXAMPLE.read_text()), pb.Ltx2TextToVideoInput())
    spec = dataclasses.replace(ltx2_spec(message, rng=random.Random(0)), expand_prompt=False)
    models = build_tiny_ltx2(0)
    install_distilled(ltx2_helper_pipeline(models), models, 0)
    active = [
        ActiveAdapter(DISTILLED, spec.distill_lora_first_pass_scale, spec.distill_lora_second_pass_scale)
    ]
    video = generate_ltx2(
        bind_ltx2_components(models),
        spec,
        JobContext.create(),
        lambda s: set_stage_adapters(models, active, s),
    )
    return np.asarray(video.frames)


def decoded_psnr(path: Path, source: np.ndarray) -> tuple[float, int, float]:
    """PSNR (dB) of the decoded video against `source`, its frame count and its duration in seconds."""
    squared, count, end = 0.0, 0, 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            decoded = frame.to_ndarray(format="rgb24").astype(np.float64)
            squared += float(((decoded - source[count]) ** 2).sum())
            count += 1
            end = float(((frame.pts or 0) + (frame.duration or 0)) * (stream.time_base or 0))
    mse = squared / (count * source[0].size)
    return 10 * np.log10(255**2 / mse), count, end


def measure(frames: np.ndarray, settings: EncodeSettings, directory: Path) -> str:
    path = directory / f"{settings.quality.value}-{settings.write_mode.value}{settings.container.extension}"
    chunks = (frames[i : i + CHUNK] for i in range(0, len(frames), CHUNK))
    started = time.perf_counter()
    cpu = time.process_time()
    write_video(path, chunks, FPS, settings)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    psnr, count, duration = decoded_psnr(path, frames)
    size = path.stat().st_size / 2**20
    label = f"{settings.output_type.name} | {settings.quality.value} | {settings.write_mode.value}"
    return f"| {label} | {wall:.1f} | {cpu:.1f} | {size:.1f} | {psnr:.2f} | {count} | {duration:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames-npy", type=Path)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--count", type=int, default=0, help="first N frames only (0: all)")
    parser.add_argument("--types", nargs="+", default=["GIF"], choices=[t.name for t in VideoOutputType])
    parser.add_argument("--quality", nargs="+", default=[q.value for q in VideoQuality])
    parser.add_argument("--write-mode", nargs="+", default=[VideoWriteMode.BALANCED.value])
    args = parser.parse_args()
    frames = np.load(args.frames_npy) if args.frames_npy else spec_example_frames()
    if args.save:
        np.save(args.save, frames)
    if args.count:
        frames = frames[: args.count]
    print(f"{len(frames)} frames {frames.shape[2]}x{frames.shape[1]} at {FPS} fps")
    print("| type | quality | write mode | wall s | CPU s | MiB | PSNR dB | frames decoded | duration s |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        for kind, quality, mode in itertools.product(args.types, args.quality, args.write_mode):
            settings = EncodeSettings(VideoOutputType[kind], VideoQuality(quality), VideoWriteMode(mode))
            print(measure(frames, settings, Path(directory)), flush=True)


if __name__ == "__main__":
    main()
