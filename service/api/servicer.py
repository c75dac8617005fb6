"""The gRPC servicer: protobuf in, validation, domain specs to the queue, protobuf out.

Thin on purpose: validation, conversion and job handling live in their own modules. This module and
service/api/status.py are the only ones that import grpc.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.api import events
from service.api.endpoints import for_input, to_spec, validate
from service.api.status import bad_request_status
from service.api.validation import Violation
from service.domain.specs import Endpoint, spec_to_json
from service.jobs.queue import CancelOutcome, IdempotencyConflict, JobQueue, JobView, QueueFull, input_hash
from service.jobs.records import Priority
from service.jobs.sql_store import NewJob

log = logging.getLogger(__name__)

_CANCEL_STATUS = {
    CancelOutcome.CANCELLED: pb.OK,
    CancelOutcome.REQUESTED: pb.CANCELLATION_REQUESTED,
    CancelOutcome.ALREADY_COMPLETED: pb.ALREADY_COMPLETED,
    CancelOutcome.NOT_FOUND: pb.NOT_FOUND,
}

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def unary_guard(method: F) -> F:
    """Bugs become INTERNAL with a logged id; deliberate aborts pass through untouched."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unhandled error in %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method.__name__}; see the service log")

    return wrapper  # type: ignore[return-value]


class VideoGenerationServicer(pb_grpc.VideoGenerationServicer):
    def __init__(
        self,
        queue: JobQueue,
        supports: Callable[[Endpoint], bool],
        ready: Callable[[], bool],
        rng: random.Random | None = None,
    ) -> None:
        self._queue = queue
        self._supports = supports
        self._ready = ready  # the backend's last known readiness (cheap: no probe per request)
        self._rng = rng or random.SystemRandom()

    @unary_guard
    async def Submit(self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext) -> pb.SubmitResponse:
        job_id, position, endpoint = await self._submit(request, context)
        return pb.SubmitResponse(request_id=job_id, endpoint_id=endpoint.value, queue_position=position)

    @unary_guard
    async def Status(self, request: pb.StatusRequest, context: grpc.aio.ServicerContext) -> pb.StatusResponse:
        view = await self._view(request.request_id, context)
        logs = self._queue.logs(request.request_id) if request.logs else []
        return events.status_response(view, logs)

    @unary_guard
    async def Result(self, request: pb.ResultRequest, context: grpc.aio.ServicerContext) -> pb.ResultResponse:
        view = await self._view(request.request_id, context)
        if not view.record.state.finished:
            state = events.status_response(view, []).status
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"request {request.request_id} is {pb.JobStatus.Name(state)}; its result is not ready",
            )
        return pb.ResultResponse(
            request_id=request.request_id,
            output=events.generation_output(view.record),
            error=events.job_error(view.record),
        )

    @unary_guard
    async def Cancel(self, request: pb.CancelRequest, context: grpc.aio.ServicerContext) -> pb.CancelResponse:
        outcome = await self._queue.cancel(request.request_id)
        return pb.CancelResponse(status=_CANCEL_STATUS[outcome])

    async def Watch(self, request: pb.WatchRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.JobEvent]:
        await self._view(request.request_id, context)
        # A client that goes away only ends this stream: the job keeps running.
        async for event in self._events(request.request_id):
            yield event

    async def Generate(self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.JobEvent]:
        job_id, _, _ = await self._submit(request, context)
        finished = False
        try:
            async for event in self._events(job_id):
                finished = event.status == pb.COMPLETED
                yield event
        finally:
            if not finished:  # the caller cancelled or disconnected: Generate owns its job
                outcome = await self._queue.cancel(job_id)
                log.info("Generate call ended early; job cancel %s", outcome, extra={"request_id": job_id})

    # ---- helpers ----

    async def _submit(
        self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> tuple[str, int, Endpoint]:
        which = request.input.WhichOneof("input")
        if which is None:
            violation = Violation("input", "must set exactly one endpoint's input (e.g. text_to_video)")
            await context.abort_with_status(bad_request_status([violation]))
        message = getattr(request.input, which)
        violations = validate(message)
        if violations:
            await context.abort_with_status(bad_request_status(violations))
        endpoint = for_input(message).endpoint
        if not self._supports(endpoint):
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"endpoint {endpoint.value} is not served by this deployment"
            )
        if not self._ready():
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the inference backend is not reachable right now; retry later"
            )
        queue_violations = validate_queue_options(request)
        if queue_violations:
            await context.abort_with_status(bad_request_status(queue_violations))
        spec = to_spec(message, rng=self._rng)
        try:
            job_id, position = await self._queue.submit(endpoint.value, spec_to_json(spec), new_job(request))
        except QueueFull as full:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(full))
        except IdempotencyConflict as conflict:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(conflict))
        return job_id, position, endpoint

    async def _view(self, request_id: str, context: grpc.aio.ServicerContext) -> JobView:
        view = self._queue.view(request_id)
        if view is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no request with id {request_id!r}")
        assert view is not None
        return view

    async def _events(self, job_id: str) -> AsyncIterator[pb.JobEvent]:
        """One event per change of the job, and one per progress report even when several arrive
        between two looks at the job (a client counting steps sees every step)."""
        sent_logs = sent_reports = 0
        async for view in self._queue.follow(job_id):
            new_logs = self._queue.logs(job_id, skip=sent_logs)
            sent_logs += len(new_logs)
            reports = self._queue.progress_since(job_id, skip=sent_reports)
            sent_reports += len(reports)
            for report in reports[:-1]:
                yield events.step_event(job_id, report)
            yield events.job_event(view, new_logs, reports[-1] if reports else view.progress)


MAX_START_TIMEOUT_S = 86400.0
MAX_IDEMPOTENCY_KEY = 256
MAX_WEBHOOK_URL = 2048


def validate_queue_options(request: pb.SubmitRequest) -> list[Violation]:
    """The queue options of Submit (the message's own fields are checked by `validate`)."""
    found: list[Violation] = []
    if not 0 <= request.start_timeout_s <= MAX_START_TIMEOUT_S:
        found.append(Violation("start_timeout_s", f"must be between 0 and {MAX_START_TIMEOUT_S:g} seconds"))
    if len(request.idempotency_key) > MAX_IDEMPOTENCY_KEY:
        found.append(Violation("idempotency_key", f"must be at most {MAX_IDEMPOTENCY_KEY} characters"))
    url = request.webhook_url
    if url and (len(url) > MAX_WEBHOOK_URL or not url.startswith(("http://", "https://"))):
        found.append(Violation("webhook_url", f"must be an http(s) URL of at most {MAX_WEBHOOK_URL} characters"))
    return found


def new_job(request: pb.SubmitRequest) -> NewJob:
    timeout = request.start_timeout_s
    return NewJob(
        priority=Priority.LOW if request.priority == pb.LOW else Priority.NORMAL,
        start_deadline=time.time() + timeout if timeout > 0 else None,
        idempotency_key=request.idempotency_key or None,
        input_hash=input_hash(request.input.SerializeToString(deterministic=True)),
        webhook_url=request.webhook_url or None,
    )
