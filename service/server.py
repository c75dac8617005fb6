"""Assembles the service for its role: store, queue, engine, storage, gRPC server (health, reflection), HTTP.

`all` (the default) is one process doing everything; `gateway` serves the API from the shared store and
runs no jobs (no engine, no models); `worker` claims and runs jobs and serves only health.
Auth, TLS, the admin port and metrics live in their own modules (api/auth.py, api/tls.py,
api/rpc_metrics.py, observability/); this module only plugs them in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ltx.v1 import video_generation_pb2 as pb
from service.api import events
from service.api.auth import ApiKeyInterceptor
from service.api.rpc_metrics import RpcMetricsInterceptor
from service.api.servicer import VideoGenerationServicer, add_to_server
from service.api.tls import server_credentials
from service.config import Role, ServiceConfig, TransportConfig
from service.domain.specs import Endpoint
from service.engines.base import Engine
from service.engines.factory import create_engine
from service.jobs.job_metrics import instrumented
from service.jobs.open_store import open_store
from service.jobs.queue import JobQueue
from service.jobs.records import JobState
from service.jobs.runner import JobRunner
from service.jobs.sql_store import SqlJobStore
from service.jobs.uploads import UploadWriter
from service.jobs.webhooks import WebhookDispatcher, WebhookSigner
from service.observability import metrics
from service.security.api_keys import KeyRing, load_api_keys
from service.security.signing import UrlSigner
from service.storage.factory import ResultStorage, open_storage
from service.storage.local import ResultsHttpServer

if TYPE_CHECKING:
    # grpc_health-stubs lack `health.aio` (at run time it is this module); untyped, so Any to mypy.
    from grpc_health.v1._async import HealthServicer as AioHealthServicer

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VideoGeneration"].full_name
READINESS = "readiness"  # NOT_SERVING while the engine or the workers cannot take jobs, or draining
LIVENESS = "liveness"  # SERVING while the process runs; never depends on Triton or the store
FOLLOWING_READINESS = ("", SERVICE_NAME, READINESS)
HEALTH_POLL_S = 2.0
RETENTION_POLL_S = 60.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class RunningService:
    grpc_port: int
    http_port: int
    server: grpc.aio.Server
    queue: JobQueue
    tasks: list[asyncio.Task[None]]
    http: ResultsHttpServer
    store: SqlJobStore
    health: AioHealthServicer
    readiness: Readiness
    config: ServiceConfig = field(default_factory=ServiceConfig)
    admin_server: grpc.aio.Server | None = None  # health on the admin port stays up through the drain
    admin_port: int | None = None
    metrics_port: int | None = None
    unbind_metrics: Callable[[], None] = lambda: None  # the depth gauges stop reading the store
    webhooks: WebhookDispatcher | None = None  # its delivery in progress is interrupted at the stop

    async def drain(self) -> None:
        """SIGTERM: readiness NOT_SERVING and Submit UNAVAILABLE at once, then the queue's drain."""
        grace_s = self.config.shutdown.grace_s
        log.info("draining: running jobs get %.0f s to finish", grace_s)
        drain = asyncio.ensure_future(self.queue.drain(grace_s))  # sets the queue's draining flag now
        await set_readiness(self.health, serving=False, reason="draining")
        await drain

    async def stop(self) -> None:
        if self.webhooks is not None:
            self.webhooks.stop()
        for task in self.tasks:
            task.cancel()
        await self.server.stop(self.config.transport.graceful_stop_s)
        if self.admin_server is not None:
            await self.admin_server.stop(0)
        await self.queue.stop()
        self.http.stop()
        self.unbind_metrics()  # before the close: a scrape must not read a closed store
        self.store.close()
        log.info("stopped")


async def set_readiness(health_servicer: AioHealthServicer, *, serving: bool, reason: str | None) -> None:
    """Set every health name that follows readiness; the reason goes to the log."""
    status = _SERVING if serving else _NOT_SERVING
    for name in FOLLOWING_READINESS:
        await health_servicer.set(name, status)
    log.info("readiness: %s%s", "SERVING" if serving else "NOT_SERVING", f" ({reason})" if reason else "")


def _supports(engine: Engine) -> Callable[[Endpoint], bool]:
    check = getattr(engine, "supports", None)
    return check if callable(check) else (lambda endpoint: endpoint is Endpoint.TEXT_TO_VIDEO)


class Readiness:
    """Whether the service can take jobs, and why not: read by Submit without probing the backend."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self.engine_ready = False  # as the health loop last saw it
        self.engine_reason: str | None = None  # why not, when the engine says (e.g. a hung Triton model)

    def reason(self) -> str | None:
        """None when ready, else why not (shown to clients and logged)."""
        queue_reason = self._queue.unavailable_reason()
        if queue_reason is not None:
            return queue_reason
        if self.engine_ready:
            return None
        return self.engine_reason or "the inference backend is not reachable"


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


async def start_service(config: ServiceConfig, engine: Engine | None = None) -> RunningService:
    """Start everything the role needs and return once the gRPC port is listening."""
    store = await asyncio.to_thread(open_store, config)
    signer = webhook_signer(config)
    url_signer = UrlSigner.from_file(
        config.auth.url_signing_key_file,
        config.auth.result_url_ttl_s,
        Path(config.data_dir) / "url-signing.key",
    )
    storage, http = open_storage(config, jwks_file(config, signer), url_signer)
    config = trust_own_uploads(config, storage.upload_url_prefix())
    runs_jobs = config.role is not Role.GATEWAY
    if runs_jobs:
        engine = engine or create_engine(config)
        # A first readiness probe, off the event loop: a Triton engine learns its repository's endpoints
        # there (its `supports` never probes), so this worker claims only what the repository serves.
        await asyncio.to_thread(engine.ready)
        served = [e.value for e in Endpoint if _supports(engine)(e)]
        runner = JobRunner(engine, storage, config)
        queue = JobQueue(
            store,
            config.queue,
            instrumented(runner),
            endpoints=served,
            worker_id=config.queue.worker_id,
            workers=runner.max_in_flight,
            before_accelerator=runner.before_accelerator,
        )
    else:
        queue = JobQueue(store, config.queue, None)
    gateway_endpoints = GatewayEndpoints(store) if engine is None else None
    unbind_metrics = _bind_metrics(config, store)
    server = grpc.aio.server(options=grpc_options(config.transport), interceptors=_interceptors(config))
    readiness = Readiness(queue)
    if config.role is not Role.WORKER:
        supports = gateway_endpoints or _supports(engine)  # type: ignore[arg-type]
        servicer = VideoGenerationServicer(
            queue,
            supports,
            readiness.reason,
            upload=lambda name: UploadWriter(storage, config.max_upload_bytes, name),
            max_media_bytes=config.media.max_bytes,
            supports_loras=bool(getattr(engine, "applies_loras", True)),
            precondition=getattr(engine, "precondition_failure", None),
        )
        add_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # stub gap, see above
    await set_readiness(health_servicer, serving=False, reason="starting")  # until the first check says so
    await health_servicer.set(LIVENESS, _SERVING)
    _add_health_and_reflection(server, health_servicer)
    port = _listen(server, config)
    await server.start()
    admin_server, admin_port = await _start_admin(config, health_servicer)
    metrics_port = (
        metrics.serve_metrics(config.host, config.metrics.port) if config.metrics.port is not None else None
    )
    await queue.start()
    probe: Callable[[], bool] = gateway_endpoints.refresh if gateway_endpoints else engine.ready  # type: ignore[union-attr]
    webhooks = WebhookDispatcher(store, config.webhooks, signer, events.webhook_payload, config.media)
    tasks = [
        asyncio.create_task(
            _report_health(
                probe, health_servicer, readiness, queue, getattr(engine, "unready_reason", _no_reason)
            )
        ),
        asyncio.create_task(_purge_expired(queue, storage, config.queue.retention_s)),
        asyncio.create_task(webhooks.run_forever()),
    ]
    log.info(
        "%s serving gRPC on %s:%d (admin %s, metrics %s), results at %s",
        config.role,
        config.host,
        port,
        admin_port,
        metrics_port,
        storage.describe(),
    )
    return RunningService(
        port,
        http.port,
        server,
        queue,
        tasks,
        http,
        store,
        health_servicer,
        readiness,
        config,
        admin_server,
        admin_port,
        metrics_port,
        unbind_metrics,
        webhooks,
    )


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


def _add_health_and_reflection(server: grpc.aio.Server, health_servicer: AioHealthServicer) -> None:
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)


async def _start_admin(
    config: ServiceConfig, health_servicer: AioHealthServicer
) -> tuple[grpc.aio.Server | None, int | None]:
    """Plaintext health and reflection for kubelet probes, apart from the (maybe mTLS) API port."""
    if config.admin_port is None:
        return None, None
    admin = grpc.aio.server()
    _add_health_and_reflection(admin, health_servicer)
    port = admin.add_insecure_port(f"{config.host}:{config.admin_port}")
    await admin.start()
    return admin, port


def _bind_metrics(config: ServiceConfig, store: SqlJobStore) -> Callable[[], None]:
    """Returns the unbind, for `RunningService.stop` to call before it closes the store."""
    metrics.BUSY.configure(config.metrics.busy_window_s, config.queue.workers)
    return metrics.bind_queue_depth(store.queued_count, lambda: len(store.ids_in_state(JobState.RUNNING)))


def trust_own_uploads(config: ServiceConfig, prefix: str) -> ServiceConfig:
    """Inputs may name the service's own upload URLs even where those are on a private address."""
    return dataclasses.replace(
        config,
        media=dataclasses.replace(config.media, trusted_prefixes=(prefix,)),
        lora=dataclasses.replace(config.lora, trusted_prefixes=(prefix,)),
    )


