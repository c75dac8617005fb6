"""gRPC error helpers: rich INVALID_ARGUMENT with google.rpc.BadRequest, and the other codes we use."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.api.validation import Violation, bounded
from service.jobs.queue import Draining, IdempotencyConflict, QueueFull, StoreUnavailable

# Both the message and the details travel in trailers, which clients drop past 8-16 KiB: with at most
# MAX_VIOLATIONS violations (validation.bounded) and these caps, the two stay under about 7 KiB.
MAX_FIELD_CHARS = 100
MAX_DESCRIPTION_CHARS = 200
SUMMARY_VIOLATIONS = 3  # the message names the first few; the details carry them all


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bad_request_status(violations: Sequence[Violation]) -> grpc.Status:
    """INVALID_ARGUMENT whose message names the first violations and whose details carry all of them
    (bounded) as BadRequest."""
    violations = bounded(list(violations))
    clipped = [
        (_clip(v.field, MAX_FIELD_CHARS), _clip(v.description, MAX_DESCRIPTION_CHARS)) for v in violations
    ]
    summary = "; ".join(f"{field}: {description}" for field, description in clipped[:SUMMARY_VIOLATIONS])
    if len(clipped) > SUMMARY_VIOLATIONS:
        summary += f" (and {len(clipped) - SUMMARY_VIOLATIONS} more in the details)"
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in clipped
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


class ApiError(Exception):
    """An RPC refused for a reason the client can act on; `status_of` gives its gRPC code."""


class RequestNotFound(ApiError):
    pass


class NotServed(ApiError):
    """The feature or model is not configured in this deployment."""


class BackendUnavailable(ApiError):
    """The inference backend (Triton) or the job store cannot take work right now."""


class InvalidRequest(ApiError):
    """Violations found at the edge; answered as INVALID_ARGUMENT with BadRequest details."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        super().__init__("invalid request")
        self.violations = list(violations)


def _status_table() -> dict[type[BaseException], grpc.StatusCode]:
    return {
        InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
        RequestNotFound: grpc.StatusCode.NOT_FOUND,
        QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
        IdempotencyConflict: grpc.StatusCode.ALREADY_EXISTS,
        NotServed: grpc.StatusCode.FAILED_PRECONDITION,
        BackendUnavailable: grpc.StatusCode.UNAVAILABLE,
        StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
        Draining: grpc.StatusCode.UNAVAILABLE,
    }


STATUS_OF_ERROR = _status_table()  # others (auth, idempotency) register their errors here


def status_of(error: BaseException) -> grpc.StatusCode:
    """The one mapping from an error the API raises to its gRPC code; anything else is a bug: INTERNAL."""
    for error_class in type(error).__mro__:
        code = STATUS_OF_ERROR.get(error_class)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL
