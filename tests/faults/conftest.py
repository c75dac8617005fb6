"""An in-process gateway on 127.0.0.1 (the full API, no engine and no job workers: accepted jobs only
queue), for the API tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from service.config import load_config
from service.server import RunningService, start_service


@pytest.fixture(scope="module")
def running_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    config = load_config(
        None,
        port=0,
        http_port=0,
        data_dir=str(tmp_path_factory.mktemp("api")),
        role="gateway",
        **{"queue.max_queued": 1_000_000, "media.max_bytes": 24 * 1024**2},
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
    deadline = time.monotonic() + 60
    while running.readiness.reason() is not None:
        assert time.monotonic() < deadline, running.readiness.reason()
        time.sleep(0.1)
    try:
        yield running
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="module")
def server_target(running_server: RunningService) -> str:
    return f"127.0.0.1:{running_server.grpc_port}"
