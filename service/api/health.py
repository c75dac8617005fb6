"""gRPC health for Kubernetes: `liveness` and `readiness` service names, and the overall ones.

- `liveness` is SERVING from start-up until shutdown: it answers while the event loop does and never
  depends on Triton or the job store (a full queue or a down backend must not get the pod restarted).
- `readiness` is SERVING only while the engine is ready, the store answers and the pod is not draining.
  The overall `""` and `ltx.v1.VideoGeneration` follow readiness.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from grpc_health.v1 import health, health_pb2

from ltx.v1 import video_generation_pb2 as pb

log = logging.getLogger(__name__)

LIVENESS = "liveness"
READINESS = "readiness"
API_SERVICE = pb.DESCRIPTOR.services_by_name["VideoGeneration"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthState:
    """What readiness depends on; callable as the servicer's "is the backend ready" check."""

    def __init__(self, servicer: health.aio.HealthServicer) -> None:
        self.servicer = servicer
        self.engine_ready = False
        self.store_ready = True
        self.draining = False
        self._published: int | None = None

    def __call__(self) -> bool:
        return self.engine_ready

    @property
    def ready(self) -> bool:
        return self.engine_ready and self.store_ready and not self.draining

    async def start(self) -> None:
        await self.servicer.set(LIVENESS, SERVING)
        await self.publish()

    async def update(self, *, engine: bool | None = None, store: bool | None = None, draining: bool | None = None) -> None:
        self.engine_ready = self.engine_ready if engine is None else engine
        self.store_ready = self.store_ready if store is None else store
        self.draining = self.draining if draining is None else draining
        await self.publish()

    async def publish(self) -> None:
        status = SERVING if self.ready else NOT_SERVING
        if status == self._published:
            return
        for name in ("", API_SERVICE, READINESS):
            await self.servicer.set(name, status)
        self._published = status
        log.info(
            "readiness: %s (engine %s, store %s, draining %s)",
            health_pb2.HealthCheckResponse.ServingStatus.Name(status),
            self.engine_ready, self.store_ready, self.draining,
        )

    async def stop(self) -> None:
        await self.servicer.enter_graceful_shutdown()  # every name NOT_SERVING, liveness included


async def watch_dependencies(
    state: HealthState, engine_ready: Callable[[], bool], store_ready: Callable[[], bool], poll_s: float
) -> None:
    """Poll the engine and the store off the event loop; a probe that raises counts as not ready."""

    def safely(check: Callable[[], bool]) -> bool:
        try:
            return bool(check())
        except Exception:
            log.warning("health check %s failed", getattr(check, "__name__", check), exc_info=True)
            return False

    while True:
        engine_ok, store_ok = await asyncio.gather(
            asyncio.to_thread(safely, engine_ready), asyncio.to_thread(safely, store_ready)
        )
        await state.update(engine=engine_ok, store=store_ok)
        await asyncio.sleep(poll_s)
