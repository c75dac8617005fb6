"""Durable job records in SQLite, so a killed and restarted service loses no accepted job.

Every state change is committed before it is acknowledged (WAL mode: a process kill loses nothing that
was committed). Calls are short; the queue calls them from its event loop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from service.jobs.records import JobRecord, JobState, LogEntry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order
    job_id TEXT UNIQUE NOT NULL,
    endpoint TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    completed_at REAL,
    error_type TEXT,
    error_message TEXT,
    output_json TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0  -- how often a worker claimed it (the retry cap counts these)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS logs (
    job_id TEXT NOT NULL,
    timestamp REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_job ON logs (job_id);
"""

_COLUMNS = (
    "job_id, endpoint, spec_json, state, created_at, started_at, completed_at, "
    "error_type, error_message, output_json, cancel_requested, attempts"
)


class JobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()  # one connection, used from the loop and from worker threads
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Databases written before the retry cap lack `attempts`: add it (counting from zero)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "attempts" not in columns:
            self._db.execute("ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, job_id: str, endpoint: str, spec_json: str) -> JobRecord:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (job_id, endpoint, spec_json, state, created_at) VALUES (?, ?, ?, ?, ?)",
                (job_id, endpoint, spec_json, JobState.QUEUED.value, now),
            )
        return JobRecord(job_id, endpoint, spec_json, JobState.QUEUED, now)

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _record(row) if row else None

    def queued_ids(self) -> list[str]:
        """Queued jobs in the order they will run."""
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id FROM jobs WHERE state = ? ORDER BY seq", (JobState.QUEUED.value,)
            ).fetchall()
        return [r[0] for r in rows]

    def ids_in_state(self, state: JobState) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT job_id FROM jobs WHERE state = ? ORDER BY seq", (state.value,))
            return [r[0] for r in rows.fetchall()]

    def claim_next(self) -> JobRecord | None:
        """Atomically move the oldest queued job to RUNNING, count the attempt and return it."""
        with self._lock:
            row = self._db.execute(
                "UPDATE jobs SET state = ?, started_at = ?, attempts = attempts + 1 WHERE seq = "
                "(SELECT seq FROM jobs WHERE state = ? ORDER BY seq LIMIT 1) RETURNING " + _COLUMNS,
                (JobState.RUNNING.value, time.time(), JobState.QUEUED.value),
            ).fetchone()
        return _record(row) if row else None

    def requeue(self, job_id: str, *, refund_attempt: bool = False) -> None:
        """Back to QUEUED. `refund_attempt`: the run was stopped by a drain, not by the job, so it does
        not count towards the retry cap."""
        refund = 1 if refund_attempt else 0
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = ?, started_at = NULL, attempts = MAX(attempts - ?, 0) "
                "WHERE job_id = ? AND state = ?",
                (JobState.QUEUED.value, refund, job_id, JobState.RUNNING.value),
            )

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        output_json: str | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = ?, completed_at = ?, output_json = ?, error_type = ?, "
                "error_message = ? WHERE job_id = ?",
                (state.value, time.time(), output_json, error_type, error_message, job_id),
            )

    def finish_if_queued(self, job_id: str, state: JobState, error_type: str, message: str) -> bool:
        """Finish a job only if it is still queued (a cancel racing a worker's claim loses cleanly)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET state = ?, completed_at = ?, error_type = ?, error_message = ? "
                "WHERE job_id = ? AND state = ?",
                (state.value, time.time(), error_type, message, job_id, JobState.QUEUED.value),
            )
        return cur.rowcount == 1

    def mark_cancel_requested(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET cancel_requested = 1 WHERE job_id = ?", (job_id,))

    def add_log(self, job_id: str, message: str, level: str = "info") -> LogEntry:
        entry = LogEntry(time.time(), level, message)
        with self._lock:
            self._db.execute(
                "INSERT INTO logs (job_id, timestamp, level, message) VALUES (?, ?, ?, ?)",
                (job_id, entry.timestamp, level, message),
            )
        return entry

    def logs(self, job_id: str, skip: int = 0) -> list[LogEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT timestamp, level, message FROM logs WHERE job_id = ? ORDER BY rowid LIMIT -1 OFFSET ?",
                (job_id, skip),
            ).fetchall()
        return [LogEntry(*r) for r in rows]

    def expired(self, before: float) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id FROM jobs WHERE completed_at IS NOT NULL AND completed_at < ?", (before,)
            ).fetchall()
        return [r[0] for r in rows]

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM logs WHERE job_id = ?", (job_id,))
            self._db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))


def _record(row: tuple) -> JobRecord:
    (job_id, endpoint, spec_json, state, created, started, completed, etype, emsg, out, cancel, attempts) = row
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
        int(attempts),
    )
