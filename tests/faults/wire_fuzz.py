"""A seeded structure-and-bytes mutator over the five spec examples, sent as raw bytes to a real
server, and the tally of what came back.

Structure: a few fields of a spec's Full Example get values from pools of good, bad and odd values
(tests/unit/test_validation_fuzz.py's pools), then the request is serialized. Bytes: the serialized
request is then flipped, truncated, extended, spliced or replaced by garbage, and sent to any of the
six RPCs, so the server also sees messages that are not valid protobuf at all.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import descriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ltx.v1 import video_generation_pb2 as pb
from service.api.endpoints import API_ENDPOINTS, input_from_json
from tests.unit.test_validation_fuzz import _mutations

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "spec_examples"
METHODS = ("Submit", "Status", "Watch", "Result", "Cancel", "Generate")
STREAMING = {"Watch", "Generate"}
_ONEOF_FIELD = {
    f.message_type.full_name: f.name
    for f in pb.GenerationInput.DESCRIPTOR.oneofs_by_name["input"].fields
    if f.message_type is not None  # every field of the oneof is a message; this narrows the type
}


def _examples() -> list[tuple[str, dict]]:
    found = []
    for endpoint in (entry.endpoint for entry in API_ENDPOINTS):
        path = EXAMPLES / f"{endpoint.value.replace('/', '-')}.json"
        found.append((endpoint.value, json.loads(path.read_text())))
    return found


HOSTILE_STRINGS = [
    "x" * 3000,
    "http://[::1",
    "http://[abc]/x",
    "http://h:99999/",
    "http://h:-1/",
    "data:",
    "data:image/png;base64," + "A" * 5000,
    "\u202e" * 500,
    "../" * 200,
    "/etc/passwd",
]


def _hostile(message: Message, rng: random.Random, depth: int = 0) -> None:
    """Oversized and unparsable values, and long repeated fields (the error details must stay small)."""
    for fd in message.DESCRIPTOR.fields:
        if fd.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            children = getattr(message, fd.name)
            if fd.is_repeated and rng.random() < 0.2:
                for _ in range(rng.choice([50, 300, 1000])):
                    children.add()
            elif not fd.is_repeated and depth < 2 and rng.random() < 0.3:
                _hostile(children, rng, depth + 1)
        elif fd.type == descriptor.FieldDescriptor.TYPE_STRING and not fd.is_repeated and rng.random() < 0.2:
            setattr(message, fd.name, rng.choice(HOSTILE_STRINGS))


def _structured(rng: random.Random, examples: list[tuple[str, dict]]) -> bytes:
    endpoint, data = rng.choice(examples)
    message = input_from_json(endpoint, data)
    _mutations(message, rng)
    if rng.random() < 0.3:
        _hostile(message, rng)
    request = pb.SubmitRequest()
    getattr(request.input, _ONEOF_FIELD[message.DESCRIPTOR.full_name]).CopyFrom(message)
    return request.SerializeToString()


def _mangled(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    kind = rng.randrange(6)
    if kind == 0 and data:  # flip bytes
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:  # truncate
        del data[rng.randrange(len(data) + 1) :]
    elif kind == 2:  # append garbage
        data += rng.randbytes(rng.randint(1, 64))
    elif kind == 3 and data:  # splice a chunk elsewhere
        start = rng.randrange(len(data))
        chunk = data[start : start + rng.randint(1, 32)]
        at = rng.randrange(len(data) + 1)
        data[at:at] = chunk
    elif kind == 4:  # pure garbage
        data = bytearray(rng.randbytes(rng.randint(0, 256)))
    else:  # a huge length prefix on a field
        data = bytearray(b"\x0a\xff\xff\xff\xff\x0f") + data
    return bytes(data)


@dataclass
class Tally:
    by_status: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def record(self, method: str, error: grpc.RpcError | None) -> None:
        if error is None:
            self.by_status["OK"] += 1
            return
        code = error.code()
        self.by_status[code.name] += 1
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.RESOURCE_EXHAUSTED):
            self.problems.append(f"{method}: {code.name}: {error.details()}")
        elif code is grpc.StatusCode.INVALID_ARGUMENT and not _has_bad_request(error):
            self.problems.append(f"{method}: INVALID_ARGUMENT without BadRequest: {error.details()}")


def _has_bad_request(error: grpc.RpcError) -> bool:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    return status is not None and any(d.Is(error_details_pb2.BadRequest.DESCRIPTOR) for d in status.details)


def _call(channel: grpc.Channel, method: str, raw: bytes) -> grpc.RpcError | None:
    path = f"/ltx.v1.VideoGeneration/{method}"  # called with no (de)serializers: raw bytes both ways
    try:
        if method in STREAMING:  # a valid request streams on: a short deadline ends it
            for _ in channel.unary_stream(path, None, None)(raw, timeout=0.3):
                pass
        else:
            channel.unary_unary(path, None, None)(raw, timeout=10)
    except grpc.RpcError as error:
        if method in STREAMING and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
            return None  # accepted and streaming
        return error
    return None


def run_fuzz(target: str, cases: int, seed: int = 8) -> Tally:
    rng = random.Random(seed)
    examples = _examples()
    tally = Tally()
    with grpc.insecure_channel(target) as channel:
        for _ in range(cases):
            raw = _structured(rng, examples)
            method = "Submit"
            if rng.random() < 0.4:
                raw = _mangled(raw, rng)
                method = rng.choice(METHODS)
            tally.record(method, _call(channel, method, raw))
    return tally
