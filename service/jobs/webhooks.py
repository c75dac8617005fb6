"""Webhook deliveries: durable in the job store, at least once, signed with Ed25519.

When a job with a `webhook_url` finishes, any replica's dispatcher gives it a delivery row and POSTs
`{request_id, gateway_request_id, status, payload, error, webhook_id}`. A failed attempt (a non-2xx
answer, a timeout, a refused address) is retried with doubling backoff up to `webhooks.max_attempts`.
`webhooks.timeout_s` bounds each attempt whole (connect, headers and body), so a receiver that drips
its answer cannot hold a delivery past it; at shutdown an attempt in progress is interrupted and left,
uncounted, for the next process.
Rows are claimed with a short lock, so a crash between the POST and the bookkeeping re-delivers (the
receiver de-duplicates by `webhook_id`) but never loses a delivery.

Signature: Ed25519 over `{timestamp}.{request_id}.{body}` (bytes), sent as base64url in
`X-Ltx-Signature` with `X-Ltx-Timestamp` and `X-Ltx-Key-Id`; the public keys are served as a JWKS
document (RFC 8037 OKP keys) so receivers can verify without a shared secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from service.config import WebhookConfig
from service.domain.errors import Cancelled, JobError
from service.jobs.records import JobRecord, JobState
from service.jobs.sql_store import SqlJobStore
from service.media.fetch import FetchLimits, post_within_deadline
from service.observability.metrics import WEBHOOK_DELIVERIES

log = logging.getLogger(__name__)

# The spec's output JSON of a succeeded job (built by the API layer, which owns the protobuf forms).
PayloadOf = Callable[[JobRecord], dict[str, Any] | None]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_message(timestamp: str, request_id: str, body: bytes) -> bytes:
    return f"{timestamp}.{request_id}.".encode() + body


class WebhookSigner:
    """The service's Ed25519 key: loaded from a PEM file, created there on first use."""

    def __init__(self, key_file: Path) -> None:
        if key_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{key_file} is not an Ed25519 private key")
        else:
            key = Ed25519PrivateKey.generate()
            key_file.parent.mkdir(parents=True, exist_ok=True)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            key_file.write_bytes(pem)
            key_file.chmod(0o600)
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._public_raw = raw
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    def sign(self, message: bytes) -> str:
        return b64url(self._key.sign(message))

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": b64url(self._public_raw),
                    "kid": self.key_id,
                    "use": "sig",
                    "alg": "EdDSA",
                }
            ]
        }


def verify(jwks: dict[str, Any], headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does (and the tests): find the key by id, check the signature."""
    for jwk in jwks["keys"]:
        if jwk["kid"] != headers.get("X-Ltx-Key-Id"):
            continue
        public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="))
        signature = base64.urlsafe_b64decode(headers["X-Ltx-Signature"] + "==")
        message = signed_message(headers["X-Ltx-Timestamp"], headers["X-Ltx-Request-Id"], body)
        try:
            public.verify(signature, message)
            return True
        except InvalidSignature:
            return False
    return False


def backoff_s(config: WebhookConfig, failed_attempts: int) -> float:
    """The wait after the n-th failed attempt: doubling from first_backoff_s, capped at max_backoff_s."""
    return float(min(config.first_backoff_s * 2 ** (failed_attempts - 1), config.max_backoff_s))


def webhook_body(record: JobRecord, payload: dict[str, Any] | None) -> dict[str, Any]:
    ok = record.state is JobState.SUCCEEDED
    error = None if ok else f"{record.error_type}: {record.error_message}"
    return {
        "request_id": record.job_id,
        "gateway_request_id": record.job_id,
        "status": "OK" if ok else "ERROR",
        "payload": payload if ok else None,
        "error": error,
        "webhook_id": f"{record.job_id}:webhook",
    }


class WebhookDispatcher:
    def __init__(
        self,
        store: SqlJobStore,
        config: WebhookConfig,
        signer: WebhookSigner,
        payload_of: PayloadOf,
        limits: FetchLimits,
    ) -> None:
        self._store = store
        self._config = config
        self._signer = signer
        self._payload_of = payload_of
        self._limits = FetchLimits(
            **{**limits.__dict__, "allow_private_networks": config.allow_private_networks}
        )
        self._stopping = threading.Event()

    def stop(self) -> None:
        """At shutdown: a delivery in progress ends within a watchdog tick, uncounted, and is left for the
        next process or replica; no new one starts."""
        self._stopping.set()

    async def run_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.deliver_due)
            except Exception:
                log.exception("webhook dispatch failed; retrying")
            await asyncio.sleep(self._config.poll_s)

    def deliver_due(self) -> int:
        self._store.enqueue_webhooks()
        due = self._store.claim_due_webhooks(lock_s=self._config.timeout_s * 2)
        for job_id, url, attempts in due:
            if self._stopping.is_set():
                self._store.release_webhook(job_id)
                continue
            record = self._store.get(job_id)
            if record is not None:
                self._attempt(record, url, attempts)
        return len(due)

    def _attempt(self, record: JobRecord, url: str, attempts: int) -> None:
        body = json.dumps(webhook_body(record, self._payload_of(record)), sort_keys=True).encode()
        try:
            status = self._post(url, record.job_id, body)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except Cancelled:  # shutting down: not the receiver's failure, so not an attempt
            self._store.release_webhook(record.job_id)
            log.info("webhook delivery interrupted by the shutdown", extra={"request_id": record.job_id})
            return
        except JobError as refused:
            error = refused.message
        except TimeoutError:
            error = f"no complete answer within {self._config.timeout_s:g} s (connect, headers and body)"
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        tries = attempts + 1
        next_at = None
        if error is not None and tries < self._config.max_attempts:
            next_at = time.time() + backoff_s(self._config, tries)
        self._store.record_webhook_attempt(
            record.job_id, delivered=error is None, error=error, next_attempt_at=next_at
        )
        WEBHOOK_DELIVERIES.labels("delivered" if error is None else "failed").inc()
        outcome = "delivered" if error is None else f"attempt {tries} failed ({error})"
        self._store.add_log(record.job_id, f"webhook {outcome}", "info" if error is None else "warning")
        self._store.notify("state", record.job_id)

    def _post(self, url: str, request_id: str, body: bytes) -> int:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ltx-video-service-webhook",
            "X-Ltx-Request-Id": request_id,
            "X-Ltx-Timestamp": timestamp,
            "X-Ltx-Key-Id": self._signer.key_id,
            "X-Ltx-Signature": self._signer.sign(signed_message(timestamp, request_id, body)),
        }
        return post_within_deadline(
            url, self._limits, "webhook_url", (body, headers), self._config.timeout_s, self._stopping.is_set
        )
