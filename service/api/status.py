"""gRPC error helpers: rich INVALID_ARGUMENT with google.rpc.BadRequest, and the other codes we use."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.api.validation import Violation


def bad_request_status(violations: Sequence[Violation]) -> grpc.Status:
    """INVALID_ARGUMENT whose message lists every violation and whose details carry them as BadRequest."""
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in violations
        ]
    )
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=f"invalid request: {summary}")
    status.details.add().Pack(detail)
    return rpc_status.to_status(status)


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, description) pairs from a BadRequest error, for clients and tests."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return []
    found: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [(v.field, v.description) for v in bad.field_violations]
    return found
