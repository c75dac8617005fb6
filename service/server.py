"""Assembles the service: store, queue, engine, storage, gRPC server (health, reflection), HTTP.

Security and observability live in their own modules (api/auth.py, api/tls.py, api/health.py,
api/rpc_metrics.py, observability/); this module only plugs them in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.api.auth import ApiKeyInterceptor
from service.api.health import HealthState, watch_dependencies
from service.api.rpc_metrics import RpcMetricsInterceptor
from service.api.servicer import VideoGenerationServicer
from service.api.tls import server_credentials
from service.config import ServiceConfig
from service.domain.specs import Endpoint
from service.engines.base import Engine
from service.engines.factory import create_engine
from service.jobs.queue import JobQueue
from service.jobs.records import JobState
from service.jobs.runner import JobRunner
from service.jobs.store import JobStore
from service.observability import metrics
from service.observability.job_metrics import instrumented
from service.security.api_keys import KeyRing, load_api_keys
from service.security.signing import UrlSigner
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
    health: HealthState | None = None
    admin_server: grpc.aio.Server | None = None
    admin_port: int | None = None
    metrics_port: int | None = None

    async def stop(self, grace_s: float = 2.0) -> None:
        for task in self.tasks:
            task.cancel()
        if self.health is not None:
            await self.health.stop()
        await self.server.stop(grace_s)
        if self.admin_server is not None:
            await self.admin_server.stop(0)
        await self.queue.stop()
        self.http.stop()
        self.store.close()


def _supports(engine: Engine) -> Callable[[Endpoint], bool]:
    check = getattr(engine, "supports", None)
    return check if callable(check) else (lambda endpoint: endpoint is Endpoint.TEXT_TO_VIDEO)


async def start_service(config: ServiceConfig, engine: Engine | None = None) -> RunningService:
    """Start everything and return once the gRPC port is listening."""
    signer = UrlSigner.from_file(
        config.auth.url_signing_key_file, config.auth.result_url_ttl_s, Path(config.data_dir) / "url-signing.key"
    )
    http = ResultsHttpServer(config.storage_dir, config.host, config.http_port, signer)
    http.start()
    base_url = config.public_base_url or f"http://{config.host}:{http.port}"
    storage = LocalStorage(config.storage_dir, base_url, signer)
    engine = engine or create_engine(config)
    store = JobStore(config.db_path)
    queue = JobQueue(store, config.queue, instrumented(JobRunner(engine, storage)))
    _bind_metrics(config, store)

    server = grpc.aio.server(interceptors=_interceptors(config))
    health_servicer = health.aio.HealthServicer()
    health_state = HealthState(health_servicer)
    servicer = VideoGenerationServicer(queue, _supports(engine), health_state)
    pb_grpc.add_VideoGenerationServicer_to_server(servicer, server)
    _add_health_and_reflection(server, health_servicer)
    port = _listen(server, config)
    await health_state.start()  # liveness SERVING; readiness not until the first check says so
    await server.start()
    admin_server, admin_port = await _start_admin(config, health_servicer)
    metrics_port = metrics.serve_metrics(config.host, config.metrics.port) if config.metrics.port is not None else None
    await queue.start()
    tasks = [
        asyncio.create_task(watch_dependencies(health_state, engine.ready, lambda: store.queued_ids() is not None, HEALTH_POLL_S)),
        asyncio.create_task(_purge_expired(queue, storage, config.queue.retention_s)),
    ]
    log.info("serving gRPC on %s:%d (admin %s, metrics %s), results over HTTP at %s",
             config.host, port, admin_port, metrics_port, base_url)
    return RunningService(port, http.port, server, queue, tasks, http, store, health_state, admin_server,
                          admin_port, metrics_port)


def _interceptors(config: ServiceConfig) -> list[grpc.aio.ServerInterceptor]:
    """Metrics first (outermost), so refused calls are counted too."""
    chain: list[grpc.aio.ServerInterceptor] = [RpcMetricsInterceptor()]
    if config.auth.api_keys_file:
        chain.append(ApiKeyInterceptor(KeyRing(load_api_keys(config.auth.api_keys_file))))
    return chain


def _listen(server: grpc.aio.Server, config: ServiceConfig) -> int:
    address = f"{config.host}:{config.port}"
    credentials = server_credentials(config.auth)
    return server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)


def _add_health_and_reflection(server: grpc.aio.Server, health_servicer: health.aio.HealthServicer) -> None:
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)


async def _start_admin(
    config: ServiceConfig, health_servicer: health.aio.HealthServicer
) -> tuple[grpc.aio.Server | None, int | None]:
    """Plaintext health and reflection for kubelet probes, apart from the (maybe mTLS) API port."""
    if config.admin_port is None:
        return None, None
    admin = grpc.aio.server()
    _add_health_and_reflection(admin, health_servicer)
    port = admin.add_insecure_port(f"{config.host}:{config.admin_port}")
    await admin.start()
    return admin, port


def _bind_metrics(config: ServiceConfig, store: JobStore) -> None:
    metrics.bind_queue_depth(lambda: len(store.queued_ids()), lambda: len(store.ids_in_state(JobState.RUNNING)))
    metrics.BUSY.configure(config.metrics.busy_window_s, config.queue.workers)


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
