"""The gRPC servicer: protobuf in, validation, domain specs to the queue, protobuf out.

Thin on purpose: validation, conversion and job handling live in their own modules. This module and
service/api/status.py are the only ones that import grpc. Every RPC, unary or streaming, goes through
a guard: errors the API raises map to their status (`status_of`), anything else is a bug, answered
INTERNAL with an incident id that the log line carries too. Requests arrive as raw bytes and are parsed
here, so malformed protobuf is INVALID_ARGUMENT instead of grpc's UNKNOWN.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.api import events
from service.api.endpoints import for_input, to_spec, validate
from service.api.status import (
    BackendUnavailable,
    InvalidRequest,
    NotServed,
    RequestNotFound,
    bad_request_status,
    status_of,
)
from service.api.validation import URL_SHOWN_CHARS, Violation
from service.domain.specs import Endpoint, spec_to_json
from service.jobs.queue import CancelOutcome, JobQueue, JobView, input_hash
from service.jobs.records import Priority
from service.jobs.sql_store import NewJob
from service.jobs.uploads import UploadRejected, UploadWriter

log = logging.getLogger(__name__)

_CANCEL_STATUS = {
    CancelOutcome.CANCELLED: pb.OK,
    CancelOutcome.REQUESTED: pb.CANCELLATION_REQUESTED,
    CancelOutcome.ALREADY_COMPLETED: pb.ALREADY_COMPLETED,
    CancelOutcome.NOT_FOUND: pb.NOT_FOUND,
}
SERVICE = pb.DESCRIPTOR.services_by_name["VideoGeneration"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
G = TypeVar("G", bound=Callable[..., AsyncIterator[Any]])


# grpc-stubs 1.53 lack grpc.aio.ServicerContext.abort_with_status (grpc has it): the
# `stub gap` ignores below.
async def _abort_for(error: Exception, method: str, context: grpc.aio.ServicerContext) -> None:
    if isinstance(error, InvalidRequest):
        await context.abort_with_status(bad_request_status(error.violations))  # type: ignore[attr-defined]  # stub gap
    code = status_of(error)
    if code is grpc.StatusCode.INTERNAL:
        incident = uuid.uuid4().hex[:12]
        log.exception("bug in %s (incident %s)", method, incident, extra={"request_id": incident})
        await context.abort(code, f"internal error in {method} (incident {incident}); see the service log")
    await context.abort(code, str(error))


def unary_guard(method: F) -> F:
    """Errors become their status; deliberate aborts pass through untouched."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # noqa: BLE001 - mapped by status_of; bugs are logged there
            await _abort_for(error, method.__name__, context)

    return wrapper  # type: ignore[return-value]


