"""Per-RPC metrics (started, handled by status code, latency) and the request id for log lines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ltx.v1 import video_generation_pb2 as pb
from service.api.interceptors import Stream, Unary, rewrap, split_method
from service.logs import request_id_var
from service.observability import metrics


def _code_name(context_: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    """The status the call ended with: the code set by an abort, OK, or CANCELLED when the client left."""
    code = context_.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None:
        return grpc.StatusCode.OK.name
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED.name
    return grpc.StatusCode.UNKNOWN.name


# Calls naming a job by id: small messages, parsed again here (the servicer parses requests itself) so
# that every log line of the call carries the job's id.
_BY_ID = {
    f"/{pb.DESCRIPTOR.services_by_name['VideoGeneration'].full_name}/{name}": getattr(pb, f"{name}Request")
    for name in ("Status", "Watch", "Result", "Cancel")
}


def _request_id(method: str, request: Any, metadata: dict[str, str]) -> str | None:
    found = getattr(request, "request_id", None)
    if found is None and isinstance(request, bytes) and method in _BY_ID:
        try:
            found = _BY_ID[method].FromString(request).request_id
        except DecodeError:
            found = None
    return found or metadata.get("x-request-id")


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        labels = split_method(details.method)
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        metadata[":method"] = details.method
        return rewrap(
            handler,
            lambda inner: self._unary(inner, labels, metadata),
            lambda inner: self._stream(inner, labels, metadata),
        )

    @staticmethod
    def _begin(labels: tuple[str, str], request: Any, metadata: dict[str, str]) -> float:
        metrics.RPC_STARTED.labels(*labels).inc()
        request_id_var.set(_request_id(metadata[":method"], request, metadata))
        return time.perf_counter()

    @staticmethod
    def _end(labels: tuple[str, str], started: float, code: str) -> None:
        metrics.RPC_SECONDS.labels(*labels).observe(time.perf_counter() - started)
        metrics.RPC_HANDLED.labels(*labels, code).inc()

    def _unary(self, inner: Unary, labels: tuple[str, str], metadata: dict[str, str]) -> Unary:
        async def behavior(request: Any, context_: grpc.aio.ServicerContext) -> Any:
            started = self._begin(labels, request, metadata)
            error: BaseException | None = None
            try:
                return await inner(request, context_)
            except BaseException as caught:
                error = caught
                raise
            finally:
                self._end(labels, started, _code_name(context_, error))

        return behavior

    def _stream(self, inner: Stream, labels: tuple[str, str], metadata: dict[str, str]) -> Stream:
        async def behavior(request: Any, context_: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = self._begin(labels, request, metadata)
            error: BaseException | None = None
            try:
                async for response in inner(request, context_):
                    yield response
            except BaseException as caught:
                error = caught
                raise
            finally:
                self._end(labels, started, _code_name(context_, error))

        return behavior
