"""Structured logging: one line per record, carrying the request id when there is one.

`text` (default) is for people; `json` is one JSON object per line for log pipelines. Either way the
request id comes from the record (`extra={"request_id": ...}`) or else from the context: the RPC's (the
interceptors set it) or the job's (the job runner enters `request_scope(job_id)` for each job, and
`ltx_pipeline` for each Triton request), so no log line below the queue is anonymous. A thread started
inside a scope does not inherit it: pass `contextvars.copy_context()` along (as `asyncio.to_thread`
does) or enter the scope again.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Iterator

# Per-RPC context for log lines: set by the RPC interceptors, followed by the RPC's task (and copied
# into worker threads by asyncio.to_thread).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
api_key_name_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("api_key_name", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()


@contextlib.contextmanager
def request_scope(request_id: str) -> Iterator[None]:
    """Log records of this context (thread or task) carry `request_id` until the scope ends; TritonEngine
    sends it as the Triton request id."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        if not getattr(record, "api_key", None):
            record.api_key = api_key_name_var.get()
        return True


class _RequestIdFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request = f" request_id={request_id}" if request_id else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        api_key = getattr(record, "api_key", None)
        if api_key:
            line["api_key"] = api_key
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


RequestIdFilter = _ContextFilter  # for handlers other than configure_logging's (tests, embedding apps)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            _RequestIdFormatter("%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
