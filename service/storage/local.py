"""Results kept in a local directory and served over HTTP at `{base_url}/results/{job_id}/{file}`.

With a `UrlSigner`, each URL carries an expiring HMAC token and the server refuses (403) a request
without a valid one, so a result URL is a capability that lapses rather than a guessable path.
"""

from __future__ import annotations

import logging
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from service.domain.outputs import StoredFile
from service.security.signing import UrlSigner

log = logging.getLogger(__name__)


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
        return f"{self.base_url}/results/uploads/"

    def purge_uploads(self, before: float) -> int:
        """Delete uploads stored before `before` (wall-clock seconds)."""
        removed = 0
        for directory in (self.root / "uploads").glob("*"):
            if directory.is_dir() and directory.stat().st_mtime < before:
                shutil.rmtree(directory, ignore_errors=True)
                removed += 1
        return removed

    def describe(self) -> str:
        return f"{self.base_url}/results/ (from {self.root})"


class _ResultsHandler(SimpleHTTPRequestHandler):
    """Read-only GET/HEAD of files under the storage root, at /results/..., signed when a signer is set."""

    signer: UrlSigner | None = None

    def _authorized(self) -> bool:
        parts = urlsplit(self.path)
        if self.signer is None or parts.path == "/.well-known/jwks.json":  # public keys need no token
            return True
        if self.signer.verify(parts.path, parts.query):
            return True
        self.send_error(403, "missing, invalid or expired signature")
        return False

    def do_GET(self) -> None:
        if self._authorized():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._authorized():
            super().do_HEAD()

    jwks_file: str | None = None

    def translate_path(self, path: str) -> str:
        if path == "/.well-known/jwks.json" and self.jwks_file:
            return self.jwks_file  # the webhook signing keys
        prefix = "/results/"
        if not path.startswith(prefix):
            return str(Path(self.directory) / "\0missing")  # 404
        return super().translate_path("/" + path[len(prefix) :])

    def list_directory(self, path):  # type: ignore[no-untyped-def]
        self.send_error(404, "not found")

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s", format % args)


class ResultsHttpServer:
    """Serves the storage root in a background thread; `port` 0 picks a free port."""

    def __init__(
        self, root: Path, host: str, port: int, jwks_file: Path | None = None, signer: UrlSigner | None = None
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        attributes = {"jwks_file": str(jwks_file) if jwks_file else None, "signer": signer}
        handler_class = type("Handler", (_ResultsHandler,), attributes)
        handler = partial(handler_class, directory=str(root))
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
