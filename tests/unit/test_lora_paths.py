"""Where LoRAs may come from: local paths off by default, confined to configured roots with errors
that reveal nothing outside them; weight_name traversal; the download cache (TTL, eviction, truncation)."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import LoraConfig, load_config
from service.domain.errors import ErrorType, JobError
from service.domain.specs import LoraSpec
from service.inputs.lora import fetch_lora


def _error(spec: LoraSpec, cfg: LoraConfig) -> JobError:
    with pytest.raises(JobError) as failure:
        fetch_lora(0, spec, cfg)
    return failure.value


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path, LoraConfig]:
    allowed = tmp_path / "loras"
    allowed.mkdir()
    (allowed / "style.safetensors").write_bytes(b"x")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.safetensors").write_bytes(b"x")
    cfg = LoraConfig(cache_dir=str(tmp_path / "cache"), allow_local_paths=True, local_roots=(str(allowed),))
    return allowed, outside, cfg


def test_local_paths_are_off_by_default(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"x")
    error = _error(LoraSpec(str(tmp_path / "a.safetensors")), LoraConfig())
    assert error.error_type is ErrorType.INPUT_FETCH_FAILED and "disabled" in error.message


def test_a_path_inside_a_root_is_used(roots: tuple[Path, Path, LoraConfig]) -> None:
    allowed, _, cfg = roots
    assert (
        fetch_lora(0, LoraSpec(str(allowed / "style.safetensors")), cfg)
        == (allowed / "style.safetensors").resolve()
    )


@pytest.mark.parametrize("name", ["key.safetensors", "absent.safetensors"])
def test_outside_the_roots_existing_or_not_gives_the_same_answer(
    roots: tuple[Path, Path, LoraConfig], name: str
) -> None:
    allowed, outside, cfg = roots
    for path in (outside / name, allowed / ".." / "secret" / name):
        error = _error(LoraSpec(str(path)), cfg)
        assert error.error_type is ErrorType.INPUT_FETCH_FAILED
        assert error.message.endswith("is not inside a LoRA directory this server allows")


def test_a_symlink_out_of_the_root_is_refused(roots: tuple[Path, Path, LoraConfig]) -> None:
    allowed, outside, cfg = roots
    os.symlink(outside / "key.safetensors", allowed / "link.safetensors")
    assert "not inside" in _error(LoraSpec(str(allowed / "link.safetensors")), cfg).message


def test_a_5000_character_path_is_a_clean_lora_failure(roots: tuple[Path, Path, LoraConfig]) -> None:
    allowed, _, cfg = roots
    error = _error(LoraSpec(str(allowed / ("a" * 5000))), cfg)
    assert error.error_type is ErrorType.INPUT_FETCH_FAILED  # not internal_error


@pytest.mark.parametrize(
    "weight_name", ["../secret/key.safetensors", "..", "a/b.safetensors", "a\\b", "x\0y"]
)
def test_weight_name_traversal_is_refused(roots: tuple[Path, Path, LoraConfig], weight_name: str) -> None:
    allowed, _, cfg = roots
    error = _error(LoraSpec(str(allowed), weight_name=weight_name), cfg)
    assert "weight_name must be a file name" in error.message


def test_the_cache_lives_in_the_data_dir(tmp_path: Path) -> None:
    config = load_config(None, data_dir=str(tmp_path / "data"))
    assert Path(config.lora.cache_dir) == tmp_path / "data" / "lora-cache"


class _Server(http.server.BaseHTTPRequestHandler):
    body = b"A" * 1000
    truncate = False
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2] if self.truncate else self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lora_server() -> Iterator[str]:
    _Server.truncate, _Server.hits = False, 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _web_cfg(tmp_path: Path, **extra: object) -> LoraConfig:
    return LoraConfig(cache_dir=str(tmp_path / "cache"), allow_private_networks=True, **extra)  # type: ignore[arg-type]


def test_a_truncated_download_is_never_cached(tmp_path: Path, lora_server: str) -> None:
    _Server.truncate = True
    error = _error(LoraSpec(f"{lora_server}/a.safetensors"), _web_cfg(tmp_path))
    assert (
        error.error_type is ErrorType.INPUT_FETCH_FAILED
        and "stopped after 500 of 1000 bytes" in error.message
    )
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_cache_is_refreshed_after_its_ttl_and_evicted_past_its_size(
    tmp_path: Path, lora_server: str
) -> None:
    cfg = _web_cfg(tmp_path, cache_ttl_s=3600.0, cache_max_bytes=2500)
    first = fetch_lora(0, LoraSpec(f"{lora_server}/a.safetensors"), cfg)
    fetch_lora(0, LoraSpec(f"{lora_server}/a.safetensors"), cfg)
    assert _Server.hits == 1  # cached
    old = time.time() - 7200
    os.utime(first, (old, old))
    fetch_lora(0, LoraSpec(f"{lora_server}/a.safetensors"), cfg)
    assert _Server.hits == 2  # past its TTL: fetched again
    for name in ("b", "c"):
        fetch_lora(0, LoraSpec(f"{lora_server}/{name}.safetensors"), cfg)
        time.sleep(0.01)
    cached = list((tmp_path / "cache").glob("*.safetensors"))
    assert len(cached) == 2  # 3 x 1000 bytes > 2500: the least recently used one went
    assert not first.exists()
