"""The wire fuzzer against a real gRPC server on 127.0.0.1 (in this process, no job workers so that
accepted jobs only queue): no INTERNAL, no UNKNOWN, no RESOURCE_EXHAUSTED (the queue never fills),
and every INVALID_ARGUMENT carries a BadRequest. `LTX_FUZZ_CASES` sets the case count (default 2,000);
`-m slow` runs 10,000."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator

import pytest

from service.config import load_config
from service.server import RunningService, start_service
from tests.faults.wire_fuzz import run_fuzz

DEFAULT_CASES = int(os.environ.get("LTX_FUZZ_CASES", "2000"))


@pytest.fixture(scope="module")
def server_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = load_config(
        None,
        port=0,
        http_port=0,
        data_dir=str(tmp_path_factory.mktemp("fuzz")),
        **{"queue.workers": 0, "queue.max_queued": 1_000_000},
    )
    loop = asyncio.new_event_loop()
    started: list[RunningService] = []
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        started.append(loop.run_until_complete(start_service(config)))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(120), "the server did not start"
    running = started[0]
    _wait_ready(running)
    try:
        yield f"127.0.0.1:{running.grpc_port}"
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _wait_ready(running: RunningService) -> None:
    import time

    deadline = time.monotonic() + 60
    while running.readiness.reason() is not None:
        assert time.monotonic() < deadline, running.readiness.reason()
        time.sleep(0.1)


def _check(server_target: str, cases: int) -> None:
    tally = run_fuzz(server_target, cases)
    print(f"wire fuzz, {cases} cases: {dict(sorted(tally.by_status.items()))}")
    assert tally.problems == []
    assert sum(tally.by_status.values()) == cases
    assert tally.by_status["OK"] and tally.by_status["INVALID_ARGUMENT"]  # both paths exercised


def test_wire_fuzz(server_target: str) -> None:
    _check(server_target, DEFAULT_CASES)


@pytest.mark.slow
def test_wire_fuzz_10k(server_target: str) -> None:
    _check(server_target, 10_000)
