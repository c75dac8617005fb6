"""The job store's logic, written once for SQLite and PostgreSQL.

Every statement is plain SQL both engines run (`?` placeholders; PostgreSQL's subclass rewrites them).
The two differences that matter for correctness are hooks: `_skip_locked` (PostgreSQL claims and sweeps
with `FOR UPDATE SKIP LOCKED`, so concurrent replicas never take the same row; SQLite has one writer) and
`notify`/`listen` (PostgreSQL's LISTEN/NOTIFY between processes; SQLite calls back in-process).

Each state change is one atomic statement whose WHERE clause re-checks the state it expects, so two
replicas racing on a job (a cancel and a claim, two reapers, a late worker and the reaper) cannot both win.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from service.domain.errors import ErrorType
from service.jobs.migrations import Dialect
from service.jobs.records import JobRecord, JobState, LogEntry, Priority

# (kind, job_id): "new", "state", "cancel", "progress", "log"; job_id is "" for "new".
Listener = Callable[[str, str], None]

_COLUMNS = (
    "job_id, endpoint, spec_json, state, created_at, started_at, completed_at, error_type, error_message, "
    "output_json, cancel_requested, priority, worker_id, lease_expires_at, runs, retries, webhook_url, "
    "idempotency_key, input_hash, start_deadline"
)
_FINISHED = tuple(s.value for s in JobState if s.finished)


@dataclass(frozen=True)
class NewJob:
    """What Submit stores besides the spec: queue options of the specs' queue API."""

    priority: Priority = Priority.NORMAL
    start_deadline: float | None = None  # wall-clock time after which it must not start
    idempotency_key: str | None = None
    input_hash: str | None = None
    webhook_url: str | None = None


