"""`ltx-loadgen --config loadtest/submit.json`: run a ghz config against a service on loopback and
write ghz's JSON report.

It reads the same file as `ghz --config` (the keys listed in SUPPORTED; any other key is refused by
name rather than silently ignored), drives the calls with grpc.aio from `concurrency` workers over
`connections` channels, stops at `total` calls or after `duration`, and never runs past
`--max-duration-s`. Only loopback hosts are allowed: this is a bench tool, not a traffic generator.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2  # noqa: F401  (registers grpc.health.v1 for `call`)

from ltx.v1 import video_generation_pb2  # noqa: F401  (registers ltx.v1 for `call`)
from service.client.ghz_report import CallResult, build_report

SUPPORTED = {
    "name",
    "call",
    "host",
    "proto",
    "protoset",
    "import-paths",
    "insecure",
    "cacert",
    "cert",
    "key",
    "cname",
    "total",
    "concurrency",
    "connections",
    "duration",
    "timeout",
    "connect-timeout",
    "data",
    "metadata",
    "format",
    "output",
    "tags",
    "skipTLS",
}
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float) -> float:
    """Go duration ("10s", "1m30s", "250ms") in seconds; a bare number is seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r} (e.g. 10s, 1m30s, 250ms)")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


@dataclass(frozen=True)
class RunConfig:
    call: str
    host: str
    total: int = 200
    concurrency: int = 50
    connections: int = 1
    duration_s: float | None = None
    timeout_s: float = 20.0
    connect_timeout_s: float = 10.0
    data: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    metadata: dict[str, str] = field(default_factory=dict)
    tls: dict[str, str] = field(default_factory=dict)  # cacert, cert, key (paths)
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    output: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def load_run_config(path: Path, overrides: dict[str, Any]) -> RunConfig:
    raw = {**json.loads(path.read_text()), **{k: v for k, v in overrides.items() if v is not None}}
    unknown = sorted(set(raw) - SUPPORTED)
    if unknown:
        raise ValueError(f"{path}: ghz keys ltx-loadgen does not implement: {', '.join(unknown)}")
    host = str(raw.get("host", ""))
    if not host.startswith(tuple(h + ":" for h in LOOPBACK)):
        raise ValueError(f"host {host!r}: ltx-loadgen only drives loopback (127.0.0.1:PORT)")
    data = raw.get("data", {})
    total, concurrency = int(raw.get("total", 200)), int(raw.get("concurrency", 50))
    if total < 1 or not 1 <= concurrency <= 10_000:
        raise ValueError("total must be >= 1 and concurrency within 1..10000")
    return RunConfig(
        call=str(raw["call"]),
        host=host,
        total=total,
        concurrency=concurrency,
        connections=max(1, int(raw.get("connections", 1))),
        duration_s=parse_duration(raw["duration"]) if raw.get("duration") else None,
        timeout_s=parse_duration(raw.get("timeout", "20s")),
        connect_timeout_s=parse_duration(raw.get("connect-timeout", "10s")),
        data=data if isinstance(data, list) else [data],
        metadata=dict(raw.get("metadata", {})),
        tls={k: str(raw[k]) for k in ("cacert", "cert", "key") if raw.get(k)}
        if not raw.get("insecure")
        else {},
        name=raw.get("name"),
        tags={str(k): str(v) for k, v in raw.get("tags", {}).items()},
        output=raw.get("output"),
        raw=raw,
    )


def _template(value: Any, number: int, worker: int) -> Any:
    """The ghz template values and functions the configs use."""
    if isinstance(value, str):
        value = value.replace("{{.RequestNumber}}", str(number)).replace("{{.WorkerID}}", str(worker))
        value = value.replace("{{.TimestampUnix}}", str(int(time.time())))
        while "{{newUUID}}" in value or "{{.UUID}}" in value:
            value = value.replace("{{newUUID}}", str(uuid.uuid4()), 1).replace(
                "{{.UUID}}", str(uuid.uuid4()), 1
            )
        return value
    if isinstance(value, dict):
        return {k: _template(v, number, worker) for k, v in value.items()}
    if isinstance(value, list):
        return [_template(v, number, worker) for v in value]
    return value


@dataclass(frozen=True)
class Method:
    path: str  # /pkg.Service/Method
    request_class: type[Message]
    response_class: type[Message]
    server_streaming: bool


def resolve_method(call: str) -> Method:
    service, _, name = call.replace("/", ".").rpartition(".")
    descriptor = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name)
    if descriptor is None or descriptor.client_streaming:
        raise ValueError(f"call {call!r}: not a unary or server-streaming method")
    return Method(
        f"/{service}/{name}",
        message_factory.GetMessageClass(descriptor.input_type),
        message_factory.GetMessageClass(descriptor.output_type),
        descriptor.server_streaming,
    )


def _channel(config: RunConfig) -> grpc.aio.Channel:
    if not config.tls:
        return grpc.aio.insecure_channel(config.host)
    read = {k: Path(v).read_bytes() for k, v in config.tls.items()}
    credentials = grpc.ssl_channel_credentials(read.get("cacert"), read.get("key"), read.get("cert"))
    return grpc.aio.secure_channel(config.host, credentials)


