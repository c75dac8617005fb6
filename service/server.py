"""Assembles the service: store, queue, engine, storage, gRPC server (health, reflection), HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.api.servicer import VideoGenerationServicer
from service.config import ServiceConfig
from service.domain.specs import Endpoint
from service.engines.base import Engine
from service.engines.factory import create_engine
from service.jobs.queue import JobQueue
from service.jobs.runner import JobRunner
from service.jobs.store import JobStore
from service.storage.local import LocalStorage, ResultsHttpServer

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VideoGeneration"].full_name
HEALTH_POLL_S = 2.0
RETENTION_POLL_S = 60.0


@dataclass
class RunningService:
    grpc_port: int
    http_port: int
    server: grpc.aio.Server
    queue: JobQueue
    tasks: list[asyncio.Task[None]]
    http: ResultsHttpServer
    store: JobStore

    async def stop(self, grace_s: float = 2.0) -> None:
        for task in self.tasks:
            task.cancel()
        await self.server.stop(grace_s)
        await self.queue.stop()
        self.http.stop()
        self.store.close()


def _supports(engine: Engine) -> Callable[[Endpoint], bool]:
    check = getattr(engine, "supports", None)
    return check if callable(check) else (lambda endpoint: endpoint is Endpoint.TEXT_TO_VIDEO)


class Readiness:
    """The engine's readiness as the health loop last saw it: read by Submit without probing the backend."""

    def __init__(self) -> None:
        self.ready = False

    def __call__(self) -> bool:
        return self.ready


async def start_service(config: ServiceConfig, engine: Engine | None = None) -> RunningService:
    """Start everything and return once the gRPC port is listening."""
    http = ResultsHttpServer(config.storage_dir, config.host, config.http_port)
    http.start()
    base_url = config.public_base_url or f"http://{config.host}:{http.port}"
    storage = LocalStorage(config.storage_dir, base_url)
    engine = engine or create_engine(config)
    store = JobStore(config.db_path)
    queue = JobQueue(store, config.queue, JobRunner(engine, storage))

    server = grpc.aio.server()
    readiness = Readiness()
    servicer = VideoGenerationServicer(
        queue, _supports(engine), readiness, precondition=getattr(engine, "precondition_failure", None)
    )
    pb_grpc.add_VideoGenerationServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    for name in ("", SERVICE_NAME):  # not SERVING until the first readiness check says so
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    await server.start()
    await queue.start()
    tasks = [
        asyncio.create_task(_report_health(engine, health_servicer, readiness)),
        asyncio.create_task(_purge_expired(queue, storage, config.queue.retention_s)),
    ]
    log.info("serving gRPC on %s:%d, results over HTTP at %s", config.host, port, base_url)
    return RunningService(port, http.port, server, queue, tasks, http, store)


async def _report_health(
    engine: Engine, health_servicer: health.aio.HealthServicer, readiness: Readiness
) -> None:
    """SERVING while the engine can take jobs (e.g. Triton reachable), NOT_SERVING otherwise."""
    last = None
    while True:
        ready = await asyncio.to_thread(engine.ready)
        readiness.ready = ready
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        if status != last:
            for name in ("", SERVICE_NAME):
                await health_servicer.set(name, status)
            log.info("health: %s", health_pb2.HealthCheckResponse.ServingStatus.Name(status))
            last = status
        await asyncio.sleep(HEALTH_POLL_S)


async def _purge_expired(queue: JobQueue, storage: LocalStorage, retention_s: float) -> None:
    while True:
        for job_id in queue.purge_expired(retention_s):
            storage.delete(job_id)
            log.info("purged expired result", extra={"request_id": job_id})
        await asyncio.sleep(min(RETENTION_POLL_S, max(retention_s / 2, 0.5)))


async def serve_forever(config: ServiceConfig) -> None:
    running = await start_service(config)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await running.server.wait_for_termination()
    finally:
        await running.stop()
