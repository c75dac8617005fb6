"""Every LTX-Video spec example, end to end: `ltx-client run` against a real service on 127.0.0.1.

The examples (tests/data/spec_examples/*.json) name media on the public internet; here each URL is
rewritten to a small generated file served by a local http.server, and the service runs with
`[media] allow_private_networks = true` so it may fetch from 127.0.0.1. The decoded MP4's frame count, size
and rate are checked against the documented rules (service/domain/geometry.py, the extend rule in
service/pipelines/extend.py), never against the output itself.

Every example runs exactly as written: only its media URLs change.
"""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import av
import numpy as np
import pytest
from PIL import Image

from service.domain.geometry import AspectRatio, FrameSize, Resolution, frame_size, size_for
from service.pipelines.extend import plan_extension
from tests.integration.service_process import ROOT, ServiceProcess

EXAMPLES = ROOT / "tests" / "data" / "spec_examples"
CLI_TIMEOUT_S = 900
IMAGE_SIZE = (640, 480)  # 4:3, so `aspect_ratio: auto` must give a 4:3-class frame
INPUT_VIDEO_FRAMES = 32
INPUT_VIDEO_SIZE = (320, 180)  # 16:9
INPUT_VIDEO_FPS = 24
EXTEND_OUTPUT_FRAMES = 121  # service/api/defaults.py Extend.NUM_FRAMES: the extend output length
EXTEND_OUTPUT_FPS = 24
# Frame k of the input video is a flat grey of this level; two H.264 passes keep it within a few levels.
GREY_STEP, GREY_BASE, GREY_TOLERANCE = 6, 20, 4


class Decoded(NamedTuple):
    frames: np.ndarray  # uint8 [F, H, W, 3]
    fps: float


def _grey_level(k: int) -> int:
    return GREY_BASE + GREY_STEP * k


def _write_media(directory: Path) -> None:
    for name, colour in (("first.jpg", (200, 60, 40)), ("last.jpg", (40, 90, 200))):
        Image.new("RGB", IMAGE_SIZE, colour).save(directory / name, format="JPEG", quality=95)
    with av.open(str(directory / "input.mp4"), "w", format="mp4") as container:
        options = {"crf": "10", "preset": "ultrafast"}
        stream = container.add_stream("libx264", rate=INPUT_VIDEO_FPS, options=options)
        stream.width, stream.height = INPUT_VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        for k in range(INPUT_VIDEO_FRAMES):
            pixels = np.full((INPUT_VIDEO_SIZE[1], INPUT_VIDEO_SIZE[0], 3), _grey_level(k), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def media_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("media")
    _write_media(directory)
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def example_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data_dir = tmp_path_factory.mktemp("service")
    config = data_dir / "service.toml"
    config.write_text("[media]\nallow_private_networks = true\n")
    proc = ServiceProcess(data_dir, ["--config", str(config)])
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def _run_cli(service: ServiceProcess, endpoint: str, request: dict[str, Any], tmp_path: Path) -> Decoded:
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request))
    out_dir = tmp_path / "out"
    command = [sys.executable, "-m", "service.client.cli", "--server", f"127.0.0.1:{service.grpc_port}",
               "run", endpoint, "--input", str(request_file), "--out", str(out_dir)]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n--- service log ---\n{service.log_tail()}"
    result = json.loads(done.stdout)
    if "prompt" in result:  # the extend output has no prompt field
        assert result["prompt"] == request["prompt"]  # no expander is configured: the prompt as given
    assert isinstance(result["seed"], int)
    return _decode(out_dir / result["video"]["file_name"])


def _decode(path: Path) -> Decoded:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        assert stream.average_rate is not None, "the video has no frame rate"
        return Decoded(frames, float(stream.average_rate))


def _assert_video(decoded: Decoded, num_frames: int, size: FrameSize, fps: float) -> None:
    assert decoded.frames.shape == (num_frames, size.height, size.width, 3)
    assert decoded.fps == pytest.approx(fps)


def test_text_to_video_example_as_written(example_service: ServiceProcess, tmp_path: Path) -> None:
    request = _example("ltx-video-lora")
    decoded = _run_cli(example_service, "ltx-video-lora", request, tmp_path)
    size = frame_size(Resolution(request["resolution"]), AspectRatio(request["aspect_ratio"]))
    assert size == FrameSize(1280, 720)
    _assert_video(decoded, request["number_of_frames"], size, request["frame_rate"])


def test_multiconditioning_example(
    example_service: ServiceProcess, media_base_url: str, tmp_path: Path
) -> None:
    request = _example("ltx-video-lora-multiconditioning")
    request["images"][0]["image_url"] = f"{media_base_url}/first.jpg"
    request["images"][1]["image_url"] = f"{media_base_url}/last.jpg"
    decoded = _run_cli(example_service, "ltx-video-lora/multiconditioning", request, tmp_path)
    # aspect_ratio auto: the first image's 4:3 at 720p.
    size = size_for(Resolution(request["resolution"]), IMAGE_SIZE[0] / IMAGE_SIZE[1])
    assert size == FrameSize(960, 720)
    _assert_video(decoded, request["number_of_frames"], size, request["frame_rate"])


def test_extend_example(example_service: ServiceProcess, media_base_url: str, tmp_path: Path) -> None:
    request = _example("ltx-video-v097-extend")
    request["video"]["video_url"] = f"{media_base_url}/input.mp4"
    decoded = _run_cli(example_service, "ltx-video-v097/extend", request, tmp_path)
    size = frame_size(Resolution(request["resolution"]), AspectRatio(request["aspect_ratio"]))
    _assert_video(decoded, EXTEND_OUTPUT_FRAMES, size, EXTEND_OUTPUT_FPS)
    start = request["video"]["start_frame_num"]
    plan = plan_extension(EXTEND_OUTPUT_FRAMES, start)
    assert plan.kept == start == 24 and plan.output == EXTEND_OUTPUT_FRAMES
    # The kept frames are the input's frames 0..23, copied (the input is 24 fps like the output).
    kept_levels = decoded.frames[:start].reshape(start, -1).mean(axis=1)
    expected = np.array([_grey_level(k) for k in range(start)], dtype=float)
    assert np.abs(kept_levels - expected).max() <= GREY_TOLERANCE


def test_distilled_multiconditioning_example(
    example_service: ServiceProcess, media_base_url: str, tmp_path: Path
) -> None:
    request = _example("ltx-video-13b-distilled-multiconditioning")
    request["images"][0]["image_url"] = f"{media_base_url}/first.jpg"
    request["images"][1]["image_url"] = f"{media_base_url}/last.jpg"
    decoded = _run_cli(example_service, "ltx-video-13b-distilled/multiconditioning", request, tmp_path)
    size = size_for(Resolution(request["resolution"]), IMAGE_SIZE[0] / IMAGE_SIZE[1])
    _assert_video(decoded, request["num_frames"], size, request["frame_rate"])


def test_every_ltx_video_example_is_covered() -> None:
    covered = {"ltx-video-lora", "ltx-video-lora-multiconditioning", "ltx-video-v097-extend",
               "ltx-video-13b-distilled-multiconditioning"}  # fmt: skip
    examples = {p.stem for p in EXAMPLES.glob("*.json") if not p.stem.endswith(".output")}
    assert examples - {"ltx-2.3-22b-text-to-video-lora"} == covered
