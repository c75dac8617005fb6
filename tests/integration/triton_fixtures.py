"""A real `tritonserver` (the one nvidia-pytriton bundles) on the checked-in model repository.

Import the fixtures into a test module (`from tests.integration.triton_fixtures import ...`). One server per
test session, on free loopback ports (HTTP, gRPC, metrics); it is always stopped at the end, its python
stubs and shared memory included. A test that kills it restarts it on the same ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import ServiceConfig
from service.engines.triton import TritonEngine
from service.engines.tritonserver_process import TritonServerProcess
from tests.engine_in_line import EngineInLine

ROOT = Path(__file__).resolve().parents[2]
MODEL_REPOSITORY = ROOT / "model_repository"
STARTUP_TIMEOUT_S = 600.0  # eleven Python models (LTX-Video and LTX-2.3) each import torch and build a tiny preset; 2 slow shared cores


@pytest.fixture(scope="session")
def triton_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServerProcess]:
    pytest.importorskip(
        "pytriton", reason="the nvidia-pytriton wheel (bundled tritonserver) is not installed"
    )
    server = TritonServerProcess(MODEL_REPOSITORY, tmp_path_factory.mktemp("tritonserver"))
    try:
        server.start(timeout_s=STARTUP_TIMEOUT_S)
        yield server
    finally:
        server.stop()


@pytest.fixture
def triton_server(triton_session: TritonServerProcess) -> TritonServerProcess:
    """The session's server, running (restarted if an earlier test killed it)."""
    if triton_session.proc is None or triton_session.proc.poll() is not None:
        triton_session.stop()
        triton_session.start(timeout_s=STARTUP_TIMEOUT_S)
    return triton_session


@pytest.fixture
def triton_engine(triton_server: TritonServerProcess) -> EngineInLine:
    """TritonEngine behind the prepare stage and the output check, as the job runner runs it."""
    config = ServiceConfig(triton_url=triton_server.grpc_url)
    # Cancel checks every 20 ms, so a cancelled job stops within a step or two of the tiny model.
    return EngineInLine(TritonEngine(config, poll_interval_s=0.02, ready_cache_s=0.0), config)
