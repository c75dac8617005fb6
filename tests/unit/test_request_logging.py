"""Log lines below the queue carry the job's request id, whichever module writes them."""

from __future__ import annotations

import logging
import threading

from service.logs import RequestIdFilter, current_request_id, request_scope


class Recording(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RequestIdFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _logged(emit: object) -> list[logging.LogRecord]:
    handler = Recording()
    logger = logging.getLogger("service.pipelines.somewhere")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        emit()  # type: ignore[operator]
    finally:
        logger.removeHandler(handler)
    return handler.records


def test_records_in_a_scope_carry_its_id_and_others_do_not() -> None:
    logger = logging.getLogger("service.pipelines.somewhere")

    def emit() -> None:
        with request_scope("job-42"):
            logger.info("denoising")
            logger.info("explicit", extra={"request_id": "other"})
        logger.info("after the job")

    inside, explicit, after = _logged(emit)
    assert getattr(inside, "request_id", None) == "job-42"
    assert getattr(explicit, "request_id", None) == "other"  # a record's own id wins
    assert getattr(after, "request_id", None) is None


def test_a_scope_is_per_thread_and_nests() -> None:
    seen: list[str | None] = []
    with request_scope("outer"):
        worker = threading.Thread(target=lambda: seen.append(current_request_id()))
        worker.start()
        worker.join()
        with request_scope("inner"):
            assert current_request_id() == "inner"
        assert current_request_id() == "outer"
    assert seen == [None]  # a plain thread does not inherit the scope (service/logs.py says so)
    assert current_request_id() is None
