"""The specs' queue semantics through a real server: webhooks (retried, signed, verified with the JWKS),
idempotent submits, priorities and start timeouts."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest

from ltx.v1 import video_generation_pb2 as pb
from service.api.status import field_violations
from service.client.cli import build_request, upload_file, upload_local_files
from service.config import ServiceConfig
from service.jobs.webhooks import verify
from tests.integration.service_process import ServiceProcess, free_port

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
SLOW = {
    "prompt": "a long walk",
    "resolution": "720p",
    "aspect_ratio": "16:9",
    "number_of_frames": 161,
    "number_of_steps": 50,
    "seed": 1,
}


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 500 to the first `fail_first` attempts."""

    def __init__(self, fail_first: int) -> None:
        self.attempts: list[tuple[dict[str, str], bytes]] = []
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k: v for k, v in self.headers.items()}
                receiver.attempts.append((headers, body))
                ok = len(receiver.attempts) > fail_first
                if ok:
                    receiver.accepted.append((headers, body))
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def queue_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data = tmp_path_factory.mktemp("queue-api")
    config = data / "config.toml"
    config.write_text(
        "max_upload_bytes = 300000\n"
        "[webhooks]\nallow_private_networks = true\nfirst_backoff_s = 0.3\npoll_s = 0.2\n"
    )
    proc = ServiceProcess(
        data, ["--config", str(config), "--heartbeat-s", "0.3", "--metrics-port", str(free_port())]
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def submit(proc: ServiceProcess, data: dict[str, object], **options: object) -> pb.SubmitResponse:
    request = build_request(T2V, data)
    for name, value in options.items():
        setattr(request, name, value)
    return proc.stub.Submit(request, timeout=10)


def test_webhook_is_retried_then_delivered_once_and_verifies_with_the_jwks(
    queue_service: ServiceProcess,
) -> None:
    receiver = Receiver(fail_first=2)
    try:
        request_id = submit(queue_service, SMALL, webhook_url=receiver.url).request_id
        queue_service.wait_completed(request_id)
        deadline = time.monotonic() + 30
        while not receiver.accepted and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # anything after the delivery would be a duplicate
        assert len(receiver.attempts) == 3 and len(receiver.accepted) == 1
        headers, body = receiver.accepted[0]
        jwks_url = f"http://127.0.0.1:{queue_service.http_port}/.well-known/jwks.json"
        jwks = json.loads(urllib.request.urlopen(jwks_url, timeout=10).read())
        assert verify(jwks, headers, body)
        assert not verify(jwks, headers, body.replace(b'"OK"', b'"ERROR"'))  # tampering is caught
        sent = json.loads(body)
        result = queue_service.stub.Result(pb.ResultRequest(request_id=request_id))
        assert sent["request_id"] == sent["gateway_request_id"] == request_id and sent["status"] == "OK"
        assert sent["payload"]["video"]["url"] == result.output.text_to_video.video.url
        assert sent["payload"]["seed"] == 7 and sent["error"] is None and sent["webhook_id"]
        status = queue_service.stub.Status(pb.StatusRequest(request_id=request_id))
        assert status.webhook.state == "delivered" and status.webhook.attempts == 3
        assert status.webhook.last_error == ""
        metrics_port = queue_service.extra_args[queue_service.extra_args.index("--metrics-port") + 1]
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert 'ltx_webhook_deliveries_total{outcome="delivered"} 1.0' in text
        assert 'ltx_webhook_deliveries_total{outcome="failed"} 2.0' in text
    finally:
        receiver.stop()


def test_idempotency_key_returns_the_first_id_or_already_exists(queue_service: ServiceProcess) -> None:
    first = submit(queue_service, SMALL, idempotency_key="order-17")
    again = submit(queue_service, SMALL, idempotency_key="order-17")
    assert again.request_id == first.request_id
    with pytest.raises(grpc.RpcError) as conflict:
        submit(queue_service, {**SMALL, "seed": 8}, idempotency_key="order-17")
    assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "order-17" in (conflict.value.details() or "")
    other = submit(queue_service, SMALL, idempotency_key="order-18")
    assert other.request_id != first.request_id
    for request_id in (first.request_id, other.request_id):
        queue_service.wait_completed(request_id)


def test_priority_orders_claims_and_start_timeout_never_starts(queue_service: ServiceProcess) -> None:
    # The worker claims as many jobs as its stages have slots (one generating, the next ones preparing or
    # waiting for the accelerator), so priorities order only the jobs left waiting once those are full.
    defaults = ServiceConfig()
    in_flight = defaults.queue.workers + defaults.stages.prepare_workers + defaults.stages.finish_workers
    busy = [submit(queue_service, SLOW).request_id for _ in range(in_flight)]
    try:  # a failure here must not leave the slow jobs holding the accelerator for the next tests
        deadline = time.monotonic() + 60
        for job in busy:
            while queue_service.stub.Status(pb.StatusRequest(request_id=job)).status != pb.IN_PROGRESS:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        low = submit(queue_service, SMALL, priority=pb.LOW).request_id
        normal = submit(queue_service, SMALL).request_id
        expiring = submit(queue_service, SMALL, start_timeout_s=0.5)
        positions = {
            r: queue_service.stub.Status(pb.StatusRequest(request_id=r)).queue_position
            for r in (normal, expiring.request_id, low)
        }
        assert positions == {normal: 0, expiring.request_id: 1, low: 2}

        timed_out = queue_service.wait_completed(expiring.request_id, timeout_s=30)
        assert timed_out.error.error_type == "start_timeout" and not timed_out.HasField("started_at")
    finally:
        for job in busy:
            queue_service.stub.Cancel(pb.CancelRequest(request_id=job))
    done = {r: queue_service.wait_completed(r) for r in (low, normal)}
    assert not done[low].HasField("error") and not done[normal].HasField("error")
    assert done[normal].started_at.ToNanoseconds() < done[low].started_at.ToNanoseconds()

    with pytest.raises(grpc.RpcError) as bad:
        submit(queue_service, SMALL, start_timeout_s=-1.0)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in field_violations(bad.value)] == ["start_timeout_s"]


