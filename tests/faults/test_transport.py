"""Transport settings against a real server: a client that pings every second is not sent away
(`too_many_pings`), and result URLs never name a wildcard bind address."""

from __future__ import annotations

import socket
import time

import grpc

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.client.cli import build_request
from service.storage.local import reachable_base_url
from tests.faults.test_api_edges import _example


def test_a_client_pinging_every_second_keeps_its_stream(server_target: str) -> None:
    options = [
        ("grpc.keepalive_time_ms", 1000),
        ("grpc.keepalive_timeout_ms", 2000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    with grpc.insecure_channel(server_target, options=options) as channel:
        stub = pb_grpc.VideoGenerationStub(channel)
        job_id = stub.Submit(
            build_request("ltx-video-lora", _example("ltx-video-lora")), timeout=30
        ).request_id
        started = time.monotonic()
        stream = stub.Watch(pb.WatchRequest(request_id=job_id), timeout=6)
        try:
            for _ in stream:  # the job stays queued (no workers): the stream idles while pings go by
                pass
        except grpc.RpcError as error:
            assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED, error.details()
        assert time.monotonic() - started > 5  # held to the deadline, not dropped for pinging


def test_result_urls_never_name_a_wildcard_address() -> None:
    assert reachable_base_url("0.0.0.0", 8080) == f"http://{socket.gethostname()}:8080"
    assert reachable_base_url("::", 8080) == f"http://{socket.gethostname()}:8080"
    assert reachable_base_url("::1", 8080) == "http://[::1]:8080"
    assert reachable_base_url("127.0.0.1", 81) == "http://127.0.0.1:81"
