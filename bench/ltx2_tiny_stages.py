"""Issue 9: the LTX-2.3 spec example on the tiny preset, in process, timed per stage.

Run: `OMP_NUM_THREADS=2 .venv/bin/python -m bench.ltx2_tiny_stages [--acceleration none|regular|high|full]`.
Stages are delimited by the pipeline's own progress events (prompt expansion, text encoding, stage 1,
upsampler, stage 2, video decode, audio decode) and then the container encode of the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from google.protobuf import json_format

from ltx.v1 import endpoints_pb2 as pb
from service.api.convert import ltx2_spec
from service.domain.job_context import JobContext
from service.domain.progress import Progress
from service.domain.specs import Acceleration
from service.engines.ltx2_local import bind_ltx2_components
from service.jobs.ltx2_output import store_video
from service.models.ltx2 import build_tiny_ltx2
from service.models.ltx2_loras import (
    DISTILLED,
    ActiveAdapter,
    install_distilled,
    ltx2_helper_pipeline,
    set_stage_adapters,
)
from service.pipelines.ltx2.text_to_video import generate_ltx2
from service.prompting.ltx2_gemma import ResidentGemmaExpander
from service.storage.local import LocalStorage

EXAMPLE = Path(__file__).resolve().parents[1] / "tests/data/spec_examples/ltx-2.3-22b-text-to-video-lora.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--acceleration", default="none", choices=[a.value for a in Acceleration])
    args = parser.parse_args()
    torch.set_num_threads(2)
    message = json_format.ParseDict(json.loads(EXAMPLE.read_text()), pb.Ltx2TextToVideoInput())
    spec = dataclasses.replace(
        ltx2_spec(message, rng=random.Random(0)), acceleration=Acceleration(args.acceleration)
    )
    models = build_tiny_ltx2(0)
    pipe = ltx2_helper_pipeline(models)
    install_distilled(pipe, models, 0)
    marks: list[tuple[str, float]] = []
    started = time.perf_counter()
    expanded = ResidentGemmaExpander(models.text_encoder, models.tokenizer, 24).expand(spec.prompt)
    marks.append(("prompt expansion", time.perf_counter()))
    spec = dataclasses.replace(spec, prompt=expanded)

    def progress(event: Progress) -> None:
        label = event.message.split(" step")[0] if event.step else event.stage.value
        if not marks or marks[-1][0] != label:
            marks.append((label, time.perf_counter()))

    active = [
        ActiveAdapter(DISTILLED, spec.distill_lora_first_pass_scale, spec.distill_lora_second_pass_scale)
    ]
    video = generate_ltx2(
        bind_ltx2_components(models),
        spec,
        JobContext.create(on_progress=progress),
        lambda s: set_stage_adapters(models, active, s),
    )
    marks.append(("generated", time.perf_counter()))
    with tempfile.TemporaryDirectory() as directory:
        store_video(LocalStorage(Path(directory), "http://x"), "bench", spec, video)
    marks.append(("container encode", time.perf_counter()))
    previous = started
    print(f"acceleration {args.acceleration}: {video.frames.shape} frames, audio {video.audio is not None}")
    for (label, at), (_, end) in zip(marks, [*marks[1:], ("", marks[-1][1])], strict=True):
        if label == "prompt expansion":
            print(f"  {label:24s} {at - previous:7.2f} s")
        elif end > at:
            print(f"  {label:24s} {end - at:7.2f} s")
    print(f"  {'total':24s} {marks[-1][1] - started:7.2f} s")


if __name__ == "__main__":
    main()
