"""S3 result storage against moto's S3 server (a separate process, over HTTP): multipart upload,
presigned URLs and their expiry bound, deletion at retention, uploads' URL prefix and purge."""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

from service.config import S3Config
from service.storage.s3 import S3Storage, parse_s3_url
from tests.integration.external_servers import S3_ENV, MotoServer


@pytest.fixture
def storage(moto_s3: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    for name, value in S3_ENV.items():  # the standard chain: credentials from the environment
        monkeypatch.setenv(name, value)
    bucket = f"b-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_s3.url).create_bucket(Bucket=bucket)
    config = S3Config(
        endpoint_url=moto_s3.url,
        url_expiry_s=600,
        multipart_threshold_bytes=5 * 1024**2,
        multipart_chunk_bytes=5 * 1024**2,
    )
    return S3Storage(f"s3://{bucket}/prefix/x", config, tmp_path / "scratch")


def test_publish_uploads_multipart_and_serves_a_presigned_url(storage: S3Storage) -> None:
    data = os.urandom(11 * 1024**2)  # 3 parts of 5 MiB at most
    path = storage.job_dir("job-1") / "job-1.mp4"
    path.write_bytes(data)
    stored = storage.publish("job-1", path, "video/mp4")
    assert not path.exists()  # the scratch copy is gone
    assert stored.file_size == len(data) and stored.content_type == "video/mp4"
    assert "X-Amz-Expires=600" in stored.url and "X-Amz-Signature=" in stored.url
    with urllib.request.urlopen(stored.url, timeout=30) as response:
        assert response.read() == data
    head = storage.head("job-1", "job-1.mp4")
    assert head is not None and head["ContentType"] == "video/mp4"
    assert head["ETag"].strip('"').endswith("-3")  # S3's ETag of a 3-part multipart upload

    storage.delete("job-1")
    assert storage.head("job-1", "job-1.mp4") is None


def test_upload_prefix_matches_upload_urls_and_old_uploads_are_purged(storage: S3Storage) -> None:
    path = storage.job_dir("upload-abc") / "cat.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    stored = storage.publish("upload-abc", path, "image/png")
    assert stored.url.startswith(storage.upload_url_prefix())
    assert storage.purge_uploads(before=time.time() - 3600) == 0  # newer than the cut-off: kept
    assert storage.purge_uploads(before=time.time() + 60) == 1
    assert storage.head("upload-abc", "cat.png") is None


def test_bad_urls_and_expiry_are_refused(tmp_path: Path) -> None:
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        parse_s3_url("http://bucket/a")
    with pytest.raises(ValueError, match="7 days"):
        S3Storage("s3://b/p", S3Config(url_expiry_s=8 * 24 * 3600), tmp_path)
