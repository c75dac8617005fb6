"""Prometheus metrics of the service, on one registry served at the admin side's /metrics.

Metric objects are module-level (like prometheus-client's own default registry) so that any layer can
count without a metrics object threaded through its constructors; only gauges that read live state
(queue depth, busy ratio) are bound at start-up with `bind_queue_depth` (unbound at stop) and `BUSY`.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()
log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

# Video jobs take seconds to hours; RPCs take microseconds to seconds.
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

JOBS_QUEUED = Gauge("ltx_jobs_queued", "Jobs waiting in the queue", registry=REGISTRY)
JOBS_RUNNING = Gauge("ltx_jobs_running", "Jobs being run by a worker", registry=REGISTRY)
JOBS_FINISHED = Counter(
    "ltx_jobs_total",
    "Jobs that finished, by endpoint, final status and error type ('' when none)",
    ["endpoint", "status", "error_type"],
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "ltx_job_stage_duration_seconds",
    "Time a job spent in each stage: prepare (inputs, prompt), generate (accelerator), finish (encode, store)",
    ["endpoint", "stage"],
    buckets=STAGE_BUCKETS,
    registry=REGISTRY,
)
ACCELERATOR_BUSY_SECONDS = Counter(
    "ltx_accelerator_busy_seconds", "Seconds the accelerator slots spent generating", registry=REGISTRY
)
ACCELERATOR_BUSY_RATIO = Gauge(
    "ltx_accelerator_busy_ratio",
    "Fraction of the accelerator slots' time spent generating over the last metrics.busy_window_s",
    registry=REGISTRY,
)
FETCHED_BYTES = Counter(
    "ltx_fetched_bytes",
    "Bytes fetched for job inputs, by kind (media: images and videos; download: LoRA files)",
    ["kind"],
    registry=REGISTRY,
)
FETCH_FAILURES = Counter(
    "ltx_fetch_failures", "Input fetches that failed, by kind (media, download)", ["kind"], registry=REGISTRY
)
WEBHOOK_DELIVERIES = Counter(
    "ltx_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, failed)",
    ["outcome"],
    registry=REGISTRY,
)
AUTH_CHECKS = Counter(
    "ltx_auth_requests",
    "Authenticated calls by API key name and outcome (ok, unauthenticated, permission_denied)",
    ["key", "outcome"],
    registry=REGISTRY,
)
RPC_STARTED = Counter(
    "grpc_server_started", "RPCs started on the server", ["grpc_service", "grpc_method"], registry=REGISTRY
)
RPC_HANDLED = Counter(
    "grpc_server_handled",
    "RPCs completed on the server, by status code",
    ["grpc_service", "grpc_method", "grpc_code"],
    registry=REGISTRY,
)
RPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its status (whole stream for server-streaming calls)",
    ["grpc_service", "grpc_method"],
    buckets=RPC_BUCKETS,
    registry=REGISTRY,
)


class QueueDepth:
    """What the depth gauges read at scrape time: the running service's store, or nothing (0).

    The gauges live as long as the process, a store only as long as its service, so the binding is
    handed back (`bind` returns the unbind) before the store is closed; a scrape never reads a
    closed store, and a store that fails to answer reads NaN instead of failing the whole scrape.
    """

    def __init__(self) -> None:
        self._reads: tuple[Callable[[], int], Callable[[], int]] | None = None
        self._lock = threading.Lock()

    def bind(self, queued: Callable[[], int], running: Callable[[], int]) -> Callable[[], None]:
        reads = (queued, running)
        with self._lock:
            self._reads = reads

        def unbind() -> None:
            with self._lock:
                if self._reads is reads:  # a later service's binding stays
                    self._reads = None

        return unbind

    def read(self, which: int) -> float:
        with self._lock:
            reads = self._reads
        if reads is None:
            return 0.0
        try:
            return float(reads[which]())
        except Exception:
            log.warning("queue depth unreadable from the job store", exc_info=True)
            return math.nan


QUEUE_DEPTH = QueueDepth()
JOBS_QUEUED.set_function(lambda: QUEUE_DEPTH.read(0))
JOBS_RUNNING.set_function(lambda: QUEUE_DEPTH.read(1))


def bind_queue_depth(queued: Callable[[], int], running: Callable[[], int]) -> Callable[[], None]:
    """Read the depth from the store at scrape time, so every replica reports the shared queue.

    Returns the unbind, to call before the store is closed."""
    return QUEUE_DEPTH.bind(queued, running)


class BusyTracker:
    """Busy intervals of the accelerator slots; the ratio is busy time / (window x slots)."""

    def __init__(
        self, window_s: float = 60.0, slots: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.slots = max(slots, 1)
        self._clock = clock
        self._done: deque[tuple[float, float]] = deque()
        self._open: dict[int, float] = {}
        self._tokens = itertools.count()
        self._lock = threading.Lock()  # begin/end run in worker threads, ratio in the scrape thread

    def configure(self, window_s: float, slots: int) -> None:
        with self._lock:
            self.window_s, self.slots = window_s, max(slots, 1)

    def begin(self) -> int:
        with self._lock:
            token = next(self._tokens)
            self._open[token] = self._clock()
            return token

    def end(self, token: int) -> None:
        with self._lock:
            start = self._open.pop(token, None)
            if start is not None:
                now = self._clock()
                self._done.append((start, now))
                ACCELERATOR_BUSY_SECONDS.inc(now - start)

    def ratio(self) -> float:
        with self._lock:
            now = self._clock()
            since = now - self.window_s
            while self._done and self._done[0][1] < since:
                self._done.popleft()
            intervals = list(self._done) + [(start, now) for start in self._open.values()]
            busy = sum(max(0.0, end - max(start, since)) for start, end in intervals)
            return min(1.0, busy / (self.window_s * self.slots))


BUSY = BusyTracker()
ACCELERATOR_BUSY_RATIO.set_function(BUSY.ratio)


def serve_metrics(host: str, port: int) -> int:
    """Start the /metrics HTTP server in a daemon thread; returns the port (useful when `port` is 0)."""
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return int(server.server_address[1])


def counted_fetch(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Count a fetch function's bytes (its result: a size, or an object with `.data`) and failures."""

    def wrap(fetch: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fetch)
        def counted(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                result = fetch(*args, **kwargs)
            except Exception:
                FETCH_FAILURES.labels(kind).inc()
                raise
            data = getattr(result, "data", None)
            FETCHED_BYTES.labels(kind).inc(len(data) if isinstance(data, bytes) else float(result))  # type: ignore[arg-type]
            return result

        return counted

    return wrap
