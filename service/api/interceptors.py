"""Wrapping a gRPC method handler's behaviour, for the auth and metrics interceptors.

A grpc.aio ServerInterceptor only sees the method name and metadata; wrapping the handler's behaviour
also gives it the decoded request and the final status. Unary-unary, unary-stream and stream-unary
handlers are wrapped (every method of the API and of health; a client-streaming call is wrapped as a
unary one whose "request" is the request iterator); bidi streams (reflection) pass through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

Unary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Stream = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


def rewrap(
    handler: grpc.RpcMethodHandler,
    unary: Callable[[Unary], Unary],
    stream: Callable[[Stream], Stream],
) -> grpc.RpcMethodHandler:
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    # grpc-stubs type a handler's behaviours as sync callables; under grpc.aio they are coroutine
    # functions and async generators (Unary, Stream), hence the arg-type ignores.
    if handler.request_streaming:
        if handler.response_streaming:
            return handler
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kwargs)  # type: ignore[arg-type]
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **kwargs)  # type: ignore[arg-type]
    return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)  # type: ignore[arg-type]


def split_method(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method
