"""Webhook deliveries against a real receiver on 127.0.0.1 that drips its answer a byte at a time: the
attempt ends at `webhooks.timeout_s` (connect, headers and body together), and a shutdown interrupts an
attempt in progress without counting it (issue 8: every fetch, webhooks included, has a total deadline)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from service.config import WebhookConfig
from service.jobs.records import JobState
from service.jobs.sql_store import NewJob
from service.jobs.store import SqliteJobStore
from service.jobs.webhooks import WebhookDispatcher, WebhookSigner
from service.media.fetch import FetchLimits
from tests.faults.slow_servers import dripping_server

JOB = "job-drip"


def _store_with_finished_job(tmp_path: Path, url: str) -> SqliteJobStore:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    store.insert(JOB, "ltx-video-lora", "{}", NewJob(webhook_url=url))
    store.finish(JOB, JobState.SUCCEEDED, output_json="{}")
    return store


def _dispatcher(store: SqliteJobStore, tmp_path: Path, timeout_s: float) -> WebhookDispatcher:
    config = WebhookConfig(timeout_s=timeout_s, allow_private_networks=True, first_backoff_s=60.0)
    signer = WebhookSigner(tmp_path / "key.pem")
    return WebhookDispatcher(store, config, signer, lambda record: {"seed": 1}, FetchLimits())


def _deliver_in_thread(dispatcher: WebhookDispatcher) -> threading.Thread:
    thread = threading.Thread(target=dispatcher.deliver_due, daemon=True)
    thread.start()
    return thread


def test_a_dripping_receiver_is_cut_off_at_the_total_deadline(tmp_path: Path) -> None:
    # 4 KB of headers at 0.1 s a byte: 400 s of answer, every read well inside any per-read timeout.
    with dripping_server(byte_interval_s=0.1) as url:
        store = _store_with_finished_job(tmp_path, url)
        started = time.monotonic()
        delivery = _deliver_in_thread(_dispatcher(store, tmp_path, timeout_s=1.0))
        delivery.join(20)
        took = time.monotonic() - started
        assert not delivery.is_alive(), "the dripping receiver held the delivery past its deadline"
    assert took < 4.0, took
    webhook = store.webhook(JOB)
    assert webhook is not None
    assert webhook["state"] == "pending" and webhook["attempts"] == 1  # failed once, to be retried
    assert "within 1 s" in webhook["last_error"], webhook["last_error"]


def test_a_shutdown_interrupts_a_delivery_without_counting_it(tmp_path: Path) -> None:
    with dripping_server(byte_interval_s=0.1) as url:
        store = _store_with_finished_job(tmp_path, url)
        dispatcher = _dispatcher(store, tmp_path, timeout_s=60.0)
        delivery = _deliver_in_thread(dispatcher)
        time.sleep(1.0)  # connected, the answer dripping
        assert delivery.is_alive()
        stopped = time.monotonic()
        dispatcher.stop()
        delivery.join(10)
        assert not delivery.is_alive(), "the delivery did not stop at the shutdown"
        assert time.monotonic() - stopped < 2.0
    webhook = store.webhook(JOB)
    assert webhook is not None
    assert webhook["state"] == "pending" and webhook["attempts"] == 0, webhook
    # Unlocked: the next process (or another replica) takes it at once, not after the lock runs out.
    assert [job for job, _, _ in store.claim_due_webhooks(lock_s=60.0)] == [JOB]