def webhook_signer(config: ServiceConfig) -> WebhookSigner:
    """One key for the fleet when `webhooks.signing_key_file` names a shared file (a Secret)."""
    key_file = config.webhooks.signing_key_file or str(Path(config.data_dir) / "webhook_key.pem")
    return WebhookSigner(Path(key_file))


def jwks_file(config: ServiceConfig, signer: WebhookSigner) -> Path:
    path = Path(config.data_dir) / "jwks.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(signer.jwks()))
    return path


class GatewayEndpoints:
    """What a gateway accepts: the endpoints the live workers registered (any, before one has)."""

    ALIVE_S = 60.0

    def __init__(self, store: SqlJobStore) -> None:
        self._store = store
        self._served: set[str] | None = None

    def __call__(self, endpoint: Endpoint) -> bool:
        served = self._served
        return served is None or "*" in served or endpoint.value in served

    def refresh(self) -> bool:
        """Read the registry; True while the store answers (the gateway's readiness)."""
        try:
            self._served = self._store.served_endpoints(self.ALIVE_S)
        except Exception:
            log.exception("job store unreachable")
            return False
        return True


def _no_reason() -> str | None:
    return None


async def _report_health(
    probe: Callable[[], bool],
    health_servicer: AioHealthServicer,
    readiness: Readiness,
    queue: JobQueue,
    engine_reason: Callable[[], str | None] = lambda: None,
) -> None:
    """SERVING while the engine can take jobs (e.g. Triton reachable; for a gateway: the store answers)
    and a worker is free of store failures; NOT_SERVING, with the reason logged, otherwise. The drain
    owns readiness once it starts."""
    last: str | None = "starting"
    while not queue.draining:
        readiness.engine_ready = await asyncio.to_thread(probe)
        readiness.engine_reason = engine_reason()
        reason = readiness.reason()
        if reason != last and not queue.draining:
            await set_readiness(health_servicer, serving=reason is None, reason=reason)
            last = reason
        await asyncio.sleep(HEALTH_POLL_S)


async def _purge_expired(queue: JobQueue, storage: ResultStorage, retention_s: float) -> None:
    while True:
        try:
            for job_id in await asyncio.to_thread(queue.purge_expired, retention_s):
                await asyncio.to_thread(storage.delete, job_id)
                log.info("purged expired result", extra={"request_id": job_id})
            await asyncio.to_thread(storage.purge_uploads, time.time() - retention_s)
        except Exception:
            log.exception("retention sweep failed; retrying")
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
