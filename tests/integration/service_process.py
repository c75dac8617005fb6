"""A real `ltx-serve` in a subprocess on 127.0.0.1 with ephemeral ports, for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.client.cli import build_request

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment
    grpc_port: int = 0
    http_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    channel: grpc.Channel | None = None

    def start(self, timeout_s: float = 90.0) -> None:
        self.grpc_port = self.grpc_port or free_port()
        self.http_port = self.http_port or free_port()
        cmd = [
            sys.executable,
            "-m",
            "service.main",
            "--port",
            str(self.grpc_port),
            "--http-port",
            str(self.http_port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        log = (self.data_dir / "service.log").open("ab")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        # Reconnect at least every second: a slow start (a loaded machine) must not leave the channel in
        # gRPC's exponential reconnect backoff (up to 2 minutes) after the server is up.
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{self.grpc_port}",
            options=[("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000)],
        )
        self._wait_serving(timeout_s)

    def _wait_serving(self, timeout_s: float) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"service exited: {self.log_tail()}"
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"service not serving after {timeout_s}s: {self.log_tail()}")

    @property
    def stub(self) -> pb_grpc.VideoGenerationStub:
        assert self.channel is not None, "start the service first"
        return pb_grpc.VideoGenerationStub(self.channel)

    def submit(self, endpoint_id: str, data: dict[str, Any]) -> pb.SubmitResponse:
        return self.stub.Submit(build_request(endpoint_id, data), timeout=10)

    def wait_completed(self, request_id: str, timeout_s: float = 120.0) -> pb.StatusResponse:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.stub.Status(pb.StatusRequest(request_id=request_id), timeout=5)
            if status.status == pb.COMPLETED:
                return status
            time.sleep(0.2)
        raise TimeoutError(f"{request_id} not completed after {timeout_s}s")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_channel()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_channel()

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def log_tail(self, lines: int = 40) -> str:
        path = self.data_dir / "service.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
