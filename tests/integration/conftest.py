from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.service_process import ServiceProcess


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
