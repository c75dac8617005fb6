from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.external_servers import MotoServer, PostgresServer, postgres_bin_dir
from tests.integration.service_process import ServiceProcess

# One tritonserver per test run, shared by every module that uses it: imported into each module instead,
# a session fixture is one per module, and two servers starting on two cores take twice as long.
from tests.integration.triton_fixtures import triton_server, triton_session  # noqa: F401


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service for the module: tiny preset, in-process engine, one worker."""
    proc = ServiceProcess(tmp_path_factory.mktemp("service"), ["--max-queued", "3"])
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def fresh_service(tmp_path: Path) -> Iterator[ServiceProcess]:
    """A service of the test's own (for kill -9 and queue-full tests)."""
    proc = ServiceProcess(tmp_path, ["--max-queued", "2"])
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the session (skipped, saying why, where it is not installed)."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb) not found; `make test` installs postgresql")
    server = PostgresServer(bin_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoServer]:
    """moto's S3 server mode in its own process, reached over HTTP."""
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
