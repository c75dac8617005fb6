"""Structured logging: one line per record, carrying the request id when there is one.

The job runner enters `request_scope(job_id)` for each job (service/jobs/runner.py); every record logged
in that scope, by any module, gets the id through `RequestIdFilter`, so no log line below the queue is
anonymous. Records logged with `extra={"request_id": ...}` (or through `JobContext.log`) keep their own.
A thread started inside the scope does not inherit it: pass `contextvars.copy_context()` along (as
`asyncio.to_thread` does) or enter the scope again.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

_current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return _current_request_id.get()


@contextlib.contextmanager
def request_scope(request_id: str) -> Iterator[None]:
    """Log records of this context (thread or task) carry `request_id` until the scope ends."""
    token = _current_request_id.set(request_id)
    try:
        yield
    finally:
        _current_request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Sets `record.request_id` from the current request scope unless the record brings one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _current_request_id.get()
        return True


class _RequestIdFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request = f" request_id={request_id}" if request_id else ""
        return super().format(record)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(_RequestIdFormatter("%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
