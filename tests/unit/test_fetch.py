"""fetch_media against a local http.server on 127.0.0.1, data URIs and the address policy."""

from __future__ import annotations

import base64
import io
import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from service.domain.errors import ErrorType, JobError
from service.media.fetch import FetchLimits, fetch_media, is_forbidden_address
from service.media.sniff import MediaKind, sniff_media_type

FIELD = "images[1].image_url"
LOCAL = FetchLimits(max_bytes=64 * 1024, timeout_s=2.0, allow_private_networks=True)
PUBLIC_ONLY = FetchLimits(max_bytes=64 * 1024, timeout_s=2.0)


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png_bytes()
MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(64)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _endless(self) -> None:
        # No Content-Length: the client can only stop by itself. Bounded so a broken client cannot hang.
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(PNG)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            self.wfile.write(bytes(16 * 1024))

    def _slow(self) -> None:
        time.sleep(1.5)
        self._send(200, PNG, "image/png")

    def do_GET(self) -> None:  # the name http.server dispatches to
        routes = {
            "/image.png": lambda: self._send(200, PNG, "image/png"),
            "/video.mp4": lambda: self._send(200, MP4_HEAD, "application/octet-stream"),
            "/image-as-text": lambda: self._send(200, PNG, "text/plain"),
            "/page.html": lambda: self._send(200, b"<html>hello</html>", "image/png"),
            "/declared-huge": lambda: self._send(200, PNG, "image/png", length=10**9),
            "/endless": self._endless,
            "/slow": self._slow,
            "/redirect": lambda: self._redirect("/image.png"),
            "/redirect-file": lambda: self._redirect("file:///etc/passwd"),
            "/loop": lambda: self._redirect("/loop"),
        }
        try:
            routes.get(self.path, lambda: self._send(404, b"no", "text/plain"))()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first, as the size and timeout tests expect it to


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _failure(url: str, limits: FetchLimits = LOCAL, **kwargs: object) -> str:
    with pytest.raises(JobError) as info:
        fetch_media(url, field=FIELD, limits=limits, **kwargs)  # type: ignore[arg-type]
    assert info.value.error_type is ErrorType.INPUT_FETCH_FAILED
    assert info.value.message.startswith(f"{FIELD}: ")
    return info.value.message


def test_fetches_from_local_server_when_allowed(server: str) -> None:
    media = fetch_media(f"{server}/image.png", field=FIELD, limits=LOCAL)
    assert media.data == PNG
    assert (media.content_type, media.kind) == ("image/png", MediaKind.IMAGE)
    assert media.source == f"{server}/image.png"


def test_content_type_comes_from_the_bytes(server: str) -> None:
    assert fetch_media(f"{server}/image-as-text", field=FIELD, limits=LOCAL).content_type == "image/png"
    video = fetch_media(f"{server}/video.mp4", field=FIELD, limits=LOCAL, expect=MediaKind.VIDEO)
    assert (video.kind, video.content_type) == (MediaKind.VIDEO, "video/mp4")
    assert "expected video" in _failure(f"{server}/image.png", expect=MediaKind.VIDEO)
    assert "not an image or a video" in _failure(f"{server}/page.html")


def test_local_addresses_refused_without_the_flag(server: str) -> None:
    assert "private or local network" in _failure(f"{server}/image.png", PUBLIC_ONLY)
    port = server.rsplit(":", 1)[1]
    # A name that resolves to loopback is refused the same way.
    assert "private or local network" in _failure(f"http://localhost:{port}/image.png", PUBLIC_ONLY)
    assert "private or local network" in _failure(f"http://[::1]:{port}/image.png", PUBLIC_ONLY)


def test_oversize_by_header_and_by_streaming(server: str) -> None:
    assert f"is 1000000000 bytes, more than the limit of {LOCAL.max_bytes}" in _failure(
        f"{server}/declared-huge"
    )
    started = time.monotonic()
    assert f"more than the limit of {LOCAL.max_bytes} bytes" in _failure(f"{server}/endless")
    assert time.monotonic() - started < LOCAL.timeout_s  # stopped by size, not by the timeout


def test_timeout_http_errors_and_redirects(server: str) -> None:
    quick = FetchLimits(max_bytes=LOCAL.max_bytes, timeout_s=0.3, allow_private_networks=True)
    assert "timed out after 0.3 s" in _failure(f"{server}/slow", quick)
    assert "HTTP 404" in _failure(f"{server}/missing")
    assert fetch_media(f"{server}/redirect", field=FIELD, limits=LOCAL).data == PNG
    assert "unsupported URL file:" in _failure(f"{server}/redirect-file")
    assert "redirects" in _failure(f"{server}/loop")


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://x", "/relative/path.png", "x"]
)
def test_bad_schemes_are_refused(url: str) -> None:
    assert "unsupported URL" in _failure(url, PUBLIC_ONLY)


def test_data_uris() -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    media = fetch_media(uri, field=FIELD, limits=PUBLIC_ONLY)
    assert media.data == PNG and media.source == "data: URI"
    assert "base64-encoded" in _failure("data:text/plain,hello", PUBLIC_ONLY)
    assert "not valid base64" in _failure("data:image/png;base64,@@@@", PUBLIC_ONLY)
    text = "data:image/png;base64," + base64.b64encode(b"just some text").decode()
    assert "not an image or a video" in _failure(text, PUBLIC_ONLY)
    tiny = FetchLimits(max_bytes=len(PNG) - 1)
    assert "more than the limit" in _failure(uri, tiny)


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),  # cloud metadata, link-local
        ("100.64.0.1", True),  # shared address space (CGNAT)
        ("0.0.0.0", True),
        ("224.0.0.1", True),  # multicast
        ("::1", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped loopback
        ("2002:a00:1::1", True),  # 6to4 of 10.0.0.1
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 of 169.254.169.254
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        # Every IPv4 form inside IPv6 is refused, even of a public address (issue 8: [::127.0.0.1] was
        # connected to), and so are NAT64 local-use and site-local ranges.
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("::127.0.0.1", True),  # IPv4-compatible loopback
        ("::8.8.8.8", True),
        ("::ffff:0:7f00:1", True),  # IPv4-translated loopback
        ("::ffff:8.8.8.8", True),
        ("64:ff9b:1::7f00:1", True),  # NAT64 local-use
        ("64:ff9b:1::808:808", True),
        ("fec0::1", True),  # site-local
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True),  # Teredo
    ],
)
def test_address_policy(address: str, forbidden: bool) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address)) is forbidden


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\xff\xd8\xff\xe0" + bytes(16), "image/jpeg"),
        (b"GIF89a" + bytes(16), "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x1cftypavif" + bytes(16), "image/avif"),
        (b"\x00\x00\x00\x14ftypqt  " + bytes(16), "video/quicktime"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "video/x-msvideo"),
        (b"%PDF-1.7" + bytes(16), None),
        (b"", None),
    ],
)
def test_sniffing(head: bytes, mime: str | None) -> None:
    sniffed = sniff_media_type(head)
    assert (sniffed.mime if sniffed else None) == mime
