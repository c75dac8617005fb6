"""Hostile requests against a real gRPC server on 127.0.0.1, each reproducing an item of issue 8:
malformed bytes, unparsable URLs, oversized error details, data URIs at and over the media limit."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import grpc
import pytest

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.api.status import field_violations
from service.client.cli import build_request

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "spec_examples"
MULTI = "ltx-video-lora-multiconditioning"
# The Python client drops trailers past 8-16 KiB; the details must stay well under the smaller bound.
TRAILER_BUDGET = 8 * 1024


def _example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def channel(server_target: str):
    with grpc.insecure_channel(
        server_target, options=[("grpc.max_send_message_length", 64 * 1024**2)]
    ) as channel:
        yield channel


def _submit_error(channel: grpc.Channel, endpoint: str, data: dict) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        pb_grpc.VideoGenerationStub(channel).Submit(build_request(endpoint, data), timeout=30)
    return failure.value


def _trailer_bytes(error: grpc.RpcError) -> int:
    metadata = error.trailing_metadata() or ()  # (key, value) namedtuples
    return sum(len(m.key) + len(m.value) for m in metadata) + len(error.details() or "")


@pytest.mark.parametrize("method", ["Submit", "Status", "Watch", "Result", "Cancel", "Generate"])
def test_malformed_protobuf_is_invalid_argument_on_every_rpc(channel: grpc.Channel, method: str) -> None:
    garbage = b"\x0a\xff\xff\xff\xff\x0f\x01"  # a length prefix far past the end
    path = f"/ltx.v1.VideoGeneration/{method}"  # called with no (de)serializers: raw bytes both ways
    with pytest.raises(grpc.RpcError) as failure:
        if method in ("Watch", "Generate"):
            list(channel.unary_stream(path, None, None)(garbage, timeout=10))
        else:
            channel.unary_unary(path, None, None)(garbage, timeout=10)
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(failure.value)] == ["request"]
    assert "Error" not in (failure.value.details() or "")  # no exception class names


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://[abc]/x", "http://h:99999/a.png", "http://h:-1/a.png"]
)
@pytest.mark.parametrize("rpc", ["Submit", "Generate"])
def test_unparsable_urls_are_invalid_argument(channel: grpc.Channel, url: str, rpc: str) -> None:
    data = _example(MULTI)
    data["images"][0]["image_url"] = url
    stub = pb_grpc.VideoGenerationStub(channel)
    with pytest.raises(grpc.RpcError) as failure:
        if rpc == "Submit":
            stub.Submit(build_request("ltx-video-lora/multiconditioning", data), timeout=10)
        else:
            list(stub.Generate(build_request("ltx-video-lora/multiconditioning", data), timeout=10))
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "images[0].image_url" in dict(field_violations(failure.value))


def _hostile_cases() -> list[tuple[str, str, dict]]:
    long_resolution = dict(_example("ltx-video-lora"), resolution="x" * 3000)
    many_images = _example(MULTI)
    many_images["images"] = [
        {"image_url": f"ftp://bad/{i}" + "y" * 200, "start_frame_number": 0} for i in range(50)
    ]
    many_loras = dict(_example("ltx-video-lora"), loras=[{"path": ""} for _ in range(1000)])
    return [
        ("3000-character resolution", "ltx-video-lora", long_resolution),
        ("50 bad image URLs", "ltx-video-lora/multiconditioning", many_images),
        ("1000 empty LoRA paths", "ltx-video-lora", many_loras),
    ]


@pytest.mark.parametrize(
    ("case", "endpoint", "data"), _hostile_cases(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_large_error_details_still_reach_the_client(
    channel: grpc.Channel, case: str, endpoint: str, data: dict
) -> None:
    error = _submit_error(channel, endpoint, data)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, case
    assert field_violations(error), "the BadRequest details were lost"
    assert _trailer_bytes(error) < TRAILER_BUDGET


def test_a_100_kb_request_id_is_not_found_with_a_short_message(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        pb_grpc.VideoGenerationStub(channel).Status(pb.StatusRequest(request_id="r" * 100_000), timeout=10)
    assert failure.value.code() is grpc.StatusCode.NOT_FOUND
    assert len(failure.value.details() or "") < 200


def _with_data_uri(size: int) -> dict:
    data = _example(MULTI)
    payload = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * (size - 8)).decode()
    data["images"] = [{"image_url": f"data:image/png;base64,{payload}", "start_frame_number": 0}]
    return data


def test_a_20_mb_data_uri_within_the_media_limit_is_accepted(channel: grpc.Channel) -> None:
    reply = pb_grpc.VideoGenerationStub(channel).Submit(
        build_request("ltx-video-lora/multiconditioning", _with_data_uri(20 * 1024**2)), timeout=60
    )
    assert reply.request_id


def test_a_data_uri_over_the_media_limit_is_invalid_argument_naming_the_field(channel: grpc.Channel) -> None:
    error = _submit_error(channel, "ltx-video-lora/multiconditioning", _with_data_uri(30 * 1024**2))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = dict(field_violations(error))
    assert "images[0].image_url" in violations
    assert str(24 * 1024**2) in violations["images[0].image_url"]  # the bound (media.max_bytes)


@pytest.mark.parametrize("rpc", ["Watch", "Generate"])
def test_a_bug_inside_a_stream_is_internal_with_an_incident_id(
    channel: grpc.Channel,
    running_server,
    monkeypatch: pytest.MonkeyPatch,
    rpc: str,
) -> None:
    stub = pb_grpc.VideoGenerationStub(channel)
    request = build_request("ltx-video-lora", _example("ltx-video-lora"))
    job_id = stub.Submit(request, timeout=30).request_id

    async def broken_follow(job_id: str):
        raise RuntimeError("a bug in the queue")
        yield  # an async generator, like the real one

    monkeypatch.setattr(running_server.queue, "follow", broken_follow)
    with pytest.raises(grpc.RpcError) as failure:
        if rpc == "Watch":
            list(stub.Watch(pb.WatchRequest(request_id=job_id), timeout=10))
        else:
            list(stub.Generate(request, timeout=10))
    assert failure.value.code() is grpc.StatusCode.INTERNAL
    assert "incident" in (failure.value.details() or "")
    assert "RuntimeError" not in (failure.value.details() or "") and "a bug in" not in (
        failure.value.details() or ""
    )
