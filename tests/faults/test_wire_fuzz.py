"""The wire fuzzer against a real gRPC server on 127.0.0.1 (in this process, no job workers so that
accepted jobs only queue): no INTERNAL, no UNKNOWN, no RESOURCE_EXHAUSTED (the queue never fills),
and every INVALID_ARGUMENT carries a BadRequest. `LTX_FUZZ_CASES` sets the case count (default 2,000);
`-m slow` runs 10,000."""

from __future__ import annotations

import os

import pytest

from tests.faults.wire_fuzz import run_fuzz

DEFAULT_CASES = int(os.environ.get("LTX_FUZZ_CASES", "2000"))


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
