"""Results kept in a local directory and served over HTTP at `{base_url}/results/{job_id}/{file}`.

With a `UrlSigner`, each URL carries an expiring HMAC token and the server refuses (403) a request
without a valid one, so a result URL is a capability that lapses rather than a guessable path.
"""

from __future__ import annotations

import io
import logging
import mimetypes
import os
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from service.domain.outputs import StoredFile
from service.security.signing import UrlSigner

UPLOAD_ID_PREFIX = "upload-"  # uploads are stored like a job's files, under ids that no job id can take

log = logging.getLogger(__name__)


def reachable_base_url(host: str, port: int) -> str:
    """The results server's URL as clients can use it. A wildcard bind address (0.0.0.0, ::) is no
    address a client can connect to, so this machine's host name stands in for it (set
    `public_base_url` when clients reach the service by another name)."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
        log.warning(
            "results URLs use the host name %r; set public_base_url if clients cannot resolve it", host
        )
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}"


class LocalStorage:
    def __init__(self, root: Path, base_url: str, signer: UrlSigner | None = None) -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.root.mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: str) -> Path:
        path = self.root / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, job_id: str, path: Path, content_type: str) -> StoredFile:
        """Describe a file already written into `job_dir(job_id)`."""
        if path.parent != self.job_dir(job_id):
            raise ValueError(f"{path} is not in the job's directory")
        url_path = f"/results/{job_id}/{path.name}"
        query = f"?{self.signer.query(url_path)}" if self.signer else ""
        return StoredFile(
            url=f"{self.base_url}{url_path}{query}",
            content_type=content_type,
            file_name=path.name,
            file_size=path.stat().st_size,
        )

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def upload_url_prefix(self) -> str:
        return f"{self.base_url}/results/{UPLOAD_ID_PREFIX}"

    def purge_uploads(self, before: float) -> int:
        """Delete uploads stored before `before` (wall-clock seconds)."""
        removed = 0
        for directory in self.root.glob(f"{UPLOAD_ID_PREFIX}*"):
            if directory.is_dir() and directory.stat().st_mtime < before:
                shutil.rmtree(directory, ignore_errors=True)
                removed += 1
        return removed

    def describe(self) -> str:
        return f"{self.base_url}/results/ (from {self.root})"


# A stalled or half-open client is dropped after this long (each one holds a thread meanwhile).
HTTP_TIMEOUT_S = 10.0
_COPY_CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")


class _ResultsHandler(BaseHTTPRequestHandler):
    """Read-only GET/HEAD of `/results/<job_id>/<file>` under the storage root, with single-range
    requests (206/416). Every other request gets an answer: 400 malformed, 404 unknown, 405 a method
    other than GET/HEAD. Files still being written (`*.part`) are never served."""

    root: Path  # set by ResultsHttpServer
    jwks_file: Path | None = None  # the webhook signing keys, at /.well-known/jwks.json
    signer: UrlSigner | None = None  # set: /results/ paths need a valid, unexpired signature
    timeout = HTTP_TIMEOUT_S
    server_version = "ltx-results"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _refuse_method(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

    def _fail(self, code: int) -> None:
        self.send_error(code)

    def _resolve(self) -> Path | int:
        """The file the path names, or the HTTP status to answer instead."""
        raw = self.path.split("?", 1)[0].split("#", 1)[0]
        try:
            path = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return 400
        if "\0" in path:
            return 400
        if path == "/.well-known/jwks.json":
            return self.jwks_file if self.jwks_file is not None and self.jwks_file.is_file() else 404
        parts = path.split("/")
        if len(parts) != 4 or parts[0] != "" or parts[1] != "results":
            return 404
        if self.signer is not None:
            url = urlsplit(self.path)
            if not self.signer.verify(url.path, url.query):
                return 403  # missing, invalid or expired signature
        job_id, name = parts[2], parts[3]
        if not (_SAFE_NAME.fullmatch(job_id) and _SAFE_NAME.fullmatch(name)) or name.endswith(".part"):
            return 404
        if job_id.startswith(".") or name.startswith("."):
            return 404
        file = self.root / job_id / name
        return file if file.is_file() else 404

    def _serve(self, *, body: bool) -> None:
        target = self._resolve()
        if isinstance(target, int):
            self._fail(target)
            return
        try:
            handle = target.open("rb")
        except OSError:  # deleted (retention) between the check and the open
            self._fail(404)
            return
        with handle:
            size = os.fstat(handle.fileno()).st_size
            span = _parse_range(self.headers.get("Range"), size)
            if span is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = span
            partial = span != (0, size - 1)
            self.send_response(206 if partial else 200)
            content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(max(end - start + 1, 0)))
            self.send_header("Accept-Ranges", "bytes")
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if body:
                _copy_span(handle, self.wfile, start, end)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s", format % args)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range; the whole file without one (or for a form we do
    not serve, such as several ranges); None when unsatisfiable."""
    whole = (0, size - 1)
    if not header:
        return whole
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return whole  # multi-range or another unit: RFC 9110 lets a server ignore Range
    first, last = match.groups()
    if not first and not last:
        return whole
    if not first:  # the last N bytes
        length = int(last)
        return (max(size - length, 0), size - 1) if length > 0 and size > 0 else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start < size and start <= end else None


def _copy_span(source: BinaryIO, sink: io.BufferedIOBase, start: int, end: int) -> None:
    source.seek(start)
    left = end - start + 1
    while left > 0:
        chunk = source.read(min(_COPY_CHUNK, left))
        if not chunk:
            return
        sink.write(chunk)
        left -= len(chunk)


class ResultsHttpServer:
    """Serves the storage root in a background thread; `port` 0 picks a free port."""

    def __init__(
        self, root: Path, host: str, port: int, jwks_file: Path | None = None, signer: UrlSigner | None = None
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        attributes = {"root": root.resolve(), "jwks_file": jwks_file, "signer": signer}
        handler = type("ResultsHandler", (_ResultsHandler,), attributes)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="results-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
