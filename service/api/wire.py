"""Just enough of the protobuf wire format to read which endpoint a raw SubmitRequest names.

The servicer parses requests itself (raw bytes reach the interceptors), and a Submit can carry data URIs
of hundreds of MiB: the auth check walks the field tags over a memoryview instead of parsing (and
copying) the whole message a second time.
"""

from __future__ import annotations

from ltx.v1 import video_generation_pb2 as pb
from service.api.endpoints import API_ENDPOINTS
from service.domain.specs import Endpoint

_INPUT_FIELD = pb.SubmitRequest.DESCRIPTOR.fields_by_name["input"].number
_ENDPOINT_OF_MEMBER = {
    field.number: entry.endpoint
    for field in pb.GenerationInput.DESCRIPTOR.oneofs_by_name["input"].fields
    for entry in API_ENDPOINTS
    if field.name == entry.oneof_field
}
_LENGTH_DELIMITED = 2


class WireError(ValueError):
    """Not a well-formed message (the servicer answers INVALID_ARGUMENT for it)."""


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise WireError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(data: memoryview) -> list[tuple[int, memoryview | None]]:
    """(field number, payload for length-delimited fields) of each top-level field, in order."""
    out: list[tuple[int, memoryview | None]] = []
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, at = _varint(data, at)
            out.append((number, None))
        elif wire_type == _LENGTH_DELIMITED:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise WireError("truncated field")
            out.append((number, data[at : at + size]))
            at += size
        elif wire_type in (1, 5):
            at += 8 if wire_type == 1 else 4
            out.append((number, None))
        else:
            raise WireError(f"unsupported wire type {wire_type}")
    if at != len(data):
        raise WireError("truncated fixed-width field")
    return out


def submit_endpoint(raw: bytes) -> Endpoint | None:
    """The endpoint a serialized SubmitRequest selects (the last `input` oneof member set wins, as in
    protobuf), or None when it sets none. Raises WireError on malformed bytes."""
    view = memoryview(raw)
    chosen: int | None = None
    for number, payload in _fields(view):
        if number == _INPUT_FIELD and payload is not None:
            for member, _ in _fields(payload):
                if member in _ENDPOINT_OF_MEMBER:
                    chosen = member
    return None if chosen is None else _ENDPOINT_OF_MEMBER[chosen]
