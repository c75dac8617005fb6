"""LoRA key formats (kohya, ComfyUI, diffusers), alpha/rank scaling and every targeted module, on the tiny
transformer. The expected update of a module is written from the kohya definition, not from our code:
W' x = W x + scale * (alpha / rank) * up @ down @ x."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from service.config import LoraConfig, ModelConfig
from service.domain.errors import ErrorType, JobError
from service.domain.specs import LoraSpec
from service.models import loading
from service.models.lora_keys import LoraKeyError, to_peft_weights
from tests.fixtures_lora import (
    ALL_LINEAR_MODULES,
    applied_loras,
    tiny_lora_weights,
    write_kohya_lora,
    write_lora,
)

MODULE = "transformer_blocks.0.ff.net.2"  # a feed-forward layer, which attention-only loaders miss


@pytest.fixture(scope="module")
def models() -> loading.LoadedModels:
    return loading.load_models(ModelConfig())


@pytest.fixture
def cfg(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> LoraConfig:
    return LoraConfig(
        cache_dir=str(tmp_path / "cache"),
        allow_local_paths=True,
        local_roots=(str(tmp_path_factory.getbasetemp()),),
    )


def _layer(models: loading.LoadedModels) -> torch.nn.Linear:
    layer = models.transformer.get_submodule(MODULE)
    assert isinstance(layer, torch.nn.Linear)
    return layer


def _module_output(models: loading.LoadedModels, loras: list[LoraSpec], cfg: LoraConfig) -> torch.Tensor:
    x = torch.randn(3, _layer(models).in_features, generator=torch.Generator().manual_seed(0))
    with applied_loras(models.transformer, loras, cfg), torch.no_grad():
        return models.transformer.get_submodule(MODULE)(x)


def _expected(
    models: loading.LoadedModels, down: torch.Tensor, up: torch.Tensor, factor: float
) -> torch.Tensor:
    layer = _layer(models)
    x = torch.randn(3, layer.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return layer(x) + factor * (x @ down.T @ up.T)


@pytest.mark.parametrize("flat", [False, True], ids=["comfyui", "kohya-flat"])
def test_alpha_over_rank_scales_the_update_of_a_feed_forward_layer(
    models: loading.LoadedModels, cfg: LoraConfig, tmp_path: Path, flat: bool
) -> None:
    rank, alpha, scale = 4, 2.0, 0.8
    generator = torch.Generator().manual_seed(3)
    layer = _layer(models)
    down = torch.randn(rank, layer.in_features, generator=generator)
    up = torch.randn(layer.out_features, rank, generator=generator)
    name = "lora_unet_" + MODULE.replace(".", "_") if flat else f"diffusion_model.{MODULE}"
    path = tmp_path / "kohya.safetensors"
    save_file(
        {
            f"{name}.lora_down.weight": down,
            f"{name}.lora_up.weight": up,
            f"{name}.alpha": torch.tensor(alpha),
        },
        str(path),
    )
    got = _module_output(models, [LoraSpec(str(path), scale=scale)], cfg)
    expected = _expected(models, down, up, scale * alpha / rank)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    # And not what ignoring alpha (factor = scale) would give.
    assert not torch.allclose(got, _expected(models, down, up, scale), atol=1e-3)


@pytest.mark.parametrize("flat", [False, True], ids=["comfyui", "kohya-flat"])
def test_kohya_file_with_alphas_equals_the_diffusers_file_on_every_module(
    models: loading.LoadedModels, cfg: LoraConfig, tmp_path: Path, flat: bool
) -> None:
    weights = tiny_lora_weights(target_modules=ALL_LINEAR_MODULES)
    diffusers_file = write_lora(tmp_path / "d.safetensors", weights, "diffusers")
    kohya_file = write_kohya_lora(tmp_path / "k.safetensors", weights, alpha=1.0, flat=flat)
    converted, has_alphas = to_peft_weights(
        {k: v for k, v in _load(kohya_file).items()}, {n for n, _ in models.transformer.named_modules()}
    )
    assert has_alphas and len(converted) == len(weights)  # every module, feed-forward included
    assert any(".ff.net.2." in key for key in converted)
    outputs = [
        _module_output(models, [LoraSpec(str(path), scale=0.6)], cfg) for path in (diffusers_file, kohya_file)
    ]
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)


def _load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_original_module_names_are_renamed() -> None:
    down, up = torch.ones(2, 8), torch.ones(4, 2)
    converted, _ = to_peft_weights(
        {"patchify_proj.lora_A.weight": down, "patchify_proj.lora_B.weight": up}, {"proj_in"}
    )
    assert set(converted) == {"transformer.proj_in.lora_A.weight", "transformer.proj_in.lora_B.weight"}


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("diffusion_model.transformer_blocks.0.attn9.to_q.lora_down.weight", "names no layer"),
        ("diffusion_model.transformer_blocks.0.attn1.to_q.hada_w1_a", "is not a LoRA weight"),
    ],
)
def test_an_unplaceable_key_fails_the_job_naming_it(
    models: loading.LoadedModels, cfg: LoraConfig, tmp_path: Path, key: str, why: str
) -> None:
    weights = {f"diffusion_model.{k}": v for k, v in tiny_lora_weights().items()}
    weights[key] = torch.zeros(4, 32)
    path = tmp_path / "bad.safetensors"
    save_file(weights, str(path))
    with pytest.raises(JobError) as caught, applied_loras(models.transformer, [LoraSpec(str(path))], cfg):
        pass
    assert caught.value.error_type is ErrorType.LORA_LOAD_FAILED
    # diffusers' reader swaps `diffusion_model.` for `transformer.`; the rest of the key is the file's.
    assert key.removeprefix("diffusion_model.") in caught.value.message and why in caught.value.message


def test_a_module_without_its_up_weight_is_named() -> None:
    with pytest.raises(LoraKeyError, match=r"to_q\.lora_down\.weight.*no lora_B/lora_up"):
        to_peft_weights({"to_q.lora_down.weight": torch.ones(2, 4)}, {"to_q"})
