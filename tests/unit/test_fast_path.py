"""The `[fast_path]` options on a CPU, each against eager on the tiny transformer (CUDA graphs need a GPU)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from service.config import AttentionBackend, FastPathConfig, ModelConfig, load_config
from service.engines.triton_backend.params import fast_path_config_from
from service.models import fast_path, loading, presets
from service.models import torch_components as tc
from service.models.stg_attention import perturbed_self_attention

# fp32 eager vs fp32 through another kernel or dynamo: rounding only.
EXACT = 1e-5
# E4M3 keeps 3 mantissa bits (each operand within 1/16); the tiny model's output lands at ~2% (relative L2).
FP8_RELATIVE = 0.1


def _transformer() -> Any:  # the tiny LTXVideoTransformer3DModel
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformer = presets.build_tiny_transformer()
    # Non-zero biases and adaLN tables, so that every path is exercised.
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for name, parameter in transformer.named_parameters():
            if name.endswith("bias") or "scale_shift_table" in name:
                parameter.normal_(0.0, 0.1)
    return transformer


Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _inputs(tokens: int = 48) -> Inputs:
    generator = torch.Generator().manual_seed(7)
    channels, text = presets.TINY_LATENT_CHANNELS, presets.TINY_TEXT_DIM
    mask = torch.ones(1, 16, dtype=torch.long)
    mask[:, 12:] = 0  # padded text: the masked cross-attention must still work on every backend
    return (
        torch.randn(1, tokens, channels, generator=generator),
        torch.full((1, tokens), 0.6),
        torch.rand(1, 3, tokens, generator=generator) * 10,
        torch.randn(1, 16, text, generator=generator),
        mask,
    )


def _velocity(transformer: Any, inputs: Inputs) -> torch.Tensor:
    return tc.TorchTransformer(transformer).velocity(*inputs)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    return _velocity(_transformer(), _inputs())


def test_defaults_are_off_and_change_nothing(reference: torch.Tensor) -> None:
    cfg = FastPathConfig()
    assert not cfg.enabled and cfg.dtype is None
    transformer = fast_path.apply_fast_path(_transformer(), cfg)
    assert torch.equal(_velocity(transformer, _inputs()), reference)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"fast_path.attention_backend: 'fastest'"):
        FastPathConfig(attention_backend="fastest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"fast_path.dtype"):
        FastPathConfig(dtype="int8")
    with pytest.raises(ValueError, match=r"fast_path.compile"):
        FastPathConfig(compile="false")  # type: ignore[arg-type]


def test_the_toml_section_and_the_triton_parameters(tmp_path) -> None:
    path = tmp_path / "service.toml"
    path.write_text('[fast_path]\ndtype = "bfloat16"\nattention_backend = "flash"\ncompile = true\n')
    cfg = load_config(path).fast_path
    assert cfg == FastPathConfig(dtype="bfloat16", attention_backend=AttentionBackend.FLASH, compile=True)
    assert cfg.attention_backend is AttentionBackend.FLASH
    parsed = fast_path_config_from(
        {"fast_path.fp8": "true", "fast_path.attention_backend": "cudnn", "seed": "3"}
    )
    assert parsed == FastPathConfig(fp8=True, attention_backend=AttentionBackend.CUDNN)
    assert fast_path_config_from({}) == FastPathConfig()
    with pytest.raises(ValueError, match=r"fast_path.compile: 'yes' is not true or false"):
        fast_path_config_from({"fast_path.compile": "yes"})


@pytest.mark.parametrize(
    "backend", [AttentionBackend.MATH, AttentionBackend.FLASH, AttentionBackend.EFFICIENT]
)
def test_attention_backends_match_eager(backend: AttentionBackend, reference: torch.Tensor) -> None:
    transformer = fast_path.apply_fast_path(_transformer(), FastPathConfig(attention_backend=backend))
    out = _velocity(transformer, _inputs())
    assert not torch.equal(out, torch.zeros_like(out))
    assert (out - reference).abs().max() < EXACT


def test_only_a_backend_that_cannot_serve_raises_and_the_config_falls_back() -> None:
    q = torch.randn(1, 2, 8, 16)
    # The CPU build has no memory-efficient kernel: alone it fails, which is how bench.gpu marks a row n/a ...
    with pytest.raises(RuntimeError), fast_path.only_sdpa_backend(AttentionBackend.EFFICIENT):
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    # ... while the configured backend list falls back to math, so the service keeps working.
    with torch.nn.attention.sdpa_kernel(
        fast_path.SDPA_BACKENDS[AttentionBackend.EFFICIENT], set_priority=True
    ):
        torch.nn.functional.scaled_dot_product_attention(q, q, q)


def test_regional_compile_captures_each_block_and_matches_eager(reference: torch.Tensor) -> None:
    transformer = _transformer()
    assert fast_path.compile_blocks(copy.deepcopy(transformer), backend="eager") == 1
    torch._dynamo.reset()
    fast_path.apply_fast_path(transformer, FastPathConfig(compile=True), {"backend": "eager"})
    block = transformer.transformer_blocks[0]
    assert block._compiled_call_impl is not None  # the block, not the whole model, is compiled
    assert transformer._compiled_call_impl is None
    assert (_velocity(transformer, _inputs()) - reference).abs().max() < EXACT


@pytest.mark.slow  # inductor's CPU code generation: about a minute on 2 shared cores
def test_regional_compile_with_inductor_matches_eager(reference: torch.Tensor) -> None:
    torch._dynamo.reset()
    transformer = fast_path.apply_fast_path(_transformer(), FastPathConfig(compile=True))
    assert (_velocity(transformer, _inputs()) - reference).abs().max() < 1e-4


def test_per_tensor_fp8_quantization_bounds() -> None:
    weight = torch.randn(64, 32, generator=torch.Generator().manual_seed(3))
    quantized, scale = fast_path.quantize_per_tensor(weight)
    assert quantized.dtype == torch.float8_e4m3fn
    assert float(quantized.float().abs().max()) == fast_path.E4M3_MAX  # the amax maps to 448
    error = (quantized.float() * scale - weight).abs()
    assert 0 < float(error.max()) <= float(weight.abs().max()) / 16


def test_fp8_linear_against_the_full_precision_one() -> None:
    generator = torch.Generator().manual_seed(5)
    linear = nn.Linear(32, 48)
    x = torch.randn(2, 10, 32, generator=generator)
    expected = linear(x)
    for scale in (None, float(x.abs().max()) / fast_path.E4M3_MAX):
        out = fast_path.Fp8Linear(linear, scale)(x)
        assert out.shape == expected.shape and out.dtype == expected.dtype
        assert 0 < _relative(out.detach(), expected.detach()) < FP8_RELATIVE


def test_fp8_transformer_matches_eager_within_fp8_rounding(reference: torch.Tensor) -> None:
    transformer = _transformer()
    candidates = fast_path.fp8_candidates(transformer)
    fast_path.apply_fast_path(transformer, FastPathConfig(fp8=True))
    swapped = [m for m in transformer.transformer_blocks.modules() if isinstance(m, fast_path.Fp8Linear)]
    assert len(swapped) == len(candidates) > 0
    assert type(transformer.proj_out) is nn.Linear  # the output projection stays in the model dtype
    out = _velocity(transformer, _inputs())
    assert 0 < _relative(out, reference) < FP8_RELATIVE


def test_static_fp8_scales_come_from_a_calibration_call(reference: torch.Tensor) -> None:
    transformer = _transformer()
    scales = fast_path.calibrate_input_scales(transformer, lambda: _velocity(transformer, _inputs()))
    assert scales.keys() == fast_path.fp8_candidates(transformer).keys()
    assert not transformer.transformer_blocks[0].attn1.to_q._forward_pre_hooks  # hooks removed
    fast_path.swap_fp8_linears(transformer, scales)
    to_q = transformer.transformer_blocks[0].attn1.to_q
    assert float(to_q.input_scale) == pytest.approx(scales["transformer_blocks.0.attn1.to_q"])
    assert 0 < _relative(_velocity(transformer, _inputs()), reference) < FP8_RELATIVE


def test_cuda_graphs_refuse_a_cpu_model() -> None:
    with pytest.raises(ValueError, match=r"fast_path.cuda_graphs needs a CUDA device"):
        fast_path.apply_fast_path(_transformer(), FastPathConfig(cuda_graphs=True))


def test_graphs_are_not_replayed_under_stg_or_lora() -> None:
    transformer = _transformer()
    assert fast_path.graph_safe(transformer)
    with perturbed_self_attention(transformer, [0], torch.tensor([True])):
        assert not fast_path.graph_safe(transformer)
    assert fast_path.graph_safe(transformer)
    transformer._hf_peft_config_loaded = True
    assert not fast_path.graph_safe(transformer)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU; this machine has none"
)
def test_cuda_graphs_replay_what_eager_computes() -> None:
    transformer = _transformer().cuda()
    inputs: Any = tuple(t.cuda() for t in _inputs())
    expected = _velocity(transformer, inputs)
    fast_path.apply_fast_path(transformer, FastPathConfig(cuda_graphs=True))
    for _ in range(2):
        assert (_velocity(transformer, inputs) - expected).abs().max() < EXACT


def test_load_models_applies_the_fast_path_to_its_own_copy() -> None:
    plain = loading.load_models(ModelConfig())
    fast = loading.load_models(ModelConfig(), FastPathConfig(fp8=True, attention_backend="math"))  # type: ignore[arg-type]
    assert fast is not plain
    assert fast is loading.load_models(ModelConfig(), FastPathConfig(fp8=True, attention_backend="math"))  # type: ignore[arg-type]
    fast_block: Any = fast.transformer.transformer_blocks[0]
    plain_block: Any = plain.transformer.transformer_blocks[0]
    assert isinstance(fast_block.attn1.to_q, fast_path.Fp8Linear)
    assert type(plain_block.attn1.to_q) is nn.Linear  # the shared models untouched