def stream_guard(method: G) -> G:
    """`unary_guard` for server-streaming RPCs (async generators)."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in method(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # noqa: BLE001 - mapped by status_of; bugs are logged there
            await _abort_for(error, method.__name__, context)

    return wrapper  # type: ignore[return-value]


def _shown(text: str) -> str:
    return repr(text if len(text) <= URL_SHOWN_CHARS else text[:URL_SHOWN_CHARS] + "...")


async def _parse(raw: bytes, message_class: type[Message], context: grpc.aio.ServicerContext) -> Message:
    try:
        return message_class.FromString(raw)
    except (DecodeError, RuntimeError, ValueError):  # upb raises DecodeError; bad UTF-8 too
        name = message_class.DESCRIPTOR.full_name
        violation = Violation("request", f"is not a valid {name} protobuf message ({len(raw)} bytes)")
        await context.abort_with_status(bad_request_status([violation]))  # type: ignore[attr-defined]  # stub gap
        raise  # abort_with_status raises; this satisfies the type checker


def add_to_server(servicer: VideoGenerationServicer, server: grpc.aio.Server) -> None:
    """Register the servicer with requests deserialized here (see the module docstring)."""
    handlers = {}
    for method in SERVICE.methods:
        request_class = getattr(pb, method.input_type.name)
        serializer = getattr(pb, method.output_type.name).SerializeToString
        behavior = getattr(servicer, method.name)
        if method.client_streaming:
            factory = (
                grpc.stream_stream_rpc_method_handler
                if method.server_streaming
                else (grpc.stream_unary_rpc_method_handler)
            )
            handlers[method.name] = factory(
                _parsing_requests(behavior, request_class), response_serializer=serializer
            )
        elif method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _parsing_stream(behavior, request_class), response_serializer=serializer
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _parsing_unary(behavior, request_class), response_serializer=serializer
            )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))


def _parsing_requests(behavior: Callable[..., Any], request_class: type[Message]) -> Callable[..., Any]:
    """Client-streaming RPCs: each message of the stream is parsed as it arrives."""

    async def handle(raw_requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
        async def parsed() -> AsyncIterator[Message]:
            async for raw in raw_requests:
                yield await _parse(raw, request_class, context)

        return await behavior(parsed(), context)

    return handle


def _parsing_unary(
    behavior: Callable[..., Awaitable[Any]], request_class: type[Message]
) -> Callable[..., Any]:
    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return await behavior(await _parse(raw, request_class, context), context)

    return handle


def _parsing_stream(
    behavior: Callable[..., AsyncIterator[Any]], request_class: type[Message]
) -> Callable[..., Any]:
    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        request = await _parse(raw, request_class, context)
        async for item in behavior(request, context):
            yield item

    return handle


class VideoGenerationServicer(pb_grpc.VideoGenerationServicer):
    def __init__(
        self,
        queue: JobQueue,
        supports: Callable[[Endpoint], bool],
        unavailable: Callable[[], str | None],
        rng: random.Random | None = None,
        upload: Callable[[str], UploadWriter] | None = None,
        *,
        max_media_bytes: int | None = None,
        supports_loras: bool = True,
        precondition: Callable[[Any], str | None] | None = None,  # why a spec cannot run here, or None
    ) -> None:
        self._queue = queue
        self._upload = upload
        self._supports = supports
        self._precondition = precondition or (lambda spec: None)
        self._unavailable = unavailable  # why the service cannot take jobs (cheap: no probe per request)
        self._rng = rng or random.SystemRandom()
        self._max_media_bytes = max_media_bytes
        self._supports_loras = supports_loras

    @unary_guard
    async def Submit(self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext) -> pb.SubmitResponse:
        job_id, position, endpoint = await self._submit(request)
        return pb.SubmitResponse(request_id=job_id, endpoint_id=endpoint.value, queue_position=position)

    @unary_guard
    async def Status(self, request: pb.StatusRequest, context: grpc.aio.ServicerContext) -> pb.StatusResponse:
        view = await self._view(request.request_id)
        logs = await asyncio.to_thread(self._queue.logs, request.request_id) if request.logs else []
        return events.status_response(view, logs)

    @unary_guard
    async def Result(self, request: pb.ResultRequest, context: grpc.aio.ServicerContext) -> pb.ResultResponse:
        view = await self._view(request.request_id)
        if not view.record.state.finished:
            state = events.status_response(view, []).status
            raise NotServed(
                f"request {request.request_id} is {pb.JobStatus.Name(state)}; its result is not ready"
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

    @stream_guard
    async def Watch(
        self, request: pb.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.JobEvent]:
        await self._view(request.request_id)
        # A client that goes away only ends this stream: the job keeps running.
        async for event in self._events(request.request_id):
            yield event

    @stream_guard
    async def Generate(
        self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.JobEvent]:
        job_id, _, _ = await self._submit(request)
        finished = False
        try:
            async for event in self._events(job_id):
                finished = event.status == pb.COMPLETED
                yield event
        finally:
            if not finished:  # the caller cancelled or disconnected: Generate owns its job
                outcome = await self._queue.cancel(job_id)
                log.info("Generate call ended early; job cancel %s", outcome, extra={"request_id": job_id})

    @unary_guard
    async def Upload(
        self, request_iterator: AsyncIterator[pb.UploadRequest], context: grpc.aio.ServicerContext
    ) -> pb.UploadResponse:
        if self._upload is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "uploads are not enabled on this server")
        assert self._upload is not None
        writer: UploadWriter | None = None
        try:
            async for message in request_iterator:
                if writer is None:
                    writer = await asyncio.to_thread(self._upload, message.file_name)
                await asyncio.to_thread(writer.write, message.chunk)
            if writer is None:
                raise UploadRejected("chunk", "the upload sent no data")
            url, content_type = await asyncio.to_thread(writer.finish)
        except UploadRejected as rejected:
            await context.abort_with_status(  # type: ignore[attr-defined]  # stub gap
                bad_request_status([Violation(rejected.field, rejected.message)])
            )
        except BaseException:
            if writer is not None:
                await asyncio.to_thread(writer.abort)
            raise
        assert writer is not None
        log.info("stored upload %s (%s, %d bytes)", url.split("?")[0], content_type, writer.size)
        return pb.UploadResponse(url=url, content_type=content_type, file_size=writer.size)

    # ---- helpers ----

    async def _submit(self, request: pb.SubmitRequest) -> tuple[str, int, Endpoint]:
        which = request.input.WhichOneof("input")
        if which is None:
            raise InvalidRequest(
                [Violation("input", "must set exactly one endpoint's input (e.g. text_to_video)")]
            )
        message = getattr(request.input, which)
        violations = validate(message, max_media_bytes=self._max_media_bytes)
        if violations:
            raise InvalidRequest(violations)
        endpoint = for_input(message).endpoint
        if not self._supports(endpoint):
            raise NotServed(f"endpoint {endpoint.value} is not served by this deployment")
        if not self._supports_loras and any(lora.path for lora in getattr(message, "loras", ())):
            raise NotServed("LoRAs are not supported by this deployment's engine (Triton); send no loras")
        reason = self._unavailable()
        if reason is not None:
            raise BackendUnavailable(f"the service cannot take jobs right now ({reason}); retry later")
        queue_violations = validate_queue_options(request)
        if queue_violations:
            raise InvalidRequest(queue_violations)
        spec = to_spec(message, rng=self._rng)
        failure = self._precondition(spec)
        if failure:
            raise NotServed(failure)
        job_id, position = await self._queue.submit(endpoint.value, spec_to_json(spec), new_job(request))
        return job_id, position, endpoint

    async def _view(self, request_id: str) -> JobView:
        view = await asyncio.to_thread(self._queue.view, request_id)
        if view is None:
            raise RequestNotFound(f"no request with id {_shown(request_id)}")
        return view

    async def _events(self, job_id: str) -> AsyncIterator[pb.JobEvent]:
        """One event per change of the job, and one per progress report even when several arrive
        between two looks at the job (a client counting steps sees every step)."""
        cursor = events.EventCursor(job_id)
        async for view in self._queue.follow(job_id):
            run = view.record.runs
            new_logs = await asyncio.to_thread(self._queue.logs, job_id, cursor.sent_logs)
            reports = await asyncio.to_thread(
                self._queue.progress_since, job_id, cursor.reports_to_skip(run), run
            )
            for event in cursor.events(view, new_logs, reports):
                yield event


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
        found.append(
            Violation("webhook_url", f"must be an http(s) URL of at most {MAX_WEBHOOK_URL} characters")
        )
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
