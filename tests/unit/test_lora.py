"""LoRAs on the tiny transformer: both key formats, scales, per-job removal, failures, http download."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from service.config import LoraConfig, ModelConfig
from service.domain.errors import ErrorType, JobError
from service.domain.specs import LoraSpec
from service.engines import torch_bindings
from service.models import loading
from service.pipelines.components import Components
from tests.fixtures_lora import applied_loras, tiny_lora_weights, write_lora


@pytest.fixture(scope="module")
def models() -> loading.LoadedModels:
    return loading.load_models(ModelConfig())


@pytest.fixture(scope="module")
def components(models: loading.LoadedModels) -> Components:
    return torch_bindings.bind_components(models)


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("loras")
    weights = tiny_lora_weights()
    return {
        fmt: write_lora(directory / f"{fmt}.safetensors", weights, fmt) for fmt in ("diffusers", "original")
    }


@pytest.fixture
def lora_config(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> LoraConfig:
    # The test server is on 127.0.0.1, which production configs refuse.
    return LoraConfig(
        cache_dir=str(tmp_path / "cache"),
        allow_private_networks=True,
        allow_local_paths=True,
        local_roots=(str(tmp_path_factory.getbasetemp()),),  # the test's LoRA files live there
    )


def _velocity(components: Components) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    tokens = 8
    embeds, mask = components.text_encoder.encode(["a lighthouse at dusk"])
    return components.transformer.velocity(
        torch.randn(1, tokens, components.geometry.latent_channels, generator=generator),
        torch.full((1, tokens), 0.8),
        torch.rand(1, 3, tokens, generator=generator) * 64,
        embeds,
        mask,
    )


def _velocity_with(
    components: Components, models: loading.LoadedModels, loras: list[LoraSpec], cfg: LoraConfig
) -> torch.Tensor:
    with applied_loras(models.transformer, loras, cfg):
        return _velocity(components)


def _has_lora_layers(models: loading.LoadedModels) -> bool:
    return any(isinstance(module, BaseTunerLayer) for module in models.transformer.modules())


@pytest.mark.parametrize("key_format", ["diffusers", "original"])
def test_scale_zero_is_the_base_model_and_scale_one_is_not(
    components: Components,
    models: loading.LoadedModels,
    lora_files: dict[str, Path],
    lora_config: LoraConfig,
    key_format: str,
) -> None:
    base = _velocity(components)
    path = str(lora_files[key_format])
    assert torch.equal(_velocity_with(components, models, [LoraSpec(path, scale=0.0)], lora_config), base)
    assert not torch.allclose(
        _velocity_with(components, models, [LoraSpec(path, scale=1.0)], lora_config), base
    )


def test_both_key_formats_of_the_same_weights_give_the_same_output(
    components: Components, models: loading.LoadedModels, lora_files: dict[str, Path], lora_config: LoraConfig
) -> None:
    outputs = [
        _velocity_with(components, models, [LoraSpec(str(lora_files[fmt]), scale=0.7)], lora_config)
        for fmt in ("diffusers", "original")
    ]
    assert torch.equal(outputs[0], outputs[1])


def test_two_loras_stack_their_scales(
    components: Components, models: loading.LoadedModels, lora_files: dict[str, Path], lora_config: LoraConfig
) -> None:
    halves = [LoraSpec(str(lora_files["diffusers"]), 0.5), LoraSpec(str(lora_files["original"]), 0.5)]
    whole = [LoraSpec(str(lora_files["diffusers"]), 1.0)]
    expected = _velocity_with(components, models, whole, lora_config)
    assert torch.allclose(_velocity_with(components, models, halves, lora_config), expected, atol=1e-5)


def test_lora_is_gone_after_the_block_even_when_it_fails(
    components: Components, models: loading.LoadedModels, lora_files: dict[str, Path], lora_config: LoraConfig
) -> None:
    base = _velocity(components)
    lora = LoraSpec(str(lora_files["original"]))
    with (
        pytest.raises(RuntimeError, match="job failed"),
        applied_loras(models.transformer, [lora], lora_config),
    ):
        assert _has_lora_layers(models)
        raise RuntimeError("job failed")
    assert not _has_lora_layers(models)
    assert not getattr(models.transformer, "peft_config", None)
    assert torch.equal(_velocity(components), base)


def _load_error(models: loading.LoadedModels, loras: list[LoraSpec], cfg: LoraConfig) -> JobError:
    with pytest.raises(JobError) as caught, applied_loras(models.transformer, loras, cfg):
        pass
    assert not _has_lora_layers(models)
    return caught.value


def test_missing_file_names_the_lora(
    models: loading.LoadedModels, tmp_path: Path, lora_config: LoraConfig
) -> None:
    error = _load_error(models, [LoraSpec(str(tmp_path / "absent.safetensors"))], lora_config)
    # Not getting the file is input_fetch_failed, from a path as from a URL (issue 8: they differed).
    assert error.error_type is ErrorType.INPUT_FETCH_FAILED
    assert (
        "loras[0]" in error.message and "absent.safetensors" in error.message and "not found" in error.message
    )


def test_file_that_is_not_safetensors_fails_clearly(
    models: loading.LoadedModels, lora_files: dict[str, Path], tmp_path: Path, lora_config: LoraConfig
) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a tensor file at all")
    good = LoraSpec(str(lora_files["diffusers"]))
    error = _load_error(models, [good, LoraSpec(str(junk))], lora_config)
    assert error.error_type is ErrorType.LORA_LOAD_FAILED
    assert error.message.startswith("loras[1]") and "safetensors" in error.message


def test_keys_that_match_no_layer_fail_clearly(
    models: loading.LoadedModels, tmp_path: Path, lora_config: LoraConfig
) -> None:
    foreign = {f"blocks.{k}": v for k, v in tiny_lora_weights().items()}
    path = write_lora(tmp_path / "foreign.safetensors", foreign, "diffusers")
    error = _load_error(models, [LoraSpec(str(path))], lora_config)
    assert error.error_type is ErrorType.LORA_LOAD_FAILED
    assert "loras[0]" in error.message and "names no layer" in error.message
    assert "blocks.transformer_blocks.0.attn1" in error.message  # the key it could not place


def test_local_paths_can_be_disabled(
    models: loading.LoadedModels, lora_files: dict[str, Path], tmp_path: Path
) -> None:
    cfg = LoraConfig(cache_dir=str(tmp_path), allow_local_paths=False)
    error = _load_error(models, [LoraSpec(str(lora_files["diffusers"]))], cfg)
    assert (
        error.error_type is ErrorType.INPUT_FETCH_FAILED and "local LoRA paths are disabled" in error.message
    )


class _Files(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        body = self.files.get(self.path.removeprefix("/nolength"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        if not self.path.startswith("/nolength"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_base(lora_files: dict[str, Path]) -> Iterator[str]:
    _Files.files = {"/lora.safetensors": lora_files["original"].read_bytes()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_lora_is_downloaded_once_and_applied(
    components: Components,
    models: loading.LoadedModels,
    lora_files: dict[str, Path],
    http_base: str,
    lora_config: LoraConfig,
) -> None:
    local = _velocity_with(components, models, [LoraSpec(str(lora_files["original"]))], lora_config)
    url = f"{http_base}/lora.safetensors"
    _Files.requests.clear()
    for _ in range(2):
        assert torch.equal(_velocity_with(components, models, [LoraSpec(url)], lora_config), local)
    assert _Files.requests == ["/lora.safetensors"]  # the second job read the cache


@pytest.mark.parametrize("route", ["", "/nolength"])
def test_oversize_download_is_refused(
    models: loading.LoadedModels, http_base: str, tmp_path: Path, route: str
) -> None:
    cfg = LoraConfig(cache_dir=str(tmp_path), max_bytes=1024, allow_private_networks=True)
    error = _load_error(models, [LoraSpec(f"{http_base}{route}/lora.safetensors")], cfg)
    # ARCHITECTURE.md's error table: an input URL that is too large is input_fetch_failed.
    assert error.error_type is ErrorType.INPUT_FETCH_FAILED
    assert "loras[0].path" in error.message and "limit of 1024" in error.message
    assert list(tmp_path.iterdir()) == []  # no partial file left in the cache


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_url_is_an_input_fetch_failure(
    models: loading.LoadedModels, lora_config: LoraConfig
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/lora.safetensors?token=s3cret"
    error = _load_error(models, [LoraSpec(url)], lora_config)
    assert error.error_type is ErrorType.INPUT_FETCH_FAILED
    assert "loras[0].path" in error.message and "cannot connect" in error.message
    assert "s3cret" not in error.message


def test_private_address_is_refused_by_default(
    models: loading.LoadedModels, http_base: str, tmp_path: Path
) -> None:
    cfg = LoraConfig(cache_dir=str(tmp_path))  # the default: no private networks
    error = _load_error(models, [LoraSpec(f"{http_base}/lora.safetensors")], cfg)
    assert error.error_type is ErrorType.INPUT_FETCH_FAILED
    assert "loras[0].path" in error.message and "127.0.0.1" in error.message
    assert list(tmp_path.iterdir()) == []


def test_http_error_status_is_an_input_fetch_failure(
    models: loading.LoadedModels, http_base: str, lora_config: LoraConfig
) -> None:
    error = _load_error(models, [LoraSpec(f"{http_base}/missing.safetensors")], lora_config)
    assert error.error_type is ErrorType.INPUT_FETCH_FAILED and "404" in error.message
