"""What a byte string is, from its first bytes (magic numbers), not from what a server claims."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

# Enough bytes for every signature below (MPEG-TS needs two 188-byte packets' sync bytes).
SNIFF_BYTES = 512

_ISO_IMAGE_BRANDS = {b"avif": "image/avif", b"avis": "image/avif"}
_ISO_IMAGE_BRANDS.update({b: "image/heic" for b in (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1")})
_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
_MPEG_TS_PACKET = 188


class MediaKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"


class MediaType(NamedTuple):
    kind: MediaKind
    mime: str


def _iso_bmff(head: bytes) -> MediaType | None:
    """MP4, MOV, 3GP, HEIC and AVIF share the ISO base media layout: a box named `ftyp` at offset 4."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _ISO_IMAGE_BRANDS:
            return MediaType(MediaKind.IMAGE, _ISO_IMAGE_BRANDS[brand])
        if brand == b"qt  ":
            return MediaType(MediaKind.VIDEO, "video/quicktime")
        return MediaType(MediaKind.VIDEO, "video/mp4")
    if head[4:8] in _QUICKTIME_ATOMS:  # old QuickTime files start without `ftyp`
        return MediaType(MediaKind.VIDEO, "video/quicktime")
    return None


def _riff(head: bytes) -> MediaType | None:
    if head[:4] != b"RIFF":
        return None
    if head[8:12] == b"WEBP":
        return MediaType(MediaKind.IMAGE, "image/webp")
    if head[8:12] == b"AVI ":
        return MediaType(MediaKind.VIDEO, "video/x-msvideo")
    return None


def _prefixed(head: bytes) -> MediaType | None:
    prefixes: tuple[tuple[bytes, MediaType], ...] = (
        (b"\xff\xd8\xff", MediaType(MediaKind.IMAGE, "image/jpeg")),
        (b"\x89PNG\r\n\x1a\n", MediaType(MediaKind.IMAGE, "image/png")),
        (b"GIF87a", MediaType(MediaKind.IMAGE, "image/gif")),
        (b"GIF89a", MediaType(MediaKind.IMAGE, "image/gif")),
        (b"II*\x00", MediaType(MediaKind.IMAGE, "image/tiff")),
        (b"MM\x00*", MediaType(MediaKind.IMAGE, "image/tiff")),
        (b"BM", MediaType(MediaKind.IMAGE, "image/bmp")),
        (b"\x00\x00\x01\xba", MediaType(MediaKind.VIDEO, "video/mpeg")),
    )
    for prefix, media_type in prefixes:
        if head.startswith(prefix):
            return media_type
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska or its WebM profile
        mime = "video/webm" if b"webm" in head[:64] else "video/x-matroska"
        return MediaType(MediaKind.VIDEO, mime)
    if len(head) > _MPEG_TS_PACKET and head[0] == head[_MPEG_TS_PACKET] == 0x47:
        return MediaType(MediaKind.VIDEO, "video/mp2t")
    return None


def sniff_media_type(head: bytes) -> MediaType | None:
    """The image or video type `head` (the first SNIFF_BYTES bytes) starts like, or None."""
    return _prefixed(head) or _riff(head) or _iso_bmff(head)
