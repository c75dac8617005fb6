"""The job store on PostgreSQL (psycopg 3), shared by any number of gateways and workers.

Claims and retention sweeps pick rows with `FOR UPDATE SKIP LOCKED`; notifications travel over
LISTEN/NOTIFY on one channel, so a `Watch` on any gateway hears a worker's progress, and a cancel on any
gateway reaches the worker running the job. Migrations run at start-up under an advisory lock, so
replicas starting together apply each one once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from service.jobs.migrations import MIGRATIONS, Dialect, statements
from service.jobs.sql_store import SqlJobStore

log = logging.getLogger(__name__)

CHANNEL = "ltx_jobs"
_MIGRATION_LOCK = 0x4C54_5831  # pg_advisory_xact_lock key: "LTX1"


class PostgresJobStore(SqlJobStore):
    dialect = Dialect.POSTGRES
    shared = True
    _skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, dsn: str, *, pool_size: int = 8) -> None:
        super().__init__()
        self._dsn = dsn
        self._pool = ConnectionPool(
            dsn, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=True, name="ltx-jobs"
        )
        self._pool.wait(timeout=30)
        self._migrate()
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None

    def _migrate(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            applied = {r[0] for r in conn.execute("SELECT version FROM schema_version")}
            for version, _ in MIGRATIONS:
                if version in applied:
                    continue
                for sql in statements(Dialect.POSTGRES, version):
                    conn.execute(sql)  # our own constant SQL
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                log.info("job store: applied schema migration %d", version)

    def schema_versions(self) -> list[int]:
        return [r[0] for r in self._rows("SELECT version FROM schema_version ORDER BY version")]

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[tuple[Any, ...]], int]:
        with self._pool.connection() as conn:
            cur = conn.execute(sql.replace("?", "%s"), tuple(params))
            rows = cur.fetchall() if cur.description is not None else []
            return rows, cur.rowcount

    def notify(self, kind: str, job_id: str = "") -> None:
        self._execute("SELECT pg_notify(?, ?)", (CHANNEL, f"{kind}:{job_id}"))

    def listen(self, listener: Any) -> None:
        super().listen(listener)
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen_forever, name="pg-listen", daemon=True)
            self._listener.start()

    def _listen_forever(self) -> None:
        """Deliver notifications from every process; reconnect after a lost connection (followers also
        re-read the store on a timer, so a notification lost while reconnecting only delays them)."""
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            kind, _, job_id = note.payload.partition(":")
                            self._deliver(kind, job_id)
            except psycopg.Error as error:
                log.warning("job store: LISTEN connection lost (%s); reconnecting", error)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        self._pool.close()
