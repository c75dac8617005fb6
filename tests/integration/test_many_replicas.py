"""Two gateways, two workers, one PostgreSQL, one S3 (moto, over HTTP): every job completes exactly once
with the bytes a single process makes, Watch follows jobs across processes, a worker killed with -9
mid-job loses nothing, and cancel works through either gateway."""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator

import boto3
import grpc
import psycopg
import pytest

from ltx.v1 import video_generation_pb2 as pb
from tests.integration.external_servers import S3_ENV, MotoServer, PostgresServer
from tests.integration.service_process import ServiceProcess

T2V = "ltx-video-lora"
SMALL = {
    "prompt": "a red ball",
    "resolution": "480p",
    "aspect_ratio": "1:1",
    "number_of_frames": 9,
    "number_of_steps": 2,
    "frame_rate": 12,
}
SLOW = {
    "prompt": "a long walk",
    "resolution": "720p",
    "aspect_ratio": "16:9",
    "number_of_frames": 161,
    "number_of_steps": 50,
    "seed": 1,
}
SEEDS = (3, 4)
JOBS = 20


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


@pytest.fixture(scope="module")
def reference_bytes(fleet: dict[str, ServiceProcess]) -> dict[int, bytes]:
    """What the single-process default (SQLite, local files), started beside the fleet, makes per seed."""
    single = fleet["single"]
    out = {}
    for seed in SEEDS:
        reply = single.submit(T2V, {**SMALL, "seed": seed})
        status = single.wait_completed(reply.request_id)
        assert not status.HasField("error"), status.error
        result = single.stub.Result(pb.ResultRequest(request_id=reply.request_id))
        out[seed] = download(result.output.text_to_video.video.url)
    single.stop()  # frees its CPU for the fleet
    return out


@pytest.fixture(scope="module")
def fleet_database_url(postgres: PostgresServer) -> str:
    return postgres.create_database(f"fleet_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, fleet_database_url: str, moto_s3: MotoServer
) -> Iterator[dict[str, ServiceProcess]]:
    database_url = fleet_database_url
    bucket = f"results-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_s3.url, **_boto_credentials()).create_bucket(Bucket=bucket)
    shared = [
        "--database-url",
        database_url,
        "--storage-url",
        f"s3://{bucket}/ltx",
        "--s3-endpoint-url",
        moto_s3.url,
        "--lease-s",
        "3",
        "--heartbeat-s",
        "0.5",
    ]
    procs = {"single": ServiceProcess(tmp_path_factory.mktemp("single"))}
    procs |= {
        name: ServiceProcess(tmp_path_factory.mktemp(name), [*shared, "--role", role, *extra], env=S3_ENV)
        for name, role, extra in (
            ("gateway-a", "gateway", []),
            ("gateway-b", "gateway", []),
            ("worker-1", "worker", ["--worker-id", "worker-1"]),
            ("worker-2", "worker", ["--worker-id", "worker-2"]),
        )
    }
    try:
        starts = [threading.Thread(target=proc.start, kwargs={"timeout_s": 300}) for proc in procs.values()]
        for thread in starts:
            thread.start()
        for thread in starts:
            thread.join()
        assert all(
            proc.channel is not None and proc.proc is not None and proc.proc.poll() is None
            for proc in procs.values()
        ), {name: proc.log_tail() for name, proc in procs.items()}
        for proc in procs.values():
            proc._wait_serving(
                30
            )  # each one answers SERVING (a start thread's timeout does not fail the test)
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


def watch_to_end(proc: ServiceProcess, request_id: str, events: dict[str, list[pb.JobEvent]]) -> None:
    events[request_id] = list(proc.stub.Watch(pb.WatchRequest(request_id=request_id), timeout=240))


def started_on(proc: ServiceProcess, request_id: str) -> list[str]:
    status = proc.stub.Status(pb.StatusRequest(request_id=request_id, logs=True))
    return [line.message for line in status.logs if line.message.startswith("started on ")]


