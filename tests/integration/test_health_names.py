"""Liveness never depends on Triton: with the Triton engine pointed at a port nobody listens on, a real
`ltx-serve` is live but not ready on its admin port, and Submit answers UNAVAILABLE."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.client.cli import build_request
from tests.integration.service_process import ROOT, free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SMALL = {
    "prompt": "a red ball",
    "resolution": "480p",
    "aspect_ratio": "1:1",
    "number_of_frames": 9,
    "number_of_steps": 2,
    "frame_rate": 12,
    "seed": 7,
}


def _check(stub: health_pb2_grpc.HealthStub, name: str) -> int:
    return int(stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=2).status)


def test_live_but_not_ready_while_triton_is_unreachable(tmp_path: Path) -> None:
    grpc_port, admin_port = free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "service.main",
        "--data-dir",
        str(tmp_path),
        "--port",
        str(grpc_port),
        "--http-port",
        "0",
        "--admin-port",
        str(admin_port),
        "--engine",
        "triton",
        "--triton-url",
        f"127.0.0.1:{free_port()}",
    ]
    with (tmp_path / "service.log").open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{admin_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, (tmp_path / "service.log").read_text()[-2000:]
                try:
                    if _check(stub, "liveness") == SERVING:
                        break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, "never live"
                    time.sleep(0.2)
            time.sleep(5)  # a couple of readiness polls against the dead Triton address
            assert _check(stub, "liveness") == SERVING
            for name in ("readiness", "", "ltx.v1.VideoGeneration"):
                assert _check(stub, name) == NOT_SERVING, name
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.VideoGenerationStub(channel).Submit(
                    build_request("ltx-video-lora", SMALL), timeout=10
                )
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        proc.terminate()
        proc.wait(timeout=30)
