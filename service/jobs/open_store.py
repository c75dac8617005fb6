"""Opens the job store the config names: SQLite in data_dir (default) or PostgreSQL (`database_url`)."""

from __future__ import annotations

from pathlib import Path

from service.config import ServiceConfig
from service.jobs.sql_store import SqlJobStore


def open_store(config: ServiceConfig) -> SqlJobStore:
    url = config.database_url
    if url and url.startswith(("postgresql://", "postgres://")):
        from service.jobs.postgres import PostgresJobStore

        return PostgresJobStore(url)
    from service.jobs.store import SqliteJobStore

    if url and not url.startswith("sqlite:///"):
        raise ValueError(f"database_url must be postgresql://... or sqlite:///PATH, not {url!r}")
    return SqliteJobStore(Path(url[len("sqlite:///") :]) if url else config.db_path)
