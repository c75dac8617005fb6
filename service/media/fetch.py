"""Fetching client-supplied URLs: media inputs (`image_url`, `video_url`: http(s) URLs and base64 `data:`
URIs, `fetch_media`) and large files such as LoRA weights (http(s) only, streamed to disk,
`download_to_file`).

Client-supplied URLs are fetched with these guards:
- Schemes: http, https and base64 `data:` URIs; anything else (file:, ftp:, ...) is refused.
- Size: at most `max_bytes`. A larger Content-Length is refused before the body is read; the body is
  streamed and dropped as soon as it passes the limit (servers may lie or send no length). A data URI
  is size-checked before it is decoded.
- Time: `timeout_s` bounds the whole fetch: connect, headers and body, redirects included (name
  resolution aside: the system resolver takes no timeout). A watchdog thread shuts the socket down at
  the deadline, so a server that drips its headers a byte at a time cannot stretch it; the same
  watchdog ends the fetch as soon as the job is cancelled (`is_cancelled`, or the job's cancel check
  set in `current_cancel_check` by the job runner).
- Content (media inputs): the first bytes must be an image or video container (service/media/sniff.py),
  whatever the server's Content-Type says; with `expect`, of that kind.
- Network: unless `allow_private_networks`, every address a host resolves to must be public: loopback,
  private, link-local, shared (CGNAT), reserved, multicast and unspecified addresses, their IPv6
  equivalents, site-local fec0::/10 and every IPv6 form embedding an IPv4 address (compatible, mapped,
  translated, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4, Teredo) are refused. The host
  is resolved once and the connection goes to the checked address, so a second DNS answer cannot
  redirect it (DNS rebinding); TLS still verifies the certificate against the host name. Each redirect
  is checked the same way.
Every failure raises JobError(INPUT_FETCH_FAILED, "<field>: <reason>"), naming the request field.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import http.client
import io
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

from service.domain.errors import Cancelled, ErrorType, JobError
from service.media.sniff import SNIFF_BYTES, MediaKind, sniff_media_type
from service.observability.metrics import counted_fetch

logger = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "ltx-video-service"
# IPv6 ranges refused outright, whatever `is_global` says: every form that carries an IPv4 address
# (IPv4-compatible, IPv4-mapped, IPv4-translated, NAT64 well-known and local-use, 6to4, Teredo) and the
# deprecated site-local range. A public IPv4 host is fetched over IPv4, never through these.
_FORBIDDEN_IPV6 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "::/96",  # IPv4-compatible (deprecated): ::a.b.c.d
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b::/96",  # NAT64 well-known prefix
        "64:ff9b:1::/48",  # NAT64 local-use prefix
        "2002::/16",  # 6to4
        "2001::/32",  # Teredo
        "fec0::/10",  # site-local (deprecated)
    )
)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CancelCheck = Callable[[], bool]
_WATCH_INTERVAL_S = 0.1

# The running job's cancel check, set by the job runner in the job's thread, so that every fetch a job
# makes (media, LoRA) stops on Cancel without each layer passing the check down.
current_cancel_check: contextvars.ContextVar[CancelCheck | None] = contextvars.ContextVar(
    "current_cancel_check", default=None
)


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 256 * 1024**2
    timeout_s: float = 60.0
    allow_private_networks: bool = False  # only for trusted deployments and tests
    max_redirects: int = 5
    # Decoded conditioning frames (uint8) one request may hold: a request needing more fails before
    # decoding, naming the input, instead of exhausting the machine's memory.
    max_decoded_bytes: int = 8 * 1024**3
    # URLs the service issued itself (its Upload storage); allowed on private addresses. Set at start-up.
    trusted_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FetchedMedia:
    data: bytes = field(repr=False)
    content_type: str  # sniffed from the bytes, e.g. "image/png"
    kind: MediaKind
    source: str  # the URL, or "data: URI" (a data URI's payload is never repeated)


class _Deadline:
    """The fetch's total deadline and cancel check, enforced by a watchdog on the open socket."""

    def __init__(self, seconds: float, is_cancelled: CancelCheck | None = None) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._is_cancelled = is_cancelled or current_cancel_check.get() or (lambda: False)
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.cancelled = False
        self.expired = False
        self._watchdog = threading.Thread(target=self._watch, name="fetch-watchdog", daemon=True)
        self._watchdog.start()

    def remaining(self) -> float:
        self.check()
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def check(self) -> None:
        if self.cancelled or self._is_cancelled():
            self.cancelled = True
            raise Cancelled("cancelled by the client while fetching an input")
        if self.expired:
            raise TimeoutError

    def guard(self, sock: socket.socket | None) -> None:
        """The socket the watchdog shuts down when the time is up or the job is cancelled."""
        with self._lock:
            self._socket = sock

    def close(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(_WATCH_INTERVAL_S):
            if self._is_cancelled():
                self.cancelled = True
            elif time.monotonic() >= self._end:
                self.expired = True
            else:
                continue
            with self._lock:
                if self._socket is not None:
                    with contextlib.suppress(OSError):
                        self._socket.shutdown(socket.SHUT_RDWR)
            return


def _fail(field_path: str, reason: str) -> JobError:
    return JobError(ErrorType.INPUT_FETCH_FAILED, f"{field_path}: {reason}")


def is_forbidden_address(address: IpAddress) -> bool:
    """True for every address that is not plainly public unicast (see the module docstring)."""
    if isinstance(address, ipaddress.IPv6Address) and any(address in net for net in _FORBIDDEN_IPV6):
        return True
    # `is_global` is False for private, loopback, link-local, shared, reserved and unspecified
    # ranges; multicast is checked apart because Python counts some multicast ranges as global.
    return not address.is_global or address.is_multicast


def _resolve(host: str, port: int, limits: FetchLimits, field_path: str) -> list[IpAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _fail(field_path, f"cannot resolve host {host!r}") from exc
    addresses: list[IpAddress] = []
    for info in infos:
        # Drop an IPv6 zone ("fe80::1%eth0") before parsing; the address alone decides.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not limits.allow_private_networks:
        forbidden = [a for a in addresses if is_forbidden_address(a)]
        if forbidden:
            raise _fail(field_path, f"host {host!r} is on a private or local network ({forbidden[0]})")
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a fixed, already checked address; `host` is used only for the headers."""

    def __init__(self, host: str, port: int, address: IpAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = 443

    def __init__(self, host: str, port: int, address: IpAddress, timeout: float) -> None:
        super().__init__(host, port, address, timeout)
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        # The certificate is checked against the host name, not the pinned address.
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)


def connect_checked(
    url: str, limits: FetchLimits, field_path: str, timeout_s: float
) -> tuple[http.client.HTTPConnection, str, str]:
    """Connect to an http(s) URL's host through the address guard: (connection, path, Host header).
    Also used for webhook deliveries, which follow the same rules as media inputs."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise _fail(field_path, f"unsupported URL {_describe(url)}: use http(s) or a base64 data: URI")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise _fail(field_path, "invalid port in URL") from exc
    if any(url.startswith(prefix) for prefix in limits.trusted_prefixes):
        limits = replace(limits, allow_private_networks=True)
    addresses = _resolve(parts.hostname, port, limits, field_path)
    connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    last_error: OSError | None = None
    for address in addresses:
        conn = connection_class(parts.hostname, port, address, timeout_s)
        try:
            conn.connect()
        except OSError as exc:  # try the host's next address
            conn.close()
            last_error = exc
            continue
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.netloc.rpartition("@")[2]  # never forward credentials
        return conn, path, host_header
    raise _fail(field_path, f"cannot connect to {parts.hostname}: {last_error}")


def _open(url: str, limits: FetchLimits, field_path: str, deadline: _Deadline) -> http.client.HTTPConnection:
    conn, path, host_header = connect_checked(url, limits, field_path, deadline.remaining())
    deadline.guard(conn.sock)  # from here the watchdog can cut the connection at the deadline or on Cancel
    conn.request(
        "GET",
        path,
        headers={
            "Host": host_header,
            "User-Agent": _USER_AGENT,
            "Accept": "image/*, video/*, */*;q=0.1",
            "Accept-Encoding": "identity",  # so Content-Length is the real size
        },
    )
    return conn


def _copy_limited(
    conn: http.client.HTTPConnection,
    response: http.client.HTTPResponse,
    limits: FetchLimits,
    field_path: str,
    deadline: _Deadline,
    sink: BinaryIO,
) -> int:
    """Copy the body into `sink`, at most `limits.max_bytes` of it; returns the byte count."""
    declared = response.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limits.max_bytes:
        raise _fail(field_path, f"is {int(declared)} bytes, more than the limit of {limits.max_bytes}")
    received = 0
    while True:
        if conn.sock is not None:  # each read may wait only for what is left of the whole fetch
            conn.sock.settimeout(deadline.remaining())
        chunk = response.read1(_READ_CHUNK)
        if not chunk:
            if declared is not None and declared.strip().isdigit() and received != int(declared):
                raise _fail(field_path, f"the download stopped after {received} of {int(declared)} bytes")
            return received
        received += len(chunk)
        if received > limits.max_bytes:
            raise _fail(field_path, f"is more than the limit of {limits.max_bytes} bytes")
        sink.write(chunk)


def _fetch_http(
    url: str, limits: FetchLimits, field_path: str, sink: BinaryIO, is_cancelled: CancelCheck | None = None
) -> int:
    """Copy the body at `url` into `sink`, following redirects, each one checked like the first URL."""
    deadline = _Deadline(limits.timeout_s, is_cancelled)
    try:
        return _follow_redirects(url, limits, field_path, sink, deadline)
    except (OSError, http.client.HTTPException, ValueError):
        deadline.check()  # a socket shut down by the watchdog: say why instead of "connection reset"
        raise
    finally:
        deadline.close()


def _follow_redirects(
    url: str, limits: FetchLimits, field_path: str, sink: BinaryIO, deadline: _Deadline
) -> int:
    current = url
    for _ in range(limits.max_redirects + 1):
        conn = _open(current, limits, field_path, deadline)
        try:
            response = conn.getresponse()
            deadline.check()
            if response.status in _REDIRECT_STATUSES and response.getheader("Location"):
                current = urljoin(current, response.getheader("Location", ""))
                continue
            if not 200 <= response.status < 300:
                raise _fail(field_path, f"HTTP {response.status} {response.reason} from {_describe(current)}")
            size = _copy_limited(conn, response, limits, field_path, deadline, sink)
            deadline.check()
            return size
        finally:
            deadline.guard(None)
            conn.close()
    raise _fail(field_path, f"more than {limits.max_redirects} redirects")


@contextlib.contextmanager
def _network_errors(field_path: str, limits: FetchLimits) -> Iterator[None]:
    """Network and protocol failures become INPUT_FETCH_FAILED naming the field."""
    try:
        yield
    except TimeoutError as exc:
        raise _fail(field_path, f"timed out after {limits.timeout_s:g} s") from exc
    except ssl.SSLError as exc:
        raise _fail(field_path, f"TLS error: {exc.reason or exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _fail(field_path, f"download failed: {exc.__class__.__name__}: {exc}") from exc
    except ValueError as exc:  # a redirect to an unparsable URL ("http://[::1")
        raise _fail(field_path, "download failed: the server redirected to an invalid URL") from exc


MAX_ANSWER_BYTES = 64 * 1024  # of a POST's answer body, read and dropped


def post_within_deadline(
    url: str,
    limits: FetchLimits,
    field_path: str,
    request: tuple[bytes, dict[str, str]],
    timeout_s: float,
    is_stopped: CancelCheck,
) -> int:
    """POST `request` (body, headers; Host is added) to `url` through the address guard and return the
    answer's status. `timeout_s` bounds the whole exchange: connect, sending, the answer's headers and
    body, so a receiver that drips its answer cannot hold the caller past it (TimeoutError). Once
    `is_stopped()` turns true (the service is shutting down) the exchange ends within a watchdog tick,
    raising Cancelled. Used for webhook deliveries."""
    body, headers = request
    deadline = _Deadline(timeout_s, is_stopped)
    conn: http.client.HTTPConnection | None = None
    try:
        conn, path, host = connect_checked(url, limits, field_path, deadline.remaining())
        deadline.guard(conn.sock)
        conn.request("POST", path, body=body, headers={"Host": host, **headers})
        response = conn.getresponse()
        received = 0
        while received < MAX_ANSWER_BYTES:
            if conn.sock is not None:
                conn.sock.settimeout(deadline.remaining())
            chunk = response.read1(_READ_CHUNK)
            if not chunk:
                break
            received += len(chunk)
        deadline.check()
        return int(response.status)
    except (OSError, http.client.HTTPException, ValueError):
        deadline.check()  # a socket the watchdog shut down: say why instead of "connection reset"
        raise
    finally:
        deadline.close()
        if conn is not None:
            conn.close()


@counted_fetch("download")
def download_to_file(
    url: str, target: Path, *, field: str, limits: FetchLimits, is_cancelled: CancelCheck | None = None
) -> int:
    """Stream an http(s) URL into `target` with every guard of this module but the content check.

    The body goes to a temporary file beside `target` that is renamed into place only when complete, so
    an interrupted or refused download never leaves a partial file. Returns the size in bytes.
    """
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise _fail(field, f"unsupported URL {_describe(url)}: use http(s)")
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as sink, _network_errors(field, limits):
            size = _fetch_http(url, limits, field, sink, is_cancelled)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    logger.info("downloaded %s from %s: %d bytes", field, _describe(url), size)
    return size


def _decode_data_uri(url: str, limits: FetchLimits, field_path: str) -> bytes:
    meta, comma, payload = url[len("data:") :].partition(",")
    if not comma or not meta.lower().endswith(";base64"):
        raise _fail(field_path, "data: URIs must be base64-encoded (data:<type>;base64,<data>)")
    payload = "".join(payload.split())
    # Base64 carries 3 bytes per 4 characters: refuse before decoding what would be too large.
    if len(payload) // 4 * 3 - payload.count("=") > limits.max_bytes:
        raise _fail(field_path, f"is more than the limit of {limits.max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(field_path, "data: URI is not valid base64") from exc


def _describe(url: str) -> str:
    """The URL without query, fragment or credentials, for messages and logs (queries hold tokens)."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "data":
        return "data: URI"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" if host else f"{parts.scheme}: URL"


@counted_fetch("media")
def fetch_media(
    url: str,
    *,
    field: str,
    limits: FetchLimits,
    expect: MediaKind | None = None,
    is_cancelled: CancelCheck | None = None,
) -> FetchedMedia:
    """Fetches one media input; `field` names it in errors, e.g. "images[1].image_url"."""
    is_data_uri = url[:5].lower() == "data:"
    if is_data_uri:
        data = _decode_data_uri(url, limits, field)
    else:
        body = io.BytesIO()
        with _network_errors(field, limits):
            _fetch_http(url, limits, field, body, is_cancelled)
        data = body.getvalue()
    media_type = sniff_media_type(data[:SNIFF_BYTES])
    if media_type is None:
        raise _fail(field, "is not an image or a video")
    if expect is not None and media_type.kind is not expect:
        raise _fail(field, f"expected {expect.value} but got {media_type.mime}")
    source = "data: URI" if is_data_uri else url
    logger.info("fetched %s from %s: %d bytes, %s", field, _describe(url), len(data), media_type.mime)
    return FetchedMedia(data=data, content_type=media_type.mime, kind=media_type.kind, source=source)
