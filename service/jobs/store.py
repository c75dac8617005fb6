"""Durable job records in SQLite (the embedded default), so a killed and restarted service loses no
accepted job.

Every state change is committed before it is acknowledged (WAL mode: a process kill loses nothing that
was committed). One process owns the file, so notifications stay in-process.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.jobs.migrations import MIGRATIONS as _MIGRATIONS
from service.jobs.migrations import Dialect, statements
from service.jobs.sql_store import SqlJobStore


class SqliteJobStore(SqlJobStore):
    dialect = Dialect.SQLITE
    shared = False
    _log_order = "rowid"

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()  # one connection, used from the loop and from worker threads
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            applied = {r[0] for r in self._db.execute("SELECT version FROM schema_version")}
            for version, _ in _MIGRATIONS:
                if version in applied:
                    continue
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for sql in statements(Dialect.SQLITE, version):
                        self._db.execute(sql)
                    self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def schema_versions(self) -> list[int]:
        return [r[0] for r in self._rows("SELECT version FROM schema_version ORDER BY version")]

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[tuple[Any, ...]], int]:
        with self._lock:
            cur = self._db.execute(sql, tuple(params))
            rows = cur.fetchall()
            return rows, cur.rowcount

    def notify(self, kind: str, job_id: str = "") -> None:
        self._deliver(kind, job_id)

    def close(self) -> None:
        with self._lock:
            self._db.close()


JobStore = SqliteJobStore  # the name the first release used
