"""Load on the gateway path with ltx-loadgen: Submit at 1/16/64/256 concurrent clients against a bounded
queue, 500 concurrent Watch streams held, and the cost of API-key auth per call.

    python -m bench.issue12_load [--quick]

Each server is a real `ltx-serve` subprocess on 127.0.0.1 with `--workers 0` (nothing drains the
queue, so the numbers are the gateway's: validation, conversion, SQLite insert, position) and the
client runs in this process; both share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.client.cli import build_request
from service.client.ghz_report import build_report
from service.client.loadgen import load_run_config, report_options, resolve_method, run_load
from tests.integration.service_process import ServiceProcess

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "prompt": "a red ball",
    "resolution": "480p",
    "aspect_ratio": "1:1",
    "number_of_frames": 9,
    "number_of_steps": 2,
    "frame_rate": 12,
    "seed": 7,
}
KEY = "bench-key-0123456789abcdef"
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # grpc-stubs lack grpc.aio.EOF (grpc has it)


def _proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds user+system) of a process, from /proc."""
    rss_kb = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks


def _start(data_dir: Path, *extra: str) -> ServiceProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    service = ServiceProcess(data_dir, ["--workers", "0", "--log-level", "WARNING", *extra])
    service.start()
    return service


def _run(config_path: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    config = load_run_config(config_path, overrides)
    method = resolve_method(config.call)
    when = datetime.datetime.now(datetime.UTC)
    results, total_ns, reason = asyncio.run(run_load(config, method))
    return build_report(
        results, started=when, total_ns=total_ns, end_reason=reason, options=report_options(config)
    )


def _row(label: str, report: dict[str, Any]) -> dict[str, Any]:
    p = {d["percentage"]: d["latency"] / 1e6 for d in report["latencyDistribution"] or []}
    return {
        "case": label,
        "count": report["count"],
        "rps": round(report["rps"], 1),
        "p50_ms": round(p.get(50, 0), 2),
        "p95_ms": round(p.get(95, 0), 2),
        "p99_ms": round(p.get(99, 0), 2),
        "statuses": report["statusCodeDistribution"],
    }


def submit_levels(root: Path, levels: list[int], max_queued: int, total: int) -> list[dict[str, Any]]:
    rows = []
    for concurrency in levels:
        service = _start(root / f"submit-{concurrency}", "--max-queued", str(max_queued))
        try:
            report = _run(
                ROOT / "loadtest/submit.json",
                {"host": f"127.0.0.1:{service.grpc_port}", "total": total, "concurrency": concurrency},
            )
            rows.append(_row(f"Submit c={concurrency}", report))
        finally:
            service.stop()
        print(json.dumps(rows[-1]), flush=True)
    return rows


async def _hold_watches(port: int, request_id: str, streams: int, hold_s: float, pid: int) -> dict[str, Any]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.VideoGenerationStub(channel)
    rss_before, _ = _proc_stats(pid)
    calls = [stub.Watch(pb.WatchRequest(request_id=request_id)) for _ in range(streams)]
    firsts = await asyncio.gather(*(call.read() for call in calls))  # every stream open and answered once
    rss_open, cpu_open = _proc_stats(pid)
    await asyncio.sleep(hold_s)
    rss_held, cpu_held = _proc_stats(pid)
    await stub.Cancel(pb.CancelRequest(request_id=request_id))
    finals = await asyncio.gather(*(_last(call) for call in calls))
    await channel.close(grace=None)
    return {
        "streams": streams,
        "answered": sum(1 for e in firsts if e is not _EOF),
        "ended_cancelled": sum(
            1
            for e in finals
            if e is not None and e.status == pb.COMPLETED and e.error.error_type == "cancelled"
        ),
        "rss_before_mib": round(rss_before, 1),
        "rss_open_mib": round(rss_open, 1),
        "rss_held_mib": round(rss_held, 1),
        "cpu_s_while_held": round(cpu_held - cpu_open, 2),
        "hold_s": hold_s,
    }


async def _last(call: Any) -> pb.JobEvent | None:
    last = None
    while (event := await call.read()) is not _EOF:
        last = event
    return last


def watch_streams(root: Path, streams: int, hold_s: float) -> dict[str, Any]:
    service = _start(root / "watch")
    try:
        request_id = service.submit("ltx-video-lora", SMALL).request_id
        assert service.proc is not None
        result = asyncio.run(_hold_watches(service.grpc_port, request_id, streams, hold_s, service.proc.pid))
    finally:
        service.stop()
    print(json.dumps(result), flush=True)
    return result


def identify_cost(keys: int = 10, calls: int = 20000) -> dict[str, Any]:
    """The key check alone: SHA-256 of the presented key and a constant-time compare with every key."""
    from service.security.api_keys import KeyRing, parse_api_keys

    ring = KeyRing(
        parse_api_keys(
            "".join(f'[[keys]]\nname = "k{i}"\nkey = "key-{i:02d}-0123456789abcdef"\n' for i in range(keys))
        )
    )
    started = time.perf_counter()
    for _ in range(calls):
        ring.identify("key-09-0123456789abcdef")
    result = {"keys": keys, "identify_us": round((time.perf_counter() - started) / calls * 1e6, 2)}
    print(json.dumps(result), flush=True)
    return result


def auth_cost(root: Path, total: int, concurrency: int) -> list[dict[str, Any]]:
    keys = root / "keys.toml"
    keys.write_text(
        "".join(
            f'[[keys]]\nname = "k{i}"\nkey = "{KEY if i == 9 else f"other-key-{i:02d}-0123456789"}"\n\n'
            for i in range(10)
        )
    )
    rows = []
    for label, extra, metadata in (
        ("Status, no auth", [], {}),
        ("Status, API key (10 keys)", ["--api-keys-file", str(keys)], {"authorization": f"Bearer {KEY}"}),
    ):
        service = _start(root / f"auth-{concurrency}-{len(extra)}", *extra)
        try:
            request_id = service.stub.Submit(
                build_request("ltx-video-lora", SMALL), metadata=tuple(metadata.items()), timeout=10
            ).request_id
            report = _run(
                ROOT / "loadtest/status.json",
                {
                    "host": f"127.0.0.1:{service.grpc_port}",
                    "total": total,
                    "concurrency": concurrency,
                    "data": {"request_id": request_id},
                    "metadata": metadata,
                },
            )
            rows.append(_row(f"{label}, c={concurrency}", report))
        finally:
            service.stop()
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    started = time.time()
    print(json.dumps({"load_average_at_start": [round(x, 1) for x in os.getloadavg()]}), flush=True)
    with tempfile.TemporaryDirectory(prefix="ltx-bench12-") as tmp:
        root = Path(tmp)
        results: dict[str, Any] = {
            "submit": submit_levels(
                root, [1, 16, 64, 256], max_queued=int(1000 * scale), total=int(2000 * scale)
            ),
            "watch": watch_streams(root, streams=500, hold_s=10.0 * scale),
            "auth": auth_cost(root, total=int(2000 * scale), concurrency=1)
            + auth_cost(root, total=int(3000 * scale), concurrency=16),
            "identify": identify_cost(),
        }
    results["wall_s"] = round(time.time() - started, 1)
    results["load_average"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
