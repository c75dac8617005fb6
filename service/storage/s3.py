"""Results on S3-compatible storage (AWS S3, MinIO, ...), through boto3.

A job's files are written to a local scratch directory, uploaded (multipart past the threshold) to
`s3://bucket/prefix/{job_id}/{file}` and the local copy removed; clients download them with a presigned
GET URL. Retention deletes every object under the job's prefix.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from service.config import S3Config
from service.domain.outputs import StoredFile
from service.storage.local import UPLOAD_ID_PREFIX

log = logging.getLogger(__name__)

MAX_URL_EXPIRY_S = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` -> (bucket, prefix without slashes at the ends)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"storage_url must look like s3://bucket/prefix, not {url!r}")
    return parsed.netloc, parsed.path.strip("/")


class S3Storage:
    def __init__(self, url: str, config: S3Config, scratch: Path) -> None:
        if not 1 <= config.url_expiry_s <= MAX_URL_EXPIRY_S:
            raise ValueError(f"s3.url_expiry_s must be between 1 and {MAX_URL_EXPIRY_S} (7 days)")
        self.bucket, self.prefix = parse_s3_url(url)
        self._config = config
        self._scratch = scratch
        self._client = boto3.session.Session().client("s3", **_client_args(config))
        self._transfer = TransferConfig(
            multipart_threshold=config.multipart_threshold_bytes,
            multipart_chunksize=config.multipart_chunk_bytes,
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, job_id: str, name: str) -> str:
        return "/".join(p for p in (self.prefix, job_id, name) if p)

    def job_dir(self, job_id: str) -> Path:
        path = self._scratch / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, job_id: str, path: Path, content_type: str) -> StoredFile:
        """Upload a file written into `job_dir(job_id)` and describe it with a presigned URL."""
        size = path.stat().st_size
        key = self._key(job_id, path.name)
        self._client.upload_file(
            str(path), self.bucket, key, ExtraArgs={"ContentType": content_type}, Config=self._transfer
        )
        path.unlink()
        return StoredFile(
            url=self.presign(key), content_type=content_type, file_name=path.name, file_size=size
        )

    def presign(self, key: str) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self._config.url_expiry_s
        )
        return url

    def delete(self, job_id: str) -> None:
        """Delete the job's objects (and any scratch left by a crash)."""
        shutil.rmtree(self._scratch / job_id, ignore_errors=True)
        prefix = self._key(job_id, "")
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/"):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})

    def upload_url_prefix(self) -> str:
        """Where presigned URLs of uploads start (a sample key's URL, cut before the key's last part)."""
        sample = self.presign(self._key(f"{UPLOAD_ID_PREFIX}x", "")).split("?", 1)[0]
        return sample[:-1]

    def purge_uploads(self, before: float) -> int:
        paginator = self._client.get_paginator("list_objects_v2")
        removed = 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(UPLOAD_ID_PREFIX, "")):
            old = [
                {"Key": o["Key"]} for o in page.get("Contents", []) if o["LastModified"].timestamp() < before
            ]
            if old:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": old, "Quiet": True})
                removed += len(old)
        return removed

    def head(self, job_id: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self._client.head_object(Bucket=self.bucket, Key=self._key(job_id, name)))
        except self._client.exceptions.ClientError:
            return None


def _client_args(config: S3Config) -> dict[str, Any]:
    """Only what the config sets; the rest comes from boto3's standard chain (AWS_* variables, ...)."""
    # SigV4: the signature whose presigned URLs may live up to 7 days.
    args: dict[str, Any] = {"config": Config(signature_version="s3v4", s3={"addressing_style": "path"})}
    if config.endpoint_url:
        args["endpoint_url"] = config.endpoint_url
    if config.region:
        args["region_name"] = config.region
    if config.access_key_id and config.secret_access_key:
        args["aws_access_key_id"] = config.access_key_id
        args["aws_secret_access_key"] = config.secret_access_key
    return args