def test_jobs_across_gateways_and_workers_survive_a_worker_kill(
    fleet: dict[str, ServiceProcess], reference_bytes: dict[int, bytes], fleet_database_url: str
) -> None:
    gateways = [fleet["gateway-a"], fleet["gateway-b"]]
    ids: list[str] = []
    events: dict[str, list[pb.JobEvent]] = {}
    watchers = []
    for i in range(JOBS):
        submit_to, watch_on = gateways[i % 2], gateways[(i + 1) % 2]
        ids.append(submit_to.submit(T2V, {**SMALL, "seed": SEEDS[i % 2]}).request_id)
        watcher = threading.Thread(target=watch_to_end, args=(watch_on, ids[-1], events))
        watcher.start()
        watchers.append(watcher)

    victim = _kill_worker_mid_job(fleet, fleet_database_url)
    for watcher in watchers:
        watcher.join(timeout=240)
    assert sorted(events) == sorted(ids), "a Watch stream did not end"

    for i, request_id in enumerate(ids):
        last = events[request_id][-1]
        assert last.status == pb.COMPLETED and not last.HasField("error"), (request_id, last.error)
        video = last.result.text_to_video.video
        assert "X-Amz-Signature=" in video.url  # a presigned S3 URL
        assert download(video.url) == reference_bytes[SEEDS[i % 2]], (
            f"job {i} differs from the single process"
        )
        status = gateways[i % 2].stub.Status(pb.StatusRequest(request_id=request_id))
        runs = started_on(gateways[i % 2], request_id)
        if len(runs) == 2:  # claimed by worker-1 (running, or prepared ahead) when it died: re-run once
            assert "worker-1" in runs[0] and "worker-2" in runs[1] and status.retries == 1, runs
        else:
            assert len(runs) == 1 and status.retries == 0, runs  # exactly once
        assert request_id != victim or len(runs) == 2, runs
    assert any(len(evts) > 2 for evts in events.values()), "Watch streamed no progress across processes"


# Jobs of worker-1 that are past their first denoising step in their current run. Read from the job
# store itself: one query every few milliseconds sees the whole fleet, where a Status call per job
# (20 RPCs a sweep) could miss a tiny 2-step job altogether on a loaded machine.
WORKER_1_DENOISING = """
    SELECT DISTINCT jobs.job_id FROM jobs JOIN progress
      ON progress.job_id = jobs.job_id AND progress.run = jobs.runs
    WHERE jobs.state = 'running' AND jobs.worker_id = 'worker-1'
      AND progress.report_json LIKE '%"stage": "denoising"%'
"""


def _kill_worker_mid_job(fleet: dict[str, ServiceProcess], database_url: str) -> str:
    """kill -9 worker-1 while it is denoising one of the jobs; returns that job's id.

    The victim is read again after the kill: a dead worker cannot finish a job, so a job still
    marked running on worker-1 then is one the kill interrupted (one that finished in between the
    query and the signal is not counted)."""
    deadline = time.monotonic() + 180
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute(WORKER_1_DENOISING).fetchall():
                fleet["worker-1"].kill9()
                interrupted = [row[0] for row in conn.execute(WORKER_1_DENOISING).fetchall()]
                assert interrupted, "the job worker-1 was denoising finished before the kill landed"
                return interrupted[0]
            time.sleep(0.005)
    raise TimeoutError("worker-1 never denoised a job")


@pytest.mark.parametrize("cancel_on", ["gateway-a", "gateway-b"])
def test_cancel_through_either_gateway_stops_the_running_job(
    fleet: dict[str, ServiceProcess], cancel_on: str
) -> None:
    submit_to = fleet["gateway-b" if cancel_on == "gateway-a" else "gateway-a"]
    canceller = fleet[cancel_on]
    request_id = submit_to.submit(T2V, SLOW).request_id
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = canceller.stub.Status(pb.StatusRequest(request_id=request_id))
        if status.progress.stage == "denoising" and status.progress.step >= 1:
            break
        time.sleep(0.05)
    reply = canceller.stub.Cancel(pb.CancelRequest(request_id=request_id))
    assert reply.status == pb.CANCELLATION_REQUESTED
    status = canceller.wait_completed(request_id, timeout_s=60)
    assert status.error.error_type == "cancelled"
    with pytest.raises(grpc.RpcError) as missing:
        canceller.stub.Status(pb.StatusRequest(request_id="no-such-id"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as on_worker:  # a worker serves health only, not the API
        fleet["worker-2"].stub.Status(pb.StatusRequest(request_id=request_id))
    assert on_worker.value.code() == grpc.StatusCode.UNIMPLEMENTED
