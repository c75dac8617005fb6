"""Issue 11: the job store under load. SQLite against PostgreSQL.

    python -m bench.queue_stores            # needs PostgreSQL's server binaries (initdb), as the tests do

1. Submit throughput and latency (p50/p99) through a real gateway process (gRPC, validation, store) at
   1, 16 and 64 concurrent clients, on SQLite and on PostgreSQL. No worker runs, so only Submit is timed.
2. Submit-to-claim: in-process queues with a runner that only records when it was called; on PostgreSQL
   the submitting queue and the claiming queue use separate stores (connections), so the wake-up travels
   over LISTEN/NOTIFY as between replicas.
3. Watch fan-out: 200 Watch streams over two PostgreSQL gateways on 200 queued jobs; the jobs are then
   cancelled through one gateway, and we time until each stream has seen its job complete.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.client.cli import build_request
from service.config import QueueConfig
from service.jobs.postgres import PostgresJobStore
from service.jobs.queue import JobQueue
from service.jobs.sql_store import SqlJobStore
from service.jobs.store import SqliteJobStore
from tests.integration.external_servers import PostgresServer, postgres_bin_dir
from tests.integration.service_process import ServiceProcess

SMALL = {
    "prompt": "a red ball",
    "resolution": "480p",
    "aspect_ratio": "1:1",
    "number_of_frames": 9,
    "number_of_steps": 2,
    "frame_rate": 12,
    "seed": 7,
}
REQUESTS_PER_LEVEL = 640


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def submit_load(port: int, clients: int, total: int) -> tuple[float, list[float]]:
    request = build_request("ltx-video-lora", SMALL)
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.VideoGenerationStub(channel)
        await stub.Submit(request)  # warm-up
        per_client = total // clients

        async def client() -> None:
            for _ in range(per_client):
                t0 = time.perf_counter()
                await stub.Submit(request)
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - start
    return len(latencies) / wall, latencies


def bench_submit(name: str, args: list[str], root: Path) -> None:
    gateway = ServiceProcess(root / name, ["--role", "gateway", "--max-queued", "1000000", *args])
    gateway.data_dir.mkdir(parents=True)
    gateway.start(timeout_s=120)
    try:
        for clients in (1, 16, 64):
            rate, lat = asyncio.run(submit_load(gateway.grpc_port, clients, REQUESTS_PER_LEVEL))
            print(
                f"| {name} | {clients} | {rate:.0f} | {pct(lat, 0.5) * 1e3:.1f} | {pct(lat, 0.99) * 1e3:.1f} |",
                flush=True,
            )
    finally:
        gateway.stop()


def bench_claim(name: str, submitter: SqlJobStore, claimer: SqlJobStore, jobs: int = 50) -> None:
    claimed: dict[str, float] = {}
    done = threading.Event()

    def runner(record, ctx) -> str:
        claimed[record.job_id] = time.perf_counter()
        if len(claimed) == jobs:
            done.set()
        return "{}"

    async def scenario() -> list[float]:
        config = QueueConfig(max_queued=10**6, heartbeat_s=60.0)
        worker = JobQueue(claimer, config, runner)
        front = worker if submitter is claimer else JobQueue(submitter, config, None)
        await worker.start()
        if front is not worker:
            await front.start()
        await asyncio.sleep(1.5)  # idle: the worker waits on a notification, not a poll
        delays = []
        for _ in range(jobs):
            t0 = time.perf_counter()
            job_id, _ = await front.submit("ltx-video-lora", "{}")
            while job_id not in claimed:
                await asyncio.sleep(0.0005)
            delays.append(claimed[job_id] - t0)
            await asyncio.sleep(0.02)
        await worker.stop()
        if front is not worker:
            await front.stop()
        return delays

    delays = asyncio.run(scenario())
    print(f"| {name} | {statistics.median(delays) * 1e3:.1f} | {pct(delays, 0.99) * 1e3:.1f} |", flush=True)


def bench_watch_fanout(database_url: str, root: Path, streams: int = 200) -> None:
    gateways = [
        ServiceProcess(
            root / f"fan-{i}", ["--role", "gateway", "--database-url", database_url, "--max-queued", "100000"]
        )
        for i in range(2)
    ]
    for g in gateways:
        g.data_dir.mkdir(parents=True)
        g.start(timeout_s=120)
    try:
        ids = [gateways[0].submit("ltx-video-lora", SMALL).request_id for _ in range(streams)]
        ended: dict[str, float] = {}
        first_event = threading.Barrier(streams + 1, timeout=120)

        def watch(gateway: ServiceProcess, request_id: str) -> None:
            for index, event in enumerate(
                gateway.stub.Watch(pb.WatchRequest(request_id=request_id), timeout=300)
            ):
                if index == 0:
                    first_event.wait()
                if event.status == pb.COMPLETED:
                    ended[request_id] = time.perf_counter()

        threads = [threading.Thread(target=watch, args=(gateways[i % 2], r)) for i, r in enumerate(ids)]
        for t in threads:
            t.start()
        first_event.wait()  # every stream is open
        t0 = time.perf_counter()
        for request_id in ids:
            gateways[0].stub.Cancel(pb.CancelRequest(request_id=request_id))
        cancelled = time.perf_counter() - t0
        for t in threads:
            t.join(timeout=300)
        lags = [ended[r] - t0 for r in ids if r in ended]
        print(
            f"| {streams} streams, 2 gateways | {len(lags)} | {cancelled:.2f} | {statistics.median(lags):.2f} | "
            f"{max(lags):.2f} |",
            flush=True,
        )
    finally:
        for g in gateways:
            g.stop()


def main() -> None:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL server binaries not found (apt-get install postgresql)")
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs", flush=True)
    pg = PostgresServer(bin_dir)
    pg.start()
    root = Path(tempfile.mkdtemp(prefix="ltx-bench-"))
    try:
        print("\n| store | clients | Submits/s | p50 (ms) | p99 (ms) |\n|---|---|---|---|---|")
        bench_submit("SQLite", [], root)
        bench_submit("PostgreSQL", ["--database-url", pg.create_database("submit")], root)

        print("\n| store | Submit-to-claim p50 (ms) | p99 (ms) |\n|---|---|---|")
        sqlite = SqliteJobStore(root / "claim.sqlite3")
        bench_claim("SQLite (one process)", sqlite, sqlite)
        sqlite.close()
        url = pg.create_database("claim")
        stores = PostgresJobStore(url), PostgresJobStore(url)
        bench_claim("PostgreSQL (two stores, NOTIFY)", *stores)
        for store in stores:
            store.close()

        print(
            "\n| Watch fan-out | streams ended | cancel loop (s) | p50 to end (s) | max (s) |\n|---|---|---|---|---|"
        )
        bench_watch_fanout(pg.create_database(f"fan_{uuid.uuid4().hex[:6]}"), root)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
