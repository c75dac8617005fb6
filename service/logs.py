"""Structured logging: one line per record, carrying the request id when there is one."""

from __future__ import annotations

import logging


class _RequestIdFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request = f" request_id={request_id}" if request_id else ""
        return super().format(record)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_RequestIdFormatter("%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