class SqlJobStore(ABC):
    dialect: Dialect
    shared: bool  # other processes use this store too (leases decide who owns a running job)

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()

    # ---- dialect hooks ----

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement in its own transaction: (rows, rowcount)."""

    @abstractmethod
    def notify(self, kind: str, job_id: str = "") -> None:
        """Tell every process following this store that a job changed."""

    @abstractmethod
    def close(self) -> None: ...

    _skip_locked = ""  # appended to row-picking subqueries
    _log_order = "id"  # the logs table's insertion order (SQLite's first schema had only its rowid)

    def listen(self, listener: Listener) -> None:
        with self._listeners_lock:
            self._listeners.append(listener)

    def _deliver(self, kind: str, job_id: str) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(kind, job_id)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._execute(sql, params)[0]

    # ---- submit and read ----

    def insert(
        self, job_id: str, endpoint: str, spec_json: str, new: NewJob | None = None
    ) -> JobRecord | None:
        """Queue a job; None when `new.idempotency_key` is already taken (the caller looks it up)."""
        new = new or NewJob()
        now = time.time()
        rows = self._rows(
            "INSERT INTO jobs (job_id, endpoint, spec_json, state, created_at, priority, start_deadline, "
            "idempotency_key, input_hash, webhook_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING RETURNING " + _COLUMNS,
            (
                job_id,
                endpoint,
                spec_json,
                JobState.QUEUED.value,
                now,
                new.priority.rank,
                new.start_deadline,
                new.idempotency_key,
                new.input_hash,
                new.webhook_url,
            ),
        )
        return _record(rows[0]) if rows else None

    def get(self, job_id: str) -> JobRecord | None:
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,))
        return _record(rows[0]) if rows else None

    def by_idempotency_key(self, key: str) -> JobRecord | None:
        rows = self._rows(f"SELECT {_COLUMNS} FROM jobs WHERE idempotency_key = ?", (key,))
        return _record(rows[0]) if rows else None

    def queued_count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM jobs WHERE state = ?", (JobState.QUEUED.value,))[0][0])

    def queue_position(self, job_id: str) -> int:
        """Queued jobs that will be claimed before this one, over every replica."""
        rows = self._rows(
            "SELECT COUNT(*) FROM jobs j, (SELECT priority AS p, seq AS s FROM jobs WHERE job_id = ?) me "
            "WHERE j.state = ? AND (j.priority < me.p OR (j.priority = me.p AND j.seq < me.s))",
            (job_id, JobState.QUEUED.value),
        )
        return int(rows[0][0]) if rows else 0

    def queued_ids(self) -> list[str]:
        """Queued jobs in the order they will be claimed."""
        rows = self._rows(
            "SELECT job_id FROM jobs WHERE state = ? ORDER BY priority, seq", (JobState.QUEUED.value,)
        )
        return [r[0] for r in rows]

    def ids_in_state(self, state: JobState) -> list[str]:
        return [
            r[0] for r in self._rows("SELECT job_id FROM jobs WHERE state = ? ORDER BY seq", (state.value,))
        ]

    # ---- claims and leases ----

    def claim_next(
        self, worker_id: str, lease_s: float, endpoints: Iterable[str] | None = None
    ) -> JobRecord | None:
        """Move the first queued job (priority, then FIFO) this worker serves to RUNNING under its lease."""
        now = time.time()
        served = list(endpoints) if endpoints is not None else None
        endpoint_filter = f" AND endpoint IN ({', '.join('?' * len(served))})" if served else ""
        pick = (
            "SELECT seq FROM jobs WHERE state = ? AND (start_deadline IS NULL OR start_deadline >= ?)"
            f"{endpoint_filter} ORDER BY priority, seq LIMIT 1{self._skip_locked}"
        )
        rows = self._rows(
            "UPDATE jobs SET state = ?, started_at = ?, worker_id = ?, lease_expires_at = ?, runs = runs + 1 "
            f"WHERE seq = ({pick}) AND state = ? RETURNING {_COLUMNS}",
            (
                JobState.RUNNING.value,
                now,
                worker_id,
                now + lease_s,
                JobState.QUEUED.value,
                now,
                *(served or []),
                JobState.QUEUED.value,
            ),
        )
        return _record(rows[0]) if rows else None

    def renew_leases(self, worker_id: str, job_ids: Sequence[str], lease_s: float) -> dict[str, bool]:
        """Extend this worker's leases; returns {job_id: cancel_requested} for the jobs it still owns."""
        if not job_ids:
            return {}
        marks = ", ".join("?" * len(job_ids))
        rows = self._rows(
            f"UPDATE jobs SET lease_expires_at = ? WHERE worker_id = ? AND state = ? AND job_id IN ({marks}) "
            "RETURNING job_id, cancel_requested",
            (time.time() + lease_s, worker_id, JobState.RUNNING.value, *job_ids),
        )
        return {r[0]: bool(r[1]) for r in rows}

    def reap_expired_leases(self, max_retries: int) -> tuple[list[str], list[str]]:
        """Running jobs whose worker stopped renewing: re-queued (same spec, so the same seed) with one more
        retry, or failed as retries_exhausted past the cap. Returns (requeued, exhausted)."""
        now = time.time()
        exhausted = self._rows(
            "UPDATE jobs SET state = ?, completed_at = ?, error_type = ?, error_message = ?, worker_id = NULL "
            "WHERE state = ? AND lease_expires_at < ? AND retries >= ? RETURNING job_id",
            (
                JobState.FAILED.value,
                now,
                ErrorType.RETRIES_EXHAUSTED.value,
                f"the job was interrupted more than {max_retries} times (queue.max_retries)",
                JobState.RUNNING.value,
                now,
                max_retries,
            ),
        )
        requeued = self._rows(
            "UPDATE jobs SET state = ?, started_at = NULL, worker_id = NULL, lease_expires_at = NULL, "
            "retries = retries + 1 WHERE state = ? AND lease_expires_at < ? RETURNING job_id",
            (JobState.QUEUED.value, JobState.RUNNING.value, now),
        )
        return [r[0] for r in requeued], [r[0] for r in exhausted]

    def requeue(self, job_id: str, *, count_retry: bool = True, worker_id: str | None = None) -> bool:
        """Put a running job back in the queue; with `worker_id`, only while that worker holds it."""
        owner = " AND worker_id = ?" if worker_id is not None else ""
        _, count = self._execute(
            "UPDATE jobs SET state = ?, started_at = NULL, worker_id = NULL, lease_expires_at = NULL, "
            f"retries = retries + ? WHERE job_id = ? AND state = ?{owner}",
            (
                JobState.QUEUED.value,
                1 if count_retry else 0,
                job_id,
                JobState.RUNNING.value,
                *([worker_id] if worker_id is not None else []),
            ),
        )
        return count == 1

    def expire_start_timeouts(self) -> list[str]:
        """Queued jobs past their start deadline end as start_timeout, never having started."""
        now = time.time()
        rows = self._rows(
            "UPDATE jobs SET state = ?, completed_at = ?, error_type = ?, error_message = ? "
            "WHERE state = ? AND start_deadline IS NOT NULL AND start_deadline < ? RETURNING job_id",
            (
                JobState.FAILED.value,
                now,
                ErrorType.START_TIMEOUT.value,
                "the request waited in the queue past its start timeout",
                JobState.QUEUED.value,
                now,
            ),
        )
        return [r[0] for r in rows]

    # ---- endings ----

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        worker_id: str | None = None,
        output_json: str | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> bool:
        """End a job that has not ended. With `worker_id`, only while that worker holds it (a worker whose
        lease was taken over cannot complete the job a second time)."""
        owner = " AND worker_id = ?" if worker_id is not None else ""
        marks = ", ".join("?" * len(_FINISHED))
        _, count = self._execute(
            "UPDATE jobs SET state = ?, completed_at = ?, output_json = ?, error_type = ?, error_message = ? "
            f"WHERE job_id = ? AND state NOT IN ({marks}){owner}",
            (
                state.value,
                time.time(),
                output_json,
                error_type,
                error_message,
                job_id,
                *_FINISHED,
                *([worker_id] if worker_id is not None else []),
            ),
        )
        return count == 1

    def finish_if_queued(self, job_id: str, state: JobState, error_type: str, message: str) -> bool:
        """Finish a job only if it is still queued (a cancel racing a worker's claim loses cleanly)."""
        _, count = self._execute(
            "UPDATE jobs SET state = ?, completed_at = ?, error_type = ?, error_message = ? "
            "WHERE job_id = ? AND state = ?",
            (state.value, time.time(), error_type, message, job_id, JobState.QUEUED.value),
        )
        return count == 1

    def mark_cancel_requested(self, job_id: str) -> None:
        self._execute("UPDATE jobs SET cancel_requested = 1 WHERE job_id = ?", (job_id,))

    # ---- logs and progress ----

    def add_log(self, job_id: str, message: str, level: str = "info") -> LogEntry:
        entry = LogEntry(time.time(), level, message)
        self._execute(
            "INSERT INTO logs (job_id, timestamp, level, message) VALUES (?, ?, ?, ?)",
            (job_id, entry.timestamp, level, message),
        )
        return entry

    def logs(self, job_id: str, skip: int = 0) -> list[LogEntry]:
        limit = " LIMIT -1" if self.dialect is Dialect.SQLITE else ""  # SQLite needs a LIMIT before OFFSET
        rows = self._rows(
            f"SELECT timestamp, level, message FROM logs WHERE job_id = ? ORDER BY {self._log_order}{limit} OFFSET ?",
            (job_id, skip),
        )
        return [LogEntry(*r) for r in rows]

    def add_progress(self, job_id: str, run: int, report: dict[str, Any]) -> None:
        self._execute(
            "INSERT INTO progress (job_id, run, report_json) VALUES (?, ?, ?)",
            (job_id, run, json.dumps(report)),
        )

    def progress(self, job_id: str, run: int, skip: int = 0) -> list[dict[str, Any]]:
        """Progress reports of one run of the job, from the `skip`-th on."""
        rows = self._rows(
            "SELECT report_json FROM progress WHERE job_id = ? AND run = ? ORDER BY id", (job_id, run)
        )
        return [json.loads(r[0]) for r in rows[skip:]]

    def latest_progress(self, job_id: str, run: int) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT report_json FROM progress WHERE job_id = ? AND run = ? ORDER BY id DESC LIMIT 1",
            (job_id, run),
        )
        return json.loads(rows[0][0]) if rows else None

    # ---- retention ----

    def purge_expired(self, before: float, limit: int = 100) -> list[str]:
        """Delete finished jobs completed before `before`; each is returned to exactly one caller, which
        then deletes its stored files."""
        rows = self._rows(
            "DELETE FROM jobs WHERE job_id IN (SELECT job_id FROM jobs WHERE completed_at IS NOT NULL AND "
            f"completed_at < ? LIMIT ?{self._skip_locked}) RETURNING job_id",
            (before, limit),
        )
        ids = [r[0] for r in rows]
        for job_id in ids:
            self._delete_children(job_id)
        return ids

    def expired(self, before: float) -> list[str]:
        rows = self._rows(
            "SELECT job_id FROM jobs WHERE completed_at IS NOT NULL AND completed_at < ?", (before,)
        )
        return [r[0] for r in rows]

    def delete(self, job_id: str) -> None:
        self._delete_children(job_id)
        self._execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def _delete_children(self, job_id: str) -> None:
        for table in ("logs", "progress", "webhooks"):
            self._execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))

    # ---- webhooks (durable: a delivery row per finished job that asked for one) ----

    def enqueue_webhooks(self) -> int:
        """Give every finished job with a webhook_url its delivery row (once, whoever finished it)."""
        marks = ", ".join("?" * len(_FINISHED))
        _, count = self._execute(
            "INSERT INTO webhooks (job_id, url, state, next_attempt_at) SELECT job_id, webhook_url, 'pending', ? "
            f"FROM jobs WHERE webhook_url IS NOT NULL AND state IN ({marks}) AND NOT EXISTS "
            "(SELECT 1 FROM webhooks w WHERE w.job_id = jobs.job_id) ON CONFLICT DO NOTHING",
            (time.time(), *_FINISHED),
        )
        return max(count, 0)

    def claim_due_webhooks(self, lock_s: float, limit: int = 16) -> list[tuple[str, str, int]]:
        """Deliveries due now, locked for `lock_s` to this caller: [(job_id, url, attempts so far)]."""
        now = time.time()
        rows = self._rows(
            "UPDATE webhooks SET locked_until = ? WHERE job_id IN (SELECT job_id FROM webhooks WHERE state = "
            "'pending' AND next_attempt_at <= ? AND (locked_until IS NULL OR locked_until < ?) LIMIT ?"
            f"{self._skip_locked}) RETURNING job_id, url, attempts",
            (now + lock_s, now, now, limit),
        )
        return [(r[0], r[1], int(r[2])) for r in rows]

    def record_webhook_attempt(
        self, job_id: str, *, delivered: bool, error: str | None, next_attempt_at: float | None
    ) -> None:
        """One attempt's outcome: delivered, retry at `next_attempt_at`, or (None) failed for good."""
        state = "delivered" if delivered else ("pending" if next_attempt_at is not None else "failed")
        self._execute(
            "UPDATE webhooks SET state = ?, attempts = attempts + 1, last_error = ?, next_attempt_at = ?, "
            "delivered_at = ?, locked_until = NULL WHERE job_id = ?",
            (state, error, next_attempt_at or time.time(), time.time() if delivered else None, job_id),
        )

    def release_webhook(self, job_id: str) -> None:
        """Unlock a claimed delivery without counting an attempt (its dispatcher is shutting down)."""
        self._execute("UPDATE webhooks SET locked_until = NULL WHERE job_id = ?", (job_id,))

    def webhook(self, job_id: str) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT url, state, attempts, last_error, next_attempt_at, delivered_at FROM webhooks WHERE job_id = ?",
            (job_id,),
        )
        if not rows:
            return None
        keys = ("url", "state", "attempts", "last_error", "next_attempt_at", "delivered_at")
        return dict(zip(keys, rows[0], strict=True))

    # ---- workers ----

    def register_worker(self, worker_id: str, endpoints: Sequence[str]) -> None:
        """Upsert this worker's heartbeat and the endpoints it serves (gateways accept those)."""
        self._execute(
            "INSERT INTO workers (worker_id, endpoints_json, heartbeat_at) VALUES (?, ?, ?) "
            "ON CONFLICT (worker_id) DO UPDATE SET endpoints_json = excluded.endpoints_json, "
            "heartbeat_at = excluded.heartbeat_at",
            (worker_id, json.dumps(sorted(endpoints)), time.time()),
        )

    def served_endpoints(self, alive_within_s: float) -> set[str] | None:
        """Endpoints some live worker serves; None when no worker has registered lately."""
        rows = self._rows(
            "SELECT endpoints_json FROM workers WHERE heartbeat_at >= ?", (time.time() - alive_within_s,)
        )
        if not rows:
            return None
        return {e for (blob,) in rows for e in json.loads(blob)}

    def unregister_worker(self, worker_id: str) -> None:
        self._execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))


def _record(row: tuple[Any, ...]) -> JobRecord:
    (
        job_id,
        endpoint,
        spec_json,
        state,
        created,
        started,
        completed,
        etype,
        emsg,
        out,
        cancel,
        priority,
        worker_id,
        lease,
        runs,
        retries,
        webhook_url,
        key,
        input_hash,
        start_deadline,
    ) = row
    return JobRecord(
        job_id,
        endpoint,
        spec_json,
        JobState(state),
        created,
        started,
        completed,
        etype,
        emsg,
        out,
        bool(cancel),
        priority=Priority.from_rank(priority),
        worker_id=worker_id,
        lease_expires_at=lease,
        runs=runs,
        retries=retries,
        webhook_url=webhook_url,
        idempotency_key=key,
        input_hash=input_hash,
        start_deadline=start_deadline,
    )
