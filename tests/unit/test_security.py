"""API key files, constant-time identification, bearer parsing, signed result URLs, TLS settings."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from service.api.tls import server_credentials
from service.security.api_keys import ApiKeyError, KeyRing, bearer_token, parse_api_keys
from service.security.config import AuthConfig
from service.security.signing import UrlSigner

KEY = "k" * 20
KEYS = f"""
[[keys]]
name = "renderer"
key = "{KEY}"

[[keys]]
name = "hashed"
sha256 = "{hashlib.sha256(b"another-key-0123456789").hexdigest()}"
endpoints = ["ltx-video-lora"]
"""


def test_keys_identify_by_name_and_endpoints() -> None:
    ring = KeyRing(parse_api_keys(KEYS))
    renderer, hashed = ring.identify(KEY), ring.identify("another-key-0123456789")
    assert renderer is not None and renderer.name == "renderer" and renderer.allows("anything")
    assert hashed is not None and hashed.name == "hashed"
    assert hashed.allows("ltx-video-lora") and not hashed.allows("ltx-video-v097/extend")
    assert ring.identify("k" * 19) is None and ring.identify("") is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "at least one [[keys]]"),
        ('[[keys]]\nname = "a"\n', "keys[0]: set exactly one of key and sha256"),
        ('[[keys]]\nname = "a"\nkey = "short"\n', "keys[0].key"),
        ('[[keys]]\nname = "a"\nsha256 = "zz"\n', "keys[0].sha256"),
        ('[[keys]]\nname = "a"\nkey = "' + KEY + '"\nscope = 1\n', "unknown fields scope"),
        (
            '[[keys]]\nname = "a"\nkey = "' + KEY + '"\n[[keys]]\nname = "a"\nkey = "' + "x" * 20 + '"\n',
            "duplicated",
        ),
    ],
)
def test_bad_key_files_name_the_field(text: str, named: str) -> None:
    with pytest.raises(ApiKeyError, match=named.replace("[", r"\[").replace("]", r"\]")):
        parse_api_keys(text)


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Key abc") is None and bearer_token("Bearer ") is None and bearer_token(None) is None


def test_signed_urls_expire_and_bind_the_path() -> None:
    now = [1000.0]
    signer = UrlSigner(b"s" * 32, ttl_s=60, clock=lambda: now[0])
    query = signer.query("/results/job/a.mp4")
    assert signer.verify("/results/job/a.mp4", query)
    assert not signer.verify("/results/other/a.mp4", query)
    assert not signer.verify("/results/job/a.mp4", query.replace("sig=", "sig=0"))
    assert not signer.verify("/results/job/a.mp4", "")
    now[0] += 61
    assert not signer.verify("/results/job/a.mp4", query)


def test_signing_key_is_kept_across_restarts(tmp_path: Path) -> None:
    first = UrlSigner.from_file(None, 60, tmp_path / "k")
    again = UrlSigner.from_file(None, 60, tmp_path / "k")
    assert again.verify("/p", first.query("/p"))
    assert (tmp_path / "k").stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError, match="at least 16 bytes"):
        UrlSigner(b"short", 60)


def test_half_configured_tls_is_refused() -> None:
    assert server_credentials(AuthConfig()) is None
    with pytest.raises(ValueError, match=r"tls_cert_file and auth.tls_key_file"):
        server_credentials(AuthConfig(tls_cert_file="/x.pem"))
    with pytest.raises(ValueError, match="tls_client_ca_file needs"):
        server_credentials(AuthConfig(tls_client_ca_file="/ca.pem"))


def test_wire_scan_finds_the_endpoint_of_every_submit() -> None:
    from ltx.v1 import video_generation_pb2 as pb
    from service.api.endpoints import api_endpoint
    from service.api.wire import WireError, submit_endpoint
    from service.domain.specs import Endpoint

    for endpoint in Endpoint:
        request = pb.SubmitRequest(webhook_url="https://example.com/hook", idempotency_key="k")
        getattr(request.input, api_endpoint(endpoint).oneof_field).SetInParent()
        raw = request.SerializeToString()
        assert submit_endpoint(raw) is endpoint
        assert submit_endpoint(raw + raw) is endpoint  # concatenation merges messages: still that endpoint
    assert submit_endpoint(pb.SubmitRequest(webhook_url="x").SerializeToString()) is None
    with pytest.raises(WireError):
        submit_endpoint(b"\x0a\x10\x0a")  # a length running past the end
