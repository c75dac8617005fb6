"""API keys, mTLS, the admin port, Prometheus metrics, JSON logs and signed result URLs, against a real
`ltx-serve` on 127.0.0.1 (one server for the module: starting one costs seconds on 2 cores)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.client.cli import build_request
from tests.integration.certs import CertFiles, make_certs
from tests.integration.service_process import ROOT, free_port

T2V = "ltx-video-lora"
SMALL = {
    "prompt": "a red ball",
    "resolution": "480p",
    "aspect_ratio": "1:1",
    "number_of_frames": 9,
    "number_of_steps": 2,
    "frame_rate": 12,
    "seed": 7,
}
FULL_KEY = "full-access-key-0123456789"
LIMITED_KEY = "distilled-only-key-0123456789"
KEYS_TOML = f"""
[[keys]]
name = "renderer"
key = "{FULL_KEY}"

[[keys]]
name = "distilled-only"
key = "{LIMITED_KEY}"
endpoints = ["ltx-video-13b-distilled/multiconditioning"]
"""


@dataclass
class SecureService:
    proc: subprocess.Popen[bytes]
    log_path: Path
    certs: CertFiles
    grpc_port: int
    admin_port: int
    metrics_port: int

    def channel(self, *, client_cert: bool = True) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.certs.ca.read_bytes(),
            private_key=self.certs.client_key.read_bytes() if client_cert else None,
            certificate_chain=self.certs.client_cert.read_bytes() if client_cert else None,
        )
        return grpc.secure_channel(f"127.0.0.1:{self.grpc_port}", credentials)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            return response.read().decode()


def _wait_ready(
    admin_port: int, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 120
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{admin_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if stub.Check(health_pb2.HealthCheckRequest(service="readiness"), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(log_path.read_text()[-3000:])


def _start(root: Path, certs: CertFiles, extra: list[str]) -> SecureService:
    """`ltx-serve` with TLS from `certs` and `extra` flags, ready (its readiness health SERVING)."""
    ports = [free_port() for _ in range(4)]
    cmd = [
        sys.executable,
        "-m",
        "service.main",
        "--data-dir",
        str(root / "data"),
        "--port",
        str(ports[0]),
        "--http-port",
        str(ports[1]),
        "--admin-port",
        str(ports[2]),
        "--metrics-port",
        str(ports[3]),
        "--tls-cert-file",
        str(certs.server_cert),
        "--tls-key-file",
        str(certs.server_key),
        *extra,
    ]
    log_path = root / "service.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(ports[2], proc, log_path)
    except BaseException:
        _stop(proc)
        raise
    return SecureService(proc, log_path, certs, ports[0], ports[2], ports[3])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureService]:
    """API keys, mTLS (a client certificate signed by the CA is required) and JSON logs."""
    root = tmp_path_factory.mktemp("secure")
    certs = make_certs(root)
    keys = root / "api-keys.toml"
    keys.write_text(KEYS_TOML)
    extra = ["--api-keys-file", str(keys), "--tls-client-ca-file", str(certs.ca), "--log-format", "json"]
    running = _start(root, certs, extra)
    try:
        yield running
    finally:
        _stop(running.proc)


def _stub(service: SecureService) -> pb_grpc.VideoGenerationStub:
    return pb_grpc.VideoGenerationStub(service.channel())


def _bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def test_no_key_or_a_wrong_key_is_unauthenticated(service: SecureService) -> None:
    stub = _stub(service)
    for metadata in ((), _bearer("not-a-configured-key-at-all"), (("authorization", FULL_KEY),)):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Submit(build_request(T2V, SMALL), metadata=metadata, timeout=10)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as caught:
        stub.Status(pb.StatusRequest(request_id="x"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as caught:  # client streaming too
        stub.Upload(iter([pb.UploadRequest(file_name="a.png", chunk=b"\x89PNG")]), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_key_not_allowed_the_endpoint_is_permission_denied(service: SecureService) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _stub(service).Submit(build_request(T2V, SMALL), metadata=_bearer(LIMITED_KEY), timeout=10)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "distilled-only" in (caught.value.details() or "")


def test_tls_without_client_certificate_or_plaintext_is_refused(service: SecureService) -> None:
    for channel in (
        service.channel(client_cert=False),
        grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}"),
    ):
        with channel, pytest.raises(grpc.RpcError) as caught:
            pb_grpc.VideoGenerationStub(channel).Status(
                pb.StatusRequest(request_id="x"), metadata=_bearer(FULL_KEY), timeout=5
            )
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


def test_plain_tls_without_client_certificates(tmp_path: Path) -> None:
    """Server TLS alone (no client CA): a client that trusts the CA gets through without a certificate of
    its own; plaintext is refused."""
    certs = make_certs(tmp_path)
    running = _start(tmp_path, certs, [])
    try:
        with running.channel(client_cert=False) as channel, pytest.raises(grpc.RpcError) as caught:
            pb_grpc.VideoGenerationStub(channel).Status(pb.StatusRequest(request_id="x"), timeout=10)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND  # it reached the servicer over TLS
        with (
            grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}") as plain,
            pytest.raises(grpc.RpcError) as refused,
        ):
            pb_grpc.VideoGenerationStub(plain).Status(pb.StatusRequest(request_id="x"), timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        _stop(running.proc)


def test_admin_port_health_names_without_key(service: SecureService) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{service.admin_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("liveness", "readiness", "", "ltx.v1.VideoGeneration"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _fetch_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_job_end_to_end_with_key_then_metrics_logs_and_signed_url(service: SecureService) -> None:
    stub = _stub(service)
    submitted = stub.Submit(build_request(T2V, SMALL), metadata=_bearer(FULL_KEY), timeout=10)
    events = list(
        stub.Watch(pb.WatchRequest(request_id=submitted.request_id), metadata=_bearer(FULL_KEY), timeout=120)
    )
    assert events[-1].status == pb.COMPLETED
    url = events[-1].result.text_to_video.video.url
    assert re.search(r"\?expires=\d+&sig=[0-9a-f]{64}$", url), url
    assert _fetch_status(url) == 200
    unsigned = url.split("?")[0]
    assert _fetch_status(unsigned) == 403
    assert _fetch_status(url[:-4] + ("0000" if not url.endswith("0000") else "1111")) == 403

    samples = _samples(service.metrics_text())
    assert samples[("ltx_jobs_total", (("endpoint", T2V), ("error_type", ""), ("status", "succeeded")))] >= 1
    for stage in ("prepare", "generate", "finish"):
        assert samples[("ltx_job_stage_duration_seconds_count", (("endpoint", T2V), ("stage", stage)))] >= 1
    assert samples[("ltx_jobs_queued", ())] == 0
    assert 0 <= samples[("ltx_accelerator_busy_ratio", ())] <= 1
    assert samples[("ltx_accelerator_busy_seconds_total", ())] > 0
    rpc = (("grpc_method", "Submit"), ("grpc_service", "ltx.v1.VideoGeneration"))
    assert samples[("grpc_server_handled_total", (("grpc_code", "UNAUTHENTICATED"), *rpc))] >= 3
    assert samples[("grpc_server_handled_total", (("grpc_code", "PERMISSION_DENIED"), *rpc))] >= 1
    assert samples[("grpc_server_handled_total", (("grpc_code", "OK"), *rpc))] >= 1
    assert samples[("grpc_server_handling_seconds_count", rpc)] >= 5
    assert samples[("ltx_auth_requests_total", (("key", "renderer"), ("outcome", "ok")))] >= 2
    assert (
        samples[("ltx_auth_requests_total", (("key", "distilled-only"), ("outcome", "permission_denied")))]
        >= 1
    )

    lines = [json.loads(line) for line in service.log_path.read_text().splitlines() if line.startswith("{")]
    assert lines, "no JSON log lines"
    job_lines = [line for line in lines if line.get("request_id") == submitted.request_id]
    assert job_lines, "no log line carries the job's request id"
    assert any(line.get("api_key") == "renderer" for line in job_lines)
