"""The results HTTP server, over a real socket on 127.0.0.1: every request gets an answer, Range
works, stalled clients are dropped, and files still being written are never served."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.storage import local
from service.storage.local import ResultsHttpServer

BODY = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ResultsHttpServer, Path]]:
    root = tmp_path_factory.mktemp("http") / "results"
    (root / "job1").mkdir(parents=True)
    (root / "job1" / "job1.mp4").write_bytes(BODY)
    (root / "job1" / "job2.mp4.part").write_bytes(BODY[:100])
    http_server = ResultsHttpServer(root, "127.0.0.1", 0)
    http_server.start()
    try:
        yield http_server, root
    finally:
        http_server.stop()


def _request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 404),
        ("/results/", 404),
        ("/results/job1/", 404),
        ("/results/job1/missing.mp4", 404),
        ("/other/job1/job1.mp4", 404),
        ("/results/job1/job1.mp4%00", 400),
        ("/results/%ff/x", 400),
        ("/results/../results/job1/job1.mp4", 404),
        ("/results/job1/..%2f..%2fetc%2fpasswd", 404),
        ("/results/job1/job2.mp4.part", 404),  # still being written
        ("/results/job1/job1.mp4", 200),
    ],
)
def test_every_path_gets_an_answer(server: tuple[ResultsHttpServer, Path], path: str, status: int) -> None:
    http_server, _ = server
    assert _request(http_server.port, "GET", path)[0] == status


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405(server: tuple[ResultsHttpServer, Path], method: str) -> None:
    status, headers, _ = _request(server[0].port, method, "/results/job1/job1.mp4")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("header", "status", "content"),
    [
        ("bytes=0-99", 206, BODY[:100]),
        ("bytes=10000-", 206, BODY[10000:]),
        ("bytes=-40", 206, BODY[-40:]),
        ("bytes=100-99999", 206, BODY[100:]),
        ("bytes=20000-", 416, b""),
        ("bytes=0-1,5-6", 200, BODY),  # several ranges: the whole file, as RFC 9110 allows
    ],
)
def test_range_requests(
    server: tuple[ResultsHttpServer, Path], header: str, status: int, content: bytes
) -> None:
    got_status, headers, body = _request(server[0].port, "GET", "/results/job1/job1.mp4", {"Range": header})
    assert (got_status, body) == (status, content)
    if status == 206:
        assert headers["Content-Range"].endswith(f"/{len(BODY)}")


def test_head_has_the_length_and_no_body(server: tuple[ResultsHttpServer, Path]) -> None:
    status, headers, body = _request(server[0].port, "HEAD", "/results/job1/job1.mp4")
    assert (status, headers["Content-Length"], body) == (200, str(len(BODY)), b"")


def test_a_stalled_client_is_dropped(
    server: tuple[ResultsHttpServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    http_server, _ = server
    monkeypatch.setattr(local._ResultsHandler, "timeout", 1.0)  # the real one is HTTP_TIMEOUT_S
    with socket.create_connection(("127.0.0.1", http_server.port)) as half_open:
        half_open.sendall(b"GET /results/job1/job1.mp4 HTTP/1.1\r\n")  # and never finish the request
        half_open.settimeout(10)
        started = time.monotonic()
        assert half_open.recv(1024) == b""  # the server hung up
        assert time.monotonic() - started < 4


def test_signed_urls_are_required_when_a_signer_is_set(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    from service.security.signing import UrlSigner
    from service.storage.local import LocalStorage, ResultsHttpServer

    signer = UrlSigner(b"k" * 32, ttl_s=60)
    server = ResultsHttpServer(tmp_path, "127.0.0.1", 0, signer=signer)
    server.start()
    try:
        storage = LocalStorage(tmp_path, f"http://127.0.0.1:{server.port}", signer)
        for job_id in ("job1", "upload-abc"):
            path = storage.job_dir(job_id) / "out.mp4"
            path.write_bytes(b"video")
            url = storage.publish(job_id, path, "video/mp4").url
            assert urllib.request.urlopen(url, timeout=5).read() == b"video"
            for bad in (url.split("?")[0], url[:-1] + ("0" if url[-1] != "0" else "1")):
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(bad, timeout=5)
                assert refused.value.code == 403
    finally:
        server.stop()