def test_upload_of_a_local_image_feeds_a_multiconditioning_request(
    queue_service: ServiceProcess, tmp_path: Path
) -> None:
    from PIL import Image

    Image.new("RGB", (96, 64), (200, 30, 30)).save(tmp_path / "cat.png")
    request = {
        "prompt": "a red card",
        "resolution": "480p",
        "aspect_ratio": "auto",
        "number_of_frames": 9,
        "number_of_steps": 2,
        "seed": 3,
        "images": [{"image_url": "./cat.png", "start_frame_number": 0}],
    }
    sent = upload_local_files(queue_service.stub, request, tmp_path)
    url = sent["images"][0]["image_url"]
    assert url.startswith(f"http://127.0.0.1:{queue_service.http_port}/results/upload-")
    assert download_bytes(url) == (tmp_path / "cat.png").read_bytes()
    reply = queue_service.stub.Submit(build_request("ltx-video-lora/multiconditioning", sent), timeout=10)
    status = queue_service.wait_completed(reply.request_id)
    assert not status.HasField("error"), status.error  # fetched from its own (loopback) upload URL


def test_upload_refuses_non_media_and_oversized_files(queue_service: ServiceProcess, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(grpc.RpcError) as not_media:
        upload_file(queue_service.stub, tmp_path / "notes.txt")
    assert not_media.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an image, a video or a safetensors" in field_violations(not_media.value)[0][1]
    (tmp_path / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(400_000))
    with pytest.raises(grpc.RpcError) as too_big:
        upload_file(queue_service.stub, tmp_path / "big.png")
    assert too_big.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "300000 bytes" in field_violations(too_big.value)[0][1]


def download_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()
