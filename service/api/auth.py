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
from service.api.convert import ENDPOINT_OF_INPUT
from service.api.interceptors import Stream, Unary, rewrap
from service.logs import api_key_name_var
from service.observability import metrics
from service.security.api_keys import ApiKey, KeyRing, bearer_token

log = logging.getLogger(__name__)

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _endpoint_of(request: Any) -> str | None:
    if not isinstance(request, pb.SubmitRequest):
        return None
    which = request.input.WhichOneof("input")
    return ENDPOINT_OF_INPUT[type(getattr(request.input, which))].value if which else None


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
        return rewrap(handler, lambda inner: self._unary(inner, key), lambda inner: self._stream(inner, key))

    async def _check(self, key: ApiKey | None, request: Any, context_: grpc.aio.ServicerContext) -> None:
        if key is None:
            metrics.AUTH_CHECKS.labels("", "unauthenticated").inc()
            await context_.abort(
                grpc.StatusCode.UNAUTHENTICATED, "missing or unknown API key (metadata authorization: Bearer <key>)"
            )
        assert key is not None
        api_key_name_var.set(key.name)
        endpoint = _endpoint_of(request)
        if endpoint is not None and not key.allows(endpoint):
            metrics.AUTH_CHECKS.labels(key.name, "permission_denied").inc()
            log.info("API key %s refused for endpoint %s", key.name, endpoint)
            await context_.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"API key {key.name!r} is not allowed endpoint {endpoint}"
            )
        metrics.AUTH_CHECKS.labels(key.name, "ok").inc()

    def _unary(self, inner: Unary, key: ApiKey | None) -> Unary:
        async def behavior(request: Any, context_: grpc.aio.ServicerContext) -> Any:
            await self._check(key, request, context_)
            return await inner(request, context_)

        return behavior

    def _stream(self, inner: Stream, key: ApiKey | None) -> Stream:
        async def behavior(request: Any, context_: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await self._check(key, request, context_)
            async for response in inner(request, context_):
                yield response

        return behavior
