"""Every row of ARCHITECTURE.md's error table ("Errors"), walked: each gRPC status has an error the API
raises for it and `status_of` maps it there; each job error_type exists; anything else is INTERNAL.

The rows are copied from ARCHITECTURE.md (the document lives outside the repository); a row added there
must be added here too."""

from __future__ import annotations

import grpc
import pytest

from service.api.status import (
    STATUS_OF_ERROR,
    BackendUnavailable,
    InvalidRequest,
    NotServed,
    RequestNotFound,
    status_of,
)
from service.domain.errors import ErrorType
from service.jobs.queue import Draining, IdempotencyConflict, QueueFull, StoreUnavailable

# (situation, gRPC status names or None, job error_type or None)
TABLE = [
    ("a field out of range, a bad enum, a missing required field", ["INVALID_ARGUMENT"], None),
    ("unknown request id", ["NOT_FOUND"], None),
    ("queue full", ["RESOURCE_EXHAUSTED"], None),
    ("feature or model not configured", ["FAILED_PRECONDITION"], None),
    ("backend (Triton) down", ["UNAVAILABLE"], "runner_unavailable"),
    ("input URL unreachable, too large, not media", None, "input_fetch_failed"),
    ("safety checker flags output", None, "content_policy_violation"),
    ("cancelled", None, "cancelled"),
    (
        "missing or bad API key / key not allowed this endpoint",
        ["UNAUTHENTICATED", "PERMISSION_DENIED"],
        None,
    ),
    ("idempotency key reused with a different input", ["ALREADY_EXISTS"], None),
    ("waited in the queue past its start timeout", None, "start_timeout"),
    ("interrupted more often than the retry cap", None, "retries_exhausted"),
    ("draining (SIGTERM)", ["UNAVAILABLE"], None),
    ("a bug", ["INTERNAL"], "internal_error"),
]
# Rows whose errors another part of the service raises: they register them in STATUS_OF_ERROR.
OWNED_ELSEWHERE = {"UNAUTHENTICATED": "auth (issue 12)", "PERMISSION_DENIED": "auth (issue 12)"}

EXAMPLES: dict[type[BaseException], BaseException] = {
    InvalidRequest: InvalidRequest([]),
    RequestNotFound: RequestNotFound("no request with id 'x'"),
    QueueFull: QueueFull(3),
    NotServed: NotServed("endpoint x is not served"),
    BackendUnavailable: BackendUnavailable("down"),
    StoreUnavailable: StoreUnavailable("full disk"),
    Draining: Draining("shutting down"),
    IdempotencyConflict: IdempotencyConflict("key"),
}


@pytest.mark.parametrize(("situation", "codes", "error_type"), TABLE, ids=[row[0][:40] for row in TABLE])
def test_every_row_of_the_error_table(
    situation: str, codes: list[str] | None, error_type: str | None
) -> None:
    for name in codes or []:
        code = grpc.StatusCode[name]
        if code is grpc.StatusCode.INTERNAL:
            assert status_of(RuntimeError("a bug")) is code and status_of(KeyError("k")) is code
            continue
        raised = [cls for cls, mapped in STATUS_OF_ERROR.items() if mapped is code]
        if not raised and name in OWNED_ELSEWHERE:
            pytest.skip(f"{name}: raised by {OWNED_ELSEWHERE[name]}, which has not registered its errors yet")
        assert raised, f"{situation}: no error maps to {name}"
        for cls in raised:
            example = EXAMPLES.get(cls)
            if example is not None:
                assert status_of(example) is code
    if error_type is not None:
        assert ErrorType(error_type).value == error_type


def test_every_error_the_api_raises_is_in_the_table() -> None:
    listed = {name for _, codes, _ in TABLE for name in codes or []}
    assert {code.name for code in STATUS_OF_ERROR.values()} <= listed
    assert {e.value for e in ErrorType} <= {row[2] for row in TABLE if row[2]} | {"lora_load_failed"}


def test_subclasses_map_like_their_base() -> None:
    class SpecificUnavailable(BackendUnavailable):
        pass

    assert status_of(SpecificUnavailable("x")) is grpc.StatusCode.UNAVAILABLE
