"""The job store's versioned schema: migrations applied in order at start-up, for both dialects.

Each migration is a list of statements with two type placeholders ({serial}, {real}); the store records
the versions it applied in `schema_version`. Version 1 is the schema of the first release (SQLite
databases created by it carry on from there); later versions only add.
"""

from __future__ import annotations

from enum import StrEnum


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


_TYPES = {
    Dialect.SQLITE: {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"},
    Dialect.POSTGRES: {"serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION"},
}

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE IF NOT EXISTS jobs (
            seq {serial},
            job_id TEXT UNIQUE NOT NULL,
            endpoint TEXT NOT NULL,
            spec_json TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at {real} NOT NULL,
            started_at {real},
            completed_at {real},
            error_type TEXT,
            error_message TEXT,
            output_json TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0)""",
            "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq)",
            """CREATE TABLE IF NOT EXISTS logs (
            job_id TEXT NOT NULL, timestamp {real} NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS logs_by_job ON logs (job_id)",
        ],
    ),
    (
        2,
        [
            # Many replicas: leases, retries, queue options, progress in the store, worker registry.
            "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE jobs ADD COLUMN worker_id TEXT",
            "ALTER TABLE jobs ADD COLUMN lease_expires_at {real}",
            "ALTER TABLE jobs ADD COLUMN runs INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE jobs ADD COLUMN webhook_url TEXT",
            "ALTER TABLE jobs ADD COLUMN idempotency_key TEXT",
            "ALTER TABLE jobs ADD COLUMN input_hash TEXT",
            "ALTER TABLE jobs ADD COLUMN start_deadline {real}",
            "CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_idempotency_key ON jobs (idempotency_key)",
            "CREATE INDEX IF NOT EXISTS jobs_claim_order ON jobs (state, priority, seq)",
            "CREATE INDEX IF NOT EXISTS jobs_by_lease ON jobs (state, lease_expires_at)",
            """CREATE TABLE IF NOT EXISTS progress (
            id {serial}, job_id TEXT NOT NULL, run INTEGER NOT NULL, report_json TEXT NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS progress_by_job ON progress (job_id, run)",
            """CREATE TABLE IF NOT EXISTS workers (
            worker_id TEXT PRIMARY KEY, endpoints_json TEXT NOT NULL, heartbeat_at {real} NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS webhooks (
            job_id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at {real} NOT NULL,
            last_error TEXT,
            delivered_at {real},
            locked_until {real})""",
            "CREATE INDEX IF NOT EXISTS webhooks_due ON webhooks (state, next_attempt_at)",
        ],
    ),
]

POSTGRES_ONLY: dict[int, list[str]] = {
    # PostgreSQL's logs get an explicit insertion order (SQLite orders by rowid).
    2: ["ALTER TABLE logs ADD COLUMN IF NOT EXISTS id BIGSERIAL"],
}

LATEST = MIGRATIONS[-1][0]


def statements(dialect: Dialect, version: int) -> list[str]:
    """The statements of one migration in `dialect`."""
    body = dict(MIGRATIONS)[version]
    extra = POSTGRES_ONLY.get(version, []) if dialect is Dialect.POSTGRES else []
    return [s.format(**_TYPES[dialect]) for s in body + extra]
