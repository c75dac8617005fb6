"""ghz's report arithmetic (runner/reporter.go) and the load generator's config checks."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import grpc
import jsonschema
import pytest

from service.client.ghz_report import CallResult, build_report, go_status_name, histogram, percentiles
from service.client.loadgen import load_run_config, parse_duration, resolve_method

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests/data/ghz/report.schema.json").read_text())
NOW = datetime.datetime(2026, 12, 1, 9, 30, 0, 123400, tzinfo=datetime.UTC)


def test_go_status_names() -> None:
    assert go_status_name(grpc.StatusCode.OK) == "OK"
    assert go_status_name(grpc.StatusCode.CANCELLED) == "Canceled"
    assert go_status_name(grpc.StatusCode.RESOURCE_EXHAUSTED) == "ResourceExhausted"
    assert go_status_name(grpc.StatusCode.UNAUTHENTICATED) == "Unauthenticated"


def test_percentiles_follow_ghz_index_rule() -> None:
    # n = 10, ip = p/100*n: p10 -> 1.0 exact -> index 0; p25 -> 2.5 -> 2; p50 -> 5.0 exact -> 4;
    # p75 -> 7.5 -> 7; p90 -> 9.0 exact -> 8; p95 -> 9.5 -> 9; p99 -> 9.9 -> 9.
    values = [p["latency"] for p in percentiles(list(range(1, 11))) or []]
    assert values == [1, 3, 5, 8, 9, 10, 10]
    assert percentiles([]) is None


def test_histogram_has_eleven_marks_and_counts_everything() -> None:
    buckets = histogram([1_000_000_000, 2_000_000_000, 2_000_000_000, 11_000_000_000]) or []
    assert len(buckets) == 11
    assert buckets[0]["mark"] == 1.0 and buckets[-1]["mark"] == 11.0
    assert [b["count"] for b in buckets] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert sum(b["frequency"] for b in buckets) == pytest.approx(1.0)


def test_report_validates_and_counts_errors_apart() -> None:
    results = [
        CallResult(NOW, 2_000_000, grpc.StatusCode.OK),
        CallResult(NOW, 4_000_000, grpc.StatusCode.OK),
        CallResult(NOW, 9_000_000, grpc.StatusCode.RESOURCE_EXHAUSTED, "the queue is full"),
    ]
    report = build_report(results, started=NOW, total_ns=1_000_000_000, end_reason="normal", options={})
    jsonschema.validate(report, SCHEMA)
    assert report["date"] == "2026-12-01T09:30:00Z"
    assert report["details"][0]["timestamp"] == "2026-12-01T09:30:00.1234Z"
    assert (report["count"], report["average"], report["fastest"], report["slowest"]) == (
        3,
        5_000_000,
        2_000_000,
        4_000_000,
    )
    assert report["statusCodeDistribution"] == {"OK": 2, "ResourceExhausted": 1}
    assert report["errorDistribution"] == {"rpc error: code = ResourceExhausted desc = the queue is full": 1}
    assert report["rps"] == pytest.approx(3.0)


def test_schema_rejects_a_wrong_status_name() -> None:
    report = build_report([], started=NOW, total_ns=1, end_reason="normal", options={})
    jsonschema.validate(report, SCHEMA)
    report["statusCodeDistribution"] = {"Ok": 1}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, SCHEMA)


def test_durations() -> None:
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("250ms") == 0.25
    with pytest.raises(ValueError, match="Go duration"):
        parse_duration("10 seconds")


@pytest.mark.parametrize("config", sorted((ROOT / "loadtest").glob("*.json")), ids=lambda p: p.stem)
def test_shipped_configs_load_and_name_real_methods(config: Path) -> None:
    run = load_run_config(config, {})
    method = resolve_method(run.call)
    assert run.data and method.request_class.DESCRIPTOR.name in {"SubmitRequest", "StatusRequest"}


def test_unimplemented_ghz_keys_and_remote_hosts_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"call": "ltx.v1.VideoGeneration.Submit", "host": "127.0.0.1:1", "rps": 10}))
    with pytest.raises(ValueError, match="rps"):
        load_run_config(path, {})
    path.write_text(json.dumps({"call": "ltx.v1.VideoGeneration.Submit", "host": "10.0.0.8:50051"}))
    with pytest.raises(ValueError, match="loopback"):
        load_run_config(path, {})
