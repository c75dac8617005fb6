"""Opens the result storage the config names: the local directory (default) or S3 (`storage_url`)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from service.config import ServiceConfig
from service.domain.outputs import StoredFile
from service.security.signing import UrlSigner
from service.storage.local import LocalStorage, ResultsHttpServer, reachable_base_url


class ResultStorage(Protocol):
    def job_dir(self, job_id: str) -> Path:
        """A local directory to write the job's files into before `publish`."""
        ...

    def publish(self, job_id: str, path: Path, content_type: str) -> StoredFile: ...

    def delete(self, job_id: str) -> None: ...

    def describe(self) -> str: ...

    def upload_url_prefix(self) -> str:
        """How the URLs of uploaded inputs start (the service trusts them as inputs)."""
        ...

    def purge_uploads(self, before: float) -> int: ...


def open_storage(
    config: ServiceConfig, jwks_file: Path | None = None, signer: UrlSigner | None = None
) -> tuple[ResultStorage, ResultsHttpServer]:
    """The storage, and the HTTP server for the local directory's results (empty with S3) and the JWKS.
    With `signer`, local result URLs carry an expiring HMAC token (S3 URLs are presigned instead)."""
    http = ResultsHttpServer(config.storage_dir, config.host, config.http_port, jwks_file, signer)
    http.start()
    if config.storage_url:
        from service.storage.s3 import S3Storage

        return S3Storage(config.storage_url, config.s3, Path(config.data_dir) / "scratch"), http
    base_url = config.public_base_url or reachable_base_url(config.host, http.port)
    return LocalStorage(config.storage_dir, base_url, signer), http
