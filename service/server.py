"""Assembles the service: store, queue, engine, storage, gRPC server (health, reflection), HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ltx.v1 import video_generation_pb2 as pb
from service.api.servicer import VideoGenerationServicer, add_to_server
from service.config import ServiceConfig, TransportConfig
from service.domain.specs import Endpoint
from service.engines.base import Engine
from service.engines.factory import create_engine
from service.jobs.queue import JobQueue
from service.jobs.runner import JobRunner
from service.jobs.store import JobStore
from service.storage.local import LocalStorage, ResultsHttpServer

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VideoGeneration"].full_name
READINESS = "readiness"  # NOT_SERVING while the engine or the workers cannot take jobs, or draining
LIVENESS = "liveness"  # SERVING while the process runs; never depends on Triton or the store
FOLLOWING_READINESS = ("", SERVICE_NAME, READINESS)
HEALTH_POLL_S = 2.0
RETENTION_POLL_S = 60.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Readiness:
    """Whether the service can take jobs, and why not: read by Submit without probing the backend."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self.engine_ready = False  # as the health loop last saw it

    def reason(self) -> str | None:
        """None when ready, else why not (shown to clients and logged)."""
        queue_reason = self._queue.unavailable_reason()
        if queue_reason is not None:
            return queue_reason
        return None if self.engine_ready else "the inference backend is not reachable"


@dataclass
class RunningService:
    grpc_port: int
    http_port: int
    server: grpc.aio.Server
    queue: JobQueue
    tasks: list[asyncio.Task[None]]
    http: ResultsHttpServer
    store: JobStore
    health: health.aio.HealthServicer
    readiness: Readiness
    config: ServiceConfig = field(default_factory=ServiceConfig)

    async def drain(self) -> None:
        """SIGTERM: readiness NOT_SERVING and Submit UNAVAILABLE at once, then the queue's drain."""
        grace_s = self.config.shutdown.grace_s
        log.info("draining: running jobs get %.0f s to finish", grace_s)
        drain = asyncio.ensure_future(self.queue.drain(grace_s))  # sets the queue's draining flag now
        await set_readiness(self.health, serving=False, reason="draining")
        await drain

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.server.stop(self.config.transport.graceful_stop_s)
        await self.queue.stop()
        self.http.stop()
        self.store.close()
        log.info("stopped")


async def set_readiness(health_servicer: health.aio.HealthServicer, *, serving: bool, reason: str | None) -> None:
    """Set every health name that follows readiness; the reason goes to the log."""
    status = _SERVING if serving else _NOT_SERVING
    for name in FOLLOWING_READINESS:
        await health_servicer.set(name, status)
    log.info("readiness: %s%s", "SERVING" if serving else "NOT_SERVING", f" ({reason})" if reason else "")


def _supports(engine: Engine) -> Callable[[Endpoint], bool]:
    check = getattr(engine, "supports", None)
    return check if callable(check) else (lambda endpoint: endpoint is Endpoint.TEXT_TO_VIDEO)


def grpc_options(transport: TransportConfig) -> list[tuple[str, int]]:
    """Channel arguments of the server: message sizes and a keepalive policy both sides can live with."""
    return [
        ("grpc.max_receive_message_length", transport.max_receive_message_bytes),
        ("grpc.max_send_message_length", transport.max_send_message_bytes),
        ("grpc.keepalive_time_ms", int(transport.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(transport.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", int(transport.min_ping_interval_s * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", int(transport.min_ping_interval_s * 1000)),
        ("grpc.http2.max_ping_strikes", 0),  # a client pinging within the policy is never dropped
        ("grpc.max_concurrent_streams", transport.max_concurrent_streams),
    ]


def results_base_url(config: ServiceConfig, http_port: int) -> str:
    """Where clients fetch results: `public_base_url`, else this host. A wildcard bind address
    (0.0.0.0, ::) is no address a client can use, so the host name stands in for it."""
    if config.public_base_url:
        return config.public_base_url
    host = config.host
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
        log.warning("results URLs use the host name %r; set public_base_url if clients cannot resolve it", host)
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{http_port}"


async def start_service(config: ServiceConfig, engine: Engine | None = None) -> RunningService:
    """Start everything and return once the gRPC port is listening."""
    http = ResultsHttpServer(config.storage_dir, config.host, config.http_port)
    http.start()
    base_url = results_base_url(config, http.port)
    storage = LocalStorage(config.storage_dir, base_url)
    engine = engine or create_engine(config)
    store = JobStore(config.db_path)
    queue = JobQueue(store, config.queue, JobRunner(engine, storage))

    server = grpc.aio.server(options=grpc_options(config.transport))
    readiness = Readiness(queue)
    servicer = VideoGenerationServicer(
        queue, _supports(engine), readiness.reason, max_media_bytes=config.media.max_bytes
    )
    add_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    await set_readiness(health_servicer, serving=False, reason="starting")  # until the first check says so
    await health_servicer.set(LIVENESS, _SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    await server.start()
    await queue.start()
    tasks = [
        asyncio.create_task(_report_health(engine, health_servicer, readiness, queue)),
        asyncio.create_task(_purge_expired(queue, storage, config.queue.retention_s)),
    ]
    log.info("serving gRPC on %s:%d, results over HTTP at %s", config.host, port, base_url)
    return RunningService(port, http.port, server, queue, tasks, http, store, health_servicer, readiness, config)


async def _report_health(
    engine: Engine, health_servicer: health.aio.HealthServicer, readiness: Readiness, queue: JobQueue
) -> None:
    """SERVING while the engine can take jobs (e.g. Triton reachable) and a worker is free of store
    failures; NOT_SERVING, with the reason logged, otherwise. The drain owns readiness once it starts."""
    last: str | None = "starting"
    while not queue.draining:
        readiness.engine_ready = await asyncio.to_thread(engine.ready)
        reason = readiness.reason()
        if reason != last and not queue.draining:
            await set_readiness(health_servicer, serving=reason is None, reason=reason)
            last = reason
        await asyncio.sleep(HEALTH_POLL_S)


async def _purge_expired(queue: JobQueue, storage: LocalStorage, retention_s: float) -> None:
    while True:
        try:
            for job_id in queue.purge_expired(retention_s):
                storage.delete(job_id)
                log.info("purged expired result", extra={"request_id": job_id})
        except Exception:  # a failing store (full disk) must not end the purge loop
            log.exception("purging expired results failed; retrying later")
        await asyncio.sleep(min(RETENTION_POLL_S, max(retention_s / 2, 0.5)))


async def serve_forever(config: ServiceConfig, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (SIGTERM), drain, then shut down."""
    running = await start_service(config)
    stop = stop or asyncio.Event()
    try:
        await stop.wait()
        await running.drain()
    finally:
        await running.stop()
