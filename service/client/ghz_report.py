"""ghz's JSON report (`ghz -O json`), computed the way ghz's runner/reporter.go computes it.

Latencies are integer nanoseconds; fastest/slowest, percentiles and the histogram use OK calls only;
`count` and `average` include errors; status names are grpc-go's `codes.Code.String()`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import grpc

PERCENTILES = (10, 25, 50, 75, 90, 95, 99)
HISTOGRAM_BUCKETS = 10
MAX_DETAILS = 1_000_000

# grpc-go spells these differently from Python's enum names (one "l" in Canceled, "OK" not "Ok").
_GO_NAMES = {grpc.StatusCode.OK: "OK", grpc.StatusCode.CANCELLED: "Canceled"}


def go_status_name(code: grpc.StatusCode) -> str:
    return _GO_NAMES.get(code) or "".join(part.capitalize() for part in code.name.split("_"))


@dataclass(frozen=True)
class CallResult:
    end: datetime.datetime  # when the call ended (UTC)
    latency_ns: int
    code: grpc.StatusCode
    message: str = ""

    @property
    def error(self) -> str:
        if self.code is grpc.StatusCode.OK:
            return ""
        return f"rpc error: code = {go_status_name(self.code)} desc = {self.message}"


def _go_time(moment: datetime.datetime, *, nanos: bool) -> str:
    """Go's RFC3339 (seconds) or RFC3339Nano (fraction without trailing zeros), UTC as `Z`."""
    moment = moment.astimezone(datetime.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    if nanos and fraction:
        text += "." + fraction
    return text + "Z"


def percentiles(sorted_ns: list[int]) -> list[dict[str, int]] | None:
    if not sorted_ns:
        return None
    out = []
    for p in PERCENTILES:
        position = p / 100 * len(sorted_ns)
        index = int(position)
        if position == index:
            index -= 1
        out.append({"percentage": p, "latency": sorted_ns[max(index, 0)]})
    return out


def histogram(sorted_ns: list[int]) -> list[dict[str, Any]] | None:
    if not sorted_ns:
        return None
    fastest, slowest = sorted_ns[0] / 1e9, sorted_ns[-1] / 1e9
    width = (slowest - fastest) / HISTOGRAM_BUCKETS
    marks = [fastest + i * width for i in range(HISTOGRAM_BUCKETS)] + [slowest]
    counts = [0] * len(marks)
    bucket = 0
    for latency in (ns / 1e9 for ns in sorted_ns):
        while latency > marks[bucket] and bucket < len(marks) - 1:
            bucket += 1
        counts[bucket] += 1
    n = len(sorted_ns)
    return [
        {"mark": mark, "count": count, "frequency": count / n}
        for mark, count in zip(marks, counts, strict=True)
    ]


def _distributions(results: list[CallResult]) -> tuple[dict[str, int], dict[str, int]]:
    errors: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for result in results:
        name = go_status_name(result.code)
        statuses[name] = statuses.get(name, 0) + 1
        if result.error:
            errors[result.error] = errors.get(result.error, 0) + 1
    return errors, statuses


def build_report(
    results: list[CallResult],
    *,
    started: datetime.datetime,
    total_ns: int,
    end_reason: str,
    options: dict[str, Any],
    name: str | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    ok = sorted(r.latency_ns for r in results if r.code is grpc.StatusCode.OK)
    count = len(results)
    errors, statuses = _distributions(results)
    report: dict[str, Any] = {"date": _go_time(started, nanos=False)}
    if name:
        report["name"] = name
    report |= {
        "endReason": end_reason,
        "options": options,
        "count": count,
        "total": total_ns,
        "average": sum(r.latency_ns for r in results) // count if count else 0,
        "fastest": ok[0] if ok else 0,
        "slowest": ok[-1] if ok else 0,
        "rps": count / (total_ns / 1e9) if total_ns else 0.0,
        "errorDistribution": errors,
        "statusCodeDistribution": statuses,
        "latencyDistribution": percentiles(ok),
        "histogram": histogram(ok),
        "details": [
            {
                "timestamp": _go_time(r.end, nanos=True),
                "latency": r.latency_ns,
                "error": r.error,
                "status": go_status_name(r.code),
            }
            for r in results[:MAX_DETAILS]
        ]
        or None,
    }
    if tags:
        report["tags"] = tags
    return report
