"""API-key authentication and per-endpoint permission, as a grpc.aio server interceptor.

Clients send `authorization: Bearer <key>`. Health and reflection are exempt (Kubernetes probes them
without a key). No key or an unknown key: UNAUTHENTICATED. A Submit/Generate for an endpoint the key is
not allowed: PERMISSION_DENIED. The key's name (never the key) is put on log lines and metrics.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from ltx.v1 import video_generation_pb2 as pb
from service.api.endpoints import for_input
from service.api.interceptors import Stream, Unary, rewrap
from service.api.wire import WireError, submit_endpoint
from service.logs import api_key_name_var
from service.observability import metrics
from service.security.api_keys import ApiKey, KeyRing, bearer_token

log = logging.getLogger(__name__)

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_API = pb.DESCRIPTOR.services_by_name["VideoGeneration"].full_name
SUBMIT_METHODS = (f"/{_API}/Submit", f"/{_API}/Generate")


def _endpoint_of(request: Any) -> str | None:
    """The endpoint a Submit/Generate selects, from the message or its raw bytes (the servicer parses
    requests itself); None for other calls and for bytes that do not parse (INVALID_ARGUMENT later)."""
    if isinstance(request, pb.SubmitRequest):
        which = request.input.WhichOneof("input")
        return for_input(getattr(request.input, which)).endpoint.value if which else None
    if isinstance(request, bytes):
        try:
            endpoint = submit_endpoint(request)
        except WireError:
            return None
        return endpoint.value if endpoint else None
    return None


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(EXEMPT_PREFIXES):
            return handler
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        token = bearer_token(metadata.get("authorization"))
        key = self._ring.identify(token) if token else None
        submits = details.method in SUBMIT_METHODS
        return rewrap(
            handler,
            lambda inner: self._unary(inner, key, submits),
            lambda inner: self._stream(inner, key, submits),
        )

    async def _check(
        self, key: ApiKey | None, request: Any, context_: grpc.aio.ServicerContext, submits: bool
    ) -> None:
        if key is None:
            metrics.AUTH_CHECKS.labels("", "unauthenticated").inc()
            await context_.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or unknown API key (metadata authorization: Bearer <key>)",
            )
        assert key is not None
        api_key_name_var.set(key.name)
        endpoint = _endpoint_of(request) if submits else None
        if endpoint is not None and not key.allows(endpoint):
            metrics.AUTH_CHECKS.labels(key.name, "permission_denied").inc()
            log.info("API key %s refused for endpoint %s", key.name, endpoint)
            await context_.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"API key {key.name!r} is not allowed endpoint {endpoint}"
            )
        metrics.AUTH_CHECKS.labels(key.name, "ok").inc()

    def _unary(self, inner: Unary, key: ApiKey | None, submits: bool) -> Unary:
        async def behavior(request: Any, context_: grpc.aio.ServicerContext) -> Any:
            await self._check(key, request, context_, submits)
            return await inner(request, context_)

        return behavior

    def _stream(self, inner: Stream, key: ApiKey | None, submits: bool) -> Stream:
        async def behavior(request: Any, context_: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await self._check(key, request, context_, submits)
            async for response in inner(request, context_):
                yield response

        return behavior
