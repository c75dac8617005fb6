"""Webhook dispatch on the SQLite store: signing and JWKS, the backoff schedule, the address guard, and
that a delivery is made once even when several dispatchers (replicas) run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from service.config import WebhookConfig
from service.jobs.records import JobState
from service.jobs.sql_store import NewJob
from service.jobs.store import SqliteJobStore
from service.jobs.webhooks import WebhookDispatcher, WebhookSigner, backoff_s, verify
from service.media.fetch import FetchLimits


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    got: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append((dict(self.headers.items()), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


def finished_job(store: SqliteJobStore, url: str, state: JobState = JobState.SUCCEEDED) -> None:
    store.insert("job-1", "ltx-video-lora", "{}", NewJob(webhook_url=url))
    store.finish(
        "job-1",
        state,
        output_json="{}",
        error_type=None if state is JobState.SUCCEEDED else "cancelled",
        error_message=None if state is JobState.SUCCEEDED else "cancelled by the client",
    )


def dispatcher(store: SqliteJobStore, tmp_path: Path, **config: object) -> WebhookDispatcher:
    cfg = WebhookConfig(**{"allow_private_networks": True, "first_backoff_s": 10.0, **config})  # type: ignore[arg-type]
    payload = {"video": {"url": "http://x/v.mp4"}, "seed": 1}
    return WebhookDispatcher(
        store, cfg, WebhookSigner(tmp_path / "key.pem"), lambda r: payload, FetchLimits()
    )


def test_delivered_once_signed_and_verifiable(tmp_path: Path, receiver) -> None:
    url, got = receiver
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    finished_job(store, url)
    first, second = dispatcher(store, tmp_path), dispatcher(store, tmp_path)  # two replicas
    assert first.deliver_due() + second.deliver_due() == 1
    assert first.deliver_due() == 0  # delivered: never again
    headers, body = got[0]
    jwks = WebhookSigner(tmp_path / "key.pem").jwks()  # the key persisted and reloads the same
    assert verify(jwks, headers, body)
    sent = json.loads(body)
    assert sent["status"] == "OK" and sent["payload"]["seed"] == 1 and sent["request_id"] == "job-1"
    assert store.webhook("job-1")["state"] == "delivered"  # type: ignore[index]
    other = WebhookSigner(tmp_path / "other.pem").jwks()
    assert not verify(other, headers, body)  # another key does not verify it


def test_failure_is_reported_as_error(tmp_path: Path, receiver) -> None:
    url, got = receiver
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    finished_job(store, url, JobState.CANCELLED)
    dispatcher(store, tmp_path).deliver_due()
    sent = json.loads(got[0][1])
    assert sent["status"] == "ERROR" and sent["payload"] is None and sent["error"].startswith("cancelled")


def test_private_address_is_refused_and_retried_with_backoff_then_fails(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    finished_job(store, "http://127.0.0.1:9/hook")
    guarded = dispatcher(store, tmp_path, allow_private_networks=False, max_attempts=2)
    assert guarded.deliver_due() == 1
    state = store.webhook("job-1")
    assert state["state"] == "pending" and state["attempts"] == 1  # type: ignore[index]
    assert "private or local network" in state["last_error"]  # type: ignore[index]
    assert guarded.deliver_due() == 0  # not due before its backoff (10 s)
    store._execute("UPDATE webhooks SET next_attempt_at = 0")
    guarded.deliver_due()
    assert store.webhook("job-1")["state"] == "failed"  # type: ignore[index]  # the cap of 2 attempts


def test_backoff_doubles_up_to_the_cap() -> None:
    cfg = WebhookConfig()
    delays = [backoff_s(cfg, n) for n in range(1, cfg.max_attempts)]
    assert delays == [15, 30, 60, 120, 240, 480, 960, 1920, 3600]  # 9 waits between 10 attempts
    assert 1.9 * 3600 < sum(delays) < 2.1 * 3600  # about two hours
