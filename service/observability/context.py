"""Per-RPC context that log lines pick up: the request id and the API key's name (contextvars follow
the RPC's task, and `asyncio.to_thread` copies them into worker threads)."""

from __future__ import annotations

import contextvars

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
api_key_name: contextvars.ContextVar[str | None] = contextvars.ContextVar("api_key_name", default=None)
