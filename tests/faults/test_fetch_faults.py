"""Fetches against real slow servers on 127.0.0.1: the total deadline holds, and Cancel interrupts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from service.domain.errors import Cancelled, ErrorType, JobError
from service.media.fetch import FetchLimits, current_cancel_check, download_to_file, fetch_media
from tests.faults.slow_servers import dripping_server

LIMITS = FetchLimits(timeout_s=1.5, allow_private_networks=True)


def test_dripping_headers_stop_at_the_total_deadline() -> None:
    with dripping_server(byte_interval_s=0.05) as url:  # 4 KB of headers would take 200 s
        started = time.monotonic()
        with pytest.raises(JobError) as failure:
            fetch_media(url, field="images[0].image_url", limits=LIMITS)
        elapsed = time.monotonic() - started
    assert failure.value.error_type is ErrorType.INPUT_FETCH_FAILED
    assert "images[0].image_url: timed out after 1.5 s" in failure.value.message
    assert elapsed < LIMITS.timeout_s + 1.0


def test_lora_download_from_a_dripping_server_stops_at_the_deadline(tmp_path: Path) -> None:
    with dripping_server(byte_interval_s=0.05) as url:
        started = time.monotonic()
        with pytest.raises(JobError, match="timed out"):
            download_to_file(url, tmp_path / "lora.safetensors", field="loras[0].path", limits=LIMITS)
        elapsed = time.monotonic() - started
    assert elapsed < LIMITS.timeout_s + 1.0
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_cancel_interrupts_a_fetch_within_a_fraction_of_a_second() -> None:
    cancelled = threading.Event()
    limits = FetchLimits(timeout_s=60.0, allow_private_networks=True)
    with dripping_server(byte_interval_s=0.05) as url:
        threading.Timer(0.5, cancelled.set).start()
        started = time.monotonic()
        with pytest.raises(Cancelled):
            fetch_media(url, field="video.video_url", limits=limits, is_cancelled=cancelled.is_set)
        elapsed = time.monotonic() - started
    assert elapsed < 1.5


def test_the_job_cancel_check_reaches_fetches_through_the_context() -> None:
    cancelled = threading.Event()
    limits = FetchLimits(timeout_s=60.0, allow_private_networks=True)
    token = current_cancel_check.set(cancelled.is_set)
    try:
        with dripping_server(byte_interval_s=0.05) as url:
            threading.Timer(0.3, cancelled.set).start()
            with pytest.raises(Cancelled):
                fetch_media(url, field="images[0].image_url", limits=limits)
    finally:
        current_cancel_check.reset(token)


@pytest.mark.parametrize("location", ["http://[::1", "http://[abc]/x", "http://h:99999/"])
def test_a_redirect_to_an_unparsable_url_fails_the_fetch_cleanly(location: str) -> None:
    import http.server

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(JobError) as failure:
            fetch_media(
                f"http://127.0.0.1:{server.server_address[1]}/a.png", field="image_url", limits=LIMITS
            )
    finally:
        server.shutdown()
        server.server_close()
    assert failure.value.error_type is ErrorType.INPUT_FETCH_FAILED
    assert failure.value.message.startswith("image_url: ")
