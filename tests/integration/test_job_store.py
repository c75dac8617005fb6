"""The job store's contract, run on SQLite and on a real PostgreSQL: claims, leases, retries, start
timeouts, idempotency keys, queue positions, retention sweeps, notifications, migrations."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.jobs.migrations import LATEST
from service.jobs.records import JobState, Priority
from service.jobs.sql_store import NewJob, SqlJobStore
from service.jobs.store import SqliteJobStore
from tests.integration.external_servers import PostgresServer

T2V = "ltx-video-lora"


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A factory of stores on one database (PostgreSQL: a fresh database per test)."""
    opened: list[SqlJobStore] = []
    if request.param == "sqlite":

        def make() -> SqlJobStore:
            opened.append(SqliteJobStore(tmp_path / "jobs.sqlite3"))
            return opened[-1]
    else:
        from service.jobs.postgres import PostgresJobStore

        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"t_{uuid.uuid4().hex[:10]}")

        def make() -> SqlJobStore:
            opened.append(PostgresJobStore(url))
            return opened[-1]

    yield make
    for store in opened:
        store.close()


def test_claims_are_priority_then_fifo_and_positions_count_what_runs_first(make_store) -> None:
    store = make_store()
    store.insert("low", T2V, "{}", NewJob(priority=Priority.LOW))
    store.insert("n1", T2V, "{}")
    store.insert("n2", T2V, "{}")
    assert [store.queue_position(j) for j in ("n1", "n2", "low")] == [0, 1, 2]
    assert store.queued_ids() == ["n1", "n2", "low"]
    order = [store.claim_next("w", 30.0).job_id for _ in range(3)]
    assert order == ["n1", "n2", "low"]
    assert store.claim_next("w", 30.0) is None


def test_concurrent_claims_take_each_job_once(make_store) -> None:
    first = make_store()
    stores = [first] + [make_store() for _ in range(1 if first.dialect == "sqlite" else 3)]
    for i in range(40):
        first.insert(f"j{i:02d}", T2V, "{}")
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all(store: SqlJobStore, worker: str) -> None:
        while (record := store.claim_next(worker, 30.0)) is not None:
            with lock:
                claimed.append(record.job_id)

    threads = [threading.Thread(target=claim_all, args=(s, f"w{i}")) for i, s in enumerate(stores * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == [f"j{i:02d}" for i in range(40)]  # none twice, none lost


def test_expired_lease_requeues_with_a_retry_then_exhausts(make_store) -> None:
    store = make_store()
    store.insert("a", T2V, '{"seed": 5}')
    for attempt in range(3):
        record = store.claim_next(f"w{attempt}", 0.05)
        assert record.job_id == "a" and record.runs == attempt + 1 and record.retries == attempt
        assert store.renew_leases(f"w{attempt}", ["a"], 0.05) == {"a": False}
        time.sleep(0.1)
        requeued, exhausted = store.reap_expired_leases(max_retries=2)
        if attempt < 2:
            assert (requeued, exhausted) == (["a"], [])
            assert store.get("a").spec_json == '{"seed": 5}'  # same spec, same seed
            # The interrupted worker comes back late: it no longer owns the job and cannot finish it.
            assert not store.finish("a", JobState.SUCCEEDED, worker_id=f"w{attempt}", output_json="{}")
            assert store.renew_leases(f"w{attempt}", ["a"], 30.0) == {}
        else:
            assert (requeued, exhausted) == ([], ["a"])
    assert store.get("a").error_type == "retries_exhausted"


def test_start_timeout_ends_a_job_that_never_started(make_store) -> None:
    store = make_store()
    store.insert("late", T2V, "{}", NewJob(start_deadline=time.time() - 1))
    store.insert("ok", T2V, "{}", NewJob(start_deadline=time.time() + 60))
    assert store.claim_next("w", 30.0).job_id == "ok"  # a job past its deadline is never claimed
    assert store.expire_start_timeouts() == ["late"]
    late = store.get("late")
    assert late.state is JobState.FAILED and late.error_type == "start_timeout" and late.started_at is None


def test_idempotency_key_is_unique(make_store) -> None:
    store = make_store()
    assert store.insert("a", T2V, "{}", NewJob(idempotency_key="k", input_hash="h1")) is not None
    assert store.insert("b", T2V, "{}", NewJob(idempotency_key="k", input_hash="h2")) is None
    assert store.by_idempotency_key("k").job_id == "a"


def test_cancel_flag_reaches_the_lease_holder_and_finish_is_once(make_store) -> None:
    store = make_store()
    store.insert("a", T2V, "{}")
    store.claim_next("w", 30.0)
    store.mark_cancel_requested("a")
    assert store.renew_leases("w", ["a"], 30.0) == {"a": True}
    assert store.finish("a", JobState.CANCELLED, worker_id="w", error_type="cancelled")
    assert not store.finish("a", JobState.SUCCEEDED, worker_id="w")


def test_retention_sweeps_from_many_replicas_delete_each_job_once(make_store) -> None:
    stores = [make_store(), make_store()]
    for i in range(30):
        stores[0].insert(f"j{i}", T2V, "{}")
        stores[0].add_log(f"j{i}", "hello")
        stores[0].finish(f"j{i}", JobState.SUCCEEDED, output_json="{}")
    swept: list[str] = []
    lock = threading.Lock()

    def sweep(store: SqlJobStore) -> None:
        while ids := store.purge_expired(time.time() + 1, limit=4):
            with lock:
                swept.extend(ids)

    threads = [threading.Thread(target=sweep, args=(s,)) for s in stores * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(swept) == sorted(f"j{i}" for i in range(30))
    assert stores[1].logs("j3") == [] and stores[1].get("j3") is None


def test_notifications_reach_other_store_instances(make_store) -> None:
    sender, receiver = make_store(), make_store()
    if not sender.shared:
        receiver = sender  # SQLite: one process, notifications are in-process
    heard: list[tuple[str, str]] = []
    got = threading.Event()

    def listener(kind: str, job_id: str) -> None:
        heard.append((kind, job_id))
        got.set()

    receiver.listen(listener)
    time.sleep(0.3)  # the LISTEN connection is up
    sender.notify("cancel", "job-1")
    assert got.wait(5), "no notification arrived"
    assert heard[0] == ("cancel", "job-1")


def test_migrations_apply_once_and_reopen_cleanly(make_store) -> None:
    first = make_store()
    second = make_store()  # a second replica starting on the migrated schema
    assert first.schema_versions() == second.schema_versions() == list(range(1, LATEST + 1))


def test_first_release_sqlite_database_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "jobs.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT UNIQUE NOT NULL, endpoint TEXT "
        "NOT NULL, spec_json TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, "
        "completed_at REAL, error_type TEXT, error_message TEXT, output_json TEXT, cancel_requested INTEGER NOT "
        "NULL DEFAULT 0); CREATE TABLE logs (job_id TEXT NOT NULL, timestamp REAL NOT NULL, level TEXT NOT NULL, "
        "message TEXT NOT NULL); INSERT INTO jobs (job_id, endpoint, spec_json, state, created_at) "
        "VALUES ('old', 'ltx-video-lora', '{}', 'queued', 1.0);"
    )
    db.commit()
    db.close()
    store = SqliteJobStore(path)
    assert store.schema_versions() == list(range(1, LATEST + 1))
    claimed = store.claim_next("w", 30.0)
    assert claimed is not None and claimed.job_id == "old"
    store.close()