async def _one_call(
    callable_: Any, method: Method, request: Any, config: RunConfig, metadata: Any
) -> CallResult:
    started = time.perf_counter_ns()
    code, message = grpc.StatusCode.OK, ""
    try:
        if method.server_streaming:
            async for _ in callable_(request, timeout=config.timeout_s, metadata=metadata):
                pass
        else:
            await callable_(request, timeout=config.timeout_s, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        code, message = error.code(), error.details() or ""
    latency = time.perf_counter_ns() - started
    return CallResult(datetime.datetime.now(datetime.UTC), latency, code, message)


async def run_load(config: RunConfig, method: Method) -> tuple[list[CallResult], int, str]:
    channels = [_channel(config) for _ in range(config.connections)]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), config.connect_timeout_s)
    make = (lambda ch: ch.unary_stream) if method.server_streaming else (lambda ch: ch.unary_unary)
    callables = [
        make(ch)(
            method.path,
            request_serializer=method.request_class.SerializeToString,
            response_deserializer=method.response_class.FromString,
        )
        for ch in channels
    ]
    numbers = itertools.count()
    results: list[CallResult] = []
    deadline = time.monotonic() + config.duration_s if config.duration_s else None
    timed_out = False

    async def worker(worker_id: int) -> None:
        nonlocal timed_out
        callable_ = callables[worker_id % len(callables)]
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                return
            number = next(numbers)
            if deadline is None and number >= config.total:
                return
            data = _template(config.data[number % len(config.data)], number, worker_id)
            request = json_format.ParseDict(data, method.request_class())
            metadata = tuple(_template(config.metadata, number, worker_id).items())
            results.append(await _one_call(callable_, method, request, config, metadata))

    started = time.perf_counter_ns()
    await asyncio.gather(*(worker(i) for i in range(config.concurrency)))
    total_ns = time.perf_counter_ns() - started
    for channel in channels:
        await channel.close(grace=None)
    return results, total_ns, "timeout" if timed_out else "normal"


def report_options(config: RunConfig) -> dict[str, Any]:
    """ghz's report `options` (reporter.go Options): durations as integer nanoseconds."""
    raw = config.raw
    options: dict[str, Any] = {
        "call": config.call,
        "host": config.host,
        "insecure": bool(raw.get("insecure", False)),
        "total": config.total,
        "concurrency": config.concurrency,
        "connections": config.connections,
        "timeout": int(config.timeout_s * 1e9),
        "dial-timeout": int(config.connect_timeout_s * 1e9),
        "data": raw.get("data", {}),
        "metadata": config.metadata,
        "binary": False,
        "CPUs": 1,
        "load-schedule": "const",
        "load-start": 0,
        "load-end": 0,
        "load-step": 0,
        "load-step-duration": 0,
        "load-max-duration": 0,
        "concurrency-schedule": "const",
        "concurrency-start": config.concurrency,
        "concurrency-end": 0,
        "concurrency-step": 0,
        "concurrency-step-duration": 0,
        "concurrency-max-duration": 0,
    }
    for key in ("proto", "protoset", "import-paths", "name", "cacert", "cert", "key"):
        if raw.get(key):
            options[key] = raw[key]
    if config.duration_s:
        options["duration"] = int(config.duration_s * 1e9)
    return options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ltx-loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, type=Path, help="a ghz config file (JSON)")
    p.add_argument("--host", help="override `host` (loopback only)")
    p.add_argument("--total", type=int, help="override `total`")
    p.add_argument("--concurrency", type=int, help="override `concurrency`")
    p.add_argument("--duration", help="override `duration` (Go duration, e.g. 10s)")
    p.add_argument("--data", help="override `data` (JSON), e.g. a request_id for Status")
    p.add_argument("--metadata", help="override `metadata` (JSON)")
    p.add_argument("--output", "-o", help="override `output` (the report path)")
    p.add_argument("--max-duration-s", type=float, default=300.0, help="hard stop of the whole run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {
        "host": args.host,
        "total": args.total,
        "concurrency": args.concurrency,
        "duration": args.duration,
        "data": json.loads(args.data) if args.data else None,
        "metadata": json.loads(args.metadata) if args.metadata else None,
        "output": args.output,
    }
    config = load_run_config(args.config, overrides)
    method = resolve_method(config.call)
    when = datetime.datetime.now(datetime.UTC)
    results, total_ns, reason = asyncio.run(asyncio.wait_for(run_load(config, method), args.max_duration_s))
    report = build_report(
        results,
        started=when,
        total_ns=total_ns,
        end_reason=reason,
        options=report_options(config),
        name=config.name,
        tags=config.tags,
    )
    text = json.dumps(report, indent=2)
    if config.output:
        Path(config.output).parent.mkdir(parents=True, exist_ok=True)
        Path(config.output).write_text(text + "\n")
        print(_summary(report), flush=True)
    else:
        print(text)


def _summary(report: dict[str, Any]) -> str:
    latencies = {d["percentage"]: d["latency"] / 1e6 for d in report["latencyDistribution"] or []}
    return (
        f"{report['count']} calls in {report['total'] / 1e9:.2f} s, {report['rps']:.1f} rps; "
        f"p50 {latencies.get(50, 0):.2f} ms p95 {latencies.get(95, 0):.2f} ms p99 {latencies.get(99, 0):.2f} ms; "
        f"{report['statusCodeDistribution']}"
    )


if __name__ == "__main__":
    main()
