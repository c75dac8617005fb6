"""`ltx-2.3-22b/text-to-video/lora` end to end: `ltx-client run` against a real service on the tiny preset.

Outputs are decoded with PyAV and checked against the documented geometry (frame count, size, fps), the
audio stream (present iff `generate_audio`, 48 kHz, duration within one video frame of the video's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import grpc
import pytest
import torch
from safetensors.torch import save_file

from ltx.v1 import video_generation_pb2 as pb
from service.domain.specs import CameraLora, VideoOutputType
from service.models.ltx2 import build_tiny_ltx2
from service.models.ltx2_loras import CAMERA_LORA_FILES, tiny_distilled_lora
from tests.integration.service_process import ROOT, ServiceProcess

EXAMPLE = json.loads((ROOT / "tests/data/spec_examples/ltx-2.3-22b-text-to-video-lora.json").read_text())
ENDPOINT = "ltx-2.3-22b/text-to-video/lora"
SMALL = {**EXAMPLE, "video_size": {"width": 128, "height": 96}, "num_frames": 17, "num_inference_steps": 4}
CLI_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("loras")
    models = build_tiny_ltx2(0)
    save_file(tiny_distilled_lora(models, seed=3), str(directory / "user.safetensors"))
    bad = {"diffusion_model.not_a_module.lora_A.weight": torch.zeros(2, 4),
           "diffusion_model.not_a_module.lora_B.weight": torch.zeros(4, 2)}  # fmt: skip
    save_file(bad, str(directory / "bad.safetensors"))
    cameras = directory / "camera"
    cameras.mkdir()
    save_file(tiny_distilled_lora(models, seed=4), str(cameras / CAMERA_LORA_FILES[CameraLora.DOLLY_IN]))
    return directory


@pytest.fixture(scope="module")
def ltx2_service(tmp_path_factory: pytest.TempPathFactory, lora_dir: Path) -> Iterator[ServiceProcess]:
    data_dir = tmp_path_factory.mktemp("ltx2-service")
    config = data_dir / "service.toml"
    config.write_text(
        f'[ltx2]\ncamera_lora_dir = "{lora_dir / "camera"}"\n'
        f'[lora]\nallow_local_paths = true\nlocal_roots = ["{lora_dir}"]\n'
    )
    proc = ServiceProcess(data_dir, ["--config", str(config)])
    proc.start(timeout_s=300)  # two model families load, on a shared CPU
    try:
        yield proc
    finally:
        proc.stop()


def _run_cli(service: ServiceProcess, request: dict[str, Any], tmp_path: Path) -> tuple[dict[str, Any], Path]:
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request))
    out_dir = tmp_path / "out"
    command = [sys.executable, "-m", "service.client.cli", "--server", f"127.0.0.1:{service.grpc_port}",
               "run", ENDPOINT, "--input", str(request_file), "--out", str(out_dir)]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n--- service log ---\n{service.log_tail()}"
    result = json.loads(done.stdout)
    return result, out_dir / result["video"]["file_name"]


def _check(path: Path, frames: int, width: int, height: int, fps: float, audio: bool) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert len(decoded) == frames and decoded[0].shape == (height, width, 3)
        if path.suffix != ".gif":  # ffmpeg guesses a GIF's rate from its shortest delay: see below
            assert stream.average_rate is not None
            assert float(stream.average_rate) == pytest.approx(fps)
    if path.suffix == ".gif":  # its 4/5 cs delays add up to the clip's length at `fps`
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            last = [p for p in container.demux(stream) if p.pts is not None][-1]
            end = ((last.pts or 0) + (last.duration or 0)) * (stream.time_base or 0)
        assert float(end) == pytest.approx(frames / fps, abs=0.01)
    with av.open(str(path)) as container:
        assert bool(container.streams.audio) == audio
        if audio:
            track = container.streams.audio[0]
            assert track.rate == 48_000
            samples = sum(f.samples for f in container.decode(track))
            assert abs(samples / 48_000 - frames / fps) <= 1 / fps


def test_spec_example_as_written(ltx2_service: ServiceProcess, tmp_path: Path) -> None:
    result, path = _run_cli(ltx2_service, EXAMPLE, tmp_path)
    video = result["video"]
    assert (video["width"], video["height"], video["num_frames"], video["fps"]) == (1248, 704, 121, 24)
    assert video["content_type"] == "video/mp4" and path.suffix == ".mp4"
    assert video["duration"] == pytest.approx(121 / 24) and video["file_size"] == path.stat().st_size
    _check(path, 121, 1248, 704, 24.0, audio=True)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"


@pytest.mark.parametrize("output_type", [t for t in VideoOutputType if t is not VideoOutputType.X264_MP4])
def test_other_output_types(
    ltx2_service: ServiceProcess, tmp_path: Path, output_type: VideoOutputType
) -> None:
    result, path = _run_cli(ltx2_service, {**SMALL, "video_output_type": output_type.value}, tmp_path)
    assert result["video"]["content_type"] == {"VP9 (.webm)": "video/webm", "PRORES4444 (.mov)": "video/quicktime",
                                               "GIF (.gif)": "image/gif"}[output_type.value]  # fmt: skip
    assert result["video"]["fps"] == pytest.approx(24.0)
    assert result["video"]["duration"] == pytest.approx(17 / 24)
    _check(path, 17, 128, 96, 24.0, audio=output_type is not VideoOutputType.GIF)


def test_no_audio_stream_without_generate_audio(ltx2_service: ServiceProcess, tmp_path: Path) -> None:
    _, path = _run_cli(ltx2_service, {**SMALL, "generate_audio": False}, tmp_path)
    _check(path, 17, 128, 96, 24.0, audio=False)


def test_local_lora_and_installed_camera_lora(
    ltx2_service: ServiceProcess, lora_dir: Path, tmp_path: Path
) -> None:
    request = {
        **SMALL,
        "loras": [{"path": str(lora_dir / "user.safetensors"), "scale": 0.8}],
        "camera_lora": "dolly_in",
    }
    _, path = _run_cli(ltx2_service, request, tmp_path)
    _check(path, 17, 128, 96, 24.0, audio=True)


def test_unplaceable_lora_key_fails_the_job(ltx2_service: ServiceProcess, lora_dir: Path) -> None:
    request = {**SMALL, "loras": [{"path": str(lora_dir / "bad.safetensors"), "scale": 1.0}]}
    final = ltx2_service.wait_completed(ltx2_service.submit(ENDPOINT, request).request_id, timeout_s=300)
    assert final.error.error_type == "lora_load_failed"
    assert "not_a_module" in final.error.message


def test_uninstalled_camera_lora_is_refused(ltx2_service: ServiceProcess) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        ltx2_service.submit(ENDPOINT, {**SMALL, "camera_lora": "jib_down"})
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_sync_mode_returns_a_data_uri_and_keeps_no_file(ltx2_service: ServiceProcess) -> None:
    request_id = ltx2_service.submit(ENDPOINT, {**SMALL, "sync_mode": True}).request_id
    ltx2_service.wait_completed(request_id, timeout_s=300)
    result = ltx2_service.stub.Result(pb.ResultRequest(request_id=request_id))
    url = result.output.ltx2_text_to_video.video.url
    assert url.startswith("data:video/mp4;base64,")
    assert not (ltx2_service.data_dir / "results" / request_id).exists()
