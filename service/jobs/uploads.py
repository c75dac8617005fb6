"""Input files uploaded through the `Upload` RPC: size-capped, content-sniffed, stored beside the results
(in the result storage; the API reaches it through this layer).

An upload is stored as `upload-{id}/{name}` in the result storage (local directory or S3) and its URL
(local HTTP or presigned S3) is accepted as `image_url`, `video_url` or a LoRA `path`: the service
trusts its own upload URLs even on a private address (FetchLimits.trusted_prefixes). Uploads are deleted
once older than the retention time.
"""

from __future__ import annotations

import json
import re
import struct
import uuid
from pathlib import Path

from service.media.sniff import SNIFF_BYTES, sniff_media_type
from service.storage.factory import ResultStorage
from service.storage.local import UPLOAD_ID_PREFIX

SAFETENSORS = "application/x-safetensors"
MAX_SAFETENSORS_HEADER = 100 * 1024**2


class UploadRejected(Exception):
    """The upload breaks a rule; `field` and the message name it (INVALID_ARGUMENT)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def safe_name(name: str) -> str:
    """The client's file name reduced to a harmless basename (its extension kept)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name or "upload").name).lstrip(".")
    return base[-120:] or "upload"


def sniff_upload(head: bytes) -> str | None:
    """The MIME type of an image, a video or a safetensors file (LoRA weights), from its first bytes."""
    media = sniff_media_type(head[:SNIFF_BYTES])
    if media is not None:
        return media.mime
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 2 <= header_len <= MAX_SAFETENSORS_HEADER and head[8:9] == b"{":
            return SAFETENSORS
    return None


class UploadWriter:
    """Receives one upload's chunks into the storage's scratch directory, enforcing the cap."""

    def __init__(self, storage: ResultStorage, max_bytes: int, file_name: str) -> None:
        self._storage = storage
        self._max = max_bytes
        self.upload_id = f"{UPLOAD_ID_PREFIX}{uuid.uuid4().hex}"
        self.path = storage.job_dir(self.upload_id) / safe_name(file_name)
        self._file = self.path.open("wb")
        self._head = b""
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max:
            self.abort()
            raise UploadRejected("chunk", f"the upload is larger than the limit of {self._max} bytes")
        if len(self._head) < SNIFF_BYTES:
            self._head += chunk[: SNIFF_BYTES - len(self._head)]
        self._file.write(chunk)

    def finish(self) -> tuple[str, str]:
        """Sniff and store the file: (url, content type)."""
        self._file.close()
        content_type = sniff_upload(self._head)
        if self.size == 0 or content_type is None:
            self.abort()
            raise UploadRejected("chunk", "the upload is not an image, a video or a safetensors file")
        if content_type == SAFETENSORS:
            _check_safetensors_header(self.path)
        stored = self._storage.publish(self.upload_id, self.path, content_type)
        return stored.url, content_type

    def abort(self) -> None:
        self._file.close()
        self._storage.delete(self.upload_id)


def _check_safetensors_header(path: Path) -> None:
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        try:
            json.loads(f.read(header_len))
        except ValueError as exc:
            raise UploadRejected("chunk", "the safetensors file's header is not valid JSON") from exc
