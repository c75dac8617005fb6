"""The `ltx-2.3` preset's loader on a real diffusers-layout directory: the tiny preset's weights saved the
way the real checkpoint is laid out (no hub here, so the tiny preset is the only source of weights), loaded
back through `load_ltx2_models` / `load_ltx2_assets`, and shown to be the saved models and to generate the
same frames and audio as the tiny preset itself.

The real text encoder is `Gemma3ForConditionalGeneration` (Gemma-3 with its SigLIP vision tower), the tiny
one a text-only `Gemma3ForCausalLM`. The directory holds a tiny conditional-generation model whose language
model and head carry the tiny weights (plus a tiny random vision tower), so that the loader runs the class
the real checkpoint needs; text-only prompts never reach the vision tower, so its hidden states are the
tiny preset's."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.loaders import single_file_utils as sfu
from safetensors.torch import load_file, save_file
from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig

from service.config import Ltx2ModelConfig, ServiceConfig
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo
from service.engines.local import LocalEngine
from service.models.ltx2 import (
    DISTILLED_LORA_FILE,
    TINY_TEXT_MAX_LENGTH,
    Ltx2Models,
    build_tiny_ltx2,
    load_ltx2_models,
)
from service.models.ltx2_component_modules import load_ltx2_assets, ltx2_geometry
from service.models.ltx2_loras import tiny_distilled_lora
from tests.engine_in_line import EngineInLine
from tests.unit.python_backend_utils import install_python_backend_utils
from tests.unit.test_local_engine_ltx2 import SPEC

SEED = 0
# A SigLIP tower of 4x4 patches pooled to 2x2 image tokens: the smallest that Gemma-3's projector accepts.
TINY_VISION_CONFIG: dict[str, Any] = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}
DIFFUSERS_PARTS = ("transformer", "connectors", "vae", "audio_vae", "vocoder", "upsampler")
SUBFOLDERS = {"upsampler": "latent_upsampler"}


def _conditional_generation_gemma(models: Ltx2Models) -> Gemma3ForConditionalGeneration:
    causal: Any = models.text_encoder  # the tiny preset's Gemma3ForCausalLM
    text_config = causal.config
    config = Gemma3Config(
        text_config=text_config.to_dict(),
        vision_config=SiglipVisionConfig(**TINY_VISION_CONFIG).to_dict(),
        mm_tokens_per_image=4,
        image_token_index=text_config.vocab_size - 1,
        boi_token_index=text_config.vocab_size - 2,
        eoi_token_index=text_config.vocab_size - 3,
    )
    gemma = Gemma3ForConditionalGeneration(config).eval()
    gemma.model.language_model.load_state_dict(causal.model.state_dict())
    gemma.lm_head.load_state_dict(causal.lm_head.state_dict())
    return gemma


def save_tiny_as_checkpoint(root: Path, seed: int = SEED) -> Ltx2Models:
    """The tiny preset in the diffusers layout of the real LTX-2.3 checkpoint, with its distilled LoRA."""
    models = build_tiny_ltx2(seed)
    for part in DIFFUSERS_PARTS:
        getattr(models, part).save_pretrained(root / SUBFOLDERS.get(part, part))
    _conditional_generation_gemma(models).save_pretrained(root / "text_encoder")
    models.tokenizer.save_pretrained(root / "tokenizer")
    save_file(tiny_distilled_lora(models, seed), str(root / DISTILLED_LORA_FILE))
    return models


def checkpoint_config(root: Path, **changes: object) -> Ltx2ModelConfig:
    """The ltx-2.3 preset on `root`, with the tiny model's prompt length and STG block."""
    base = Ltx2ModelConfig(
        preset="ltx-2.3", model_dir=str(root), text_max_length=TINY_TEXT_MAX_LENGTH, stg_blocks=(0,)
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ltx2Models]:
    root = tmp_path_factory.mktemp("ltx-2.3")
    return root, save_tiny_as_checkpoint(root)


def _generate(config: ServiceConfig) -> GeneratedVideo:
    engine = EngineInLine(LocalEngine(config), config)
    return engine.generate(SPEC, JobContext.create(on_progress=lambda _: None))


def _assert_same_modules(loaded: torch.nn.Module, expected: torch.nn.Module) -> None:
    got, want = loaded.state_dict(), expected.state_dict()
    assert got.keys() == want.keys()
    for key, tensor in want.items():
        assert torch.equal(got[key], tensor), key


def test_the_loaded_models_are_the_saved_ones(saved: tuple[Path, Ltx2Models]) -> None:
    root, tiny = saved
    loaded = load_ltx2_models(checkpoint_config(root))
    for part in DIFFUSERS_PARTS:
        _assert_same_modules(getattr(loaded, part), getattr(tiny, part))
    assert isinstance(loaded.text_encoder, Gemma3ForConditionalGeneration)
    causal: Any = tiny.text_encoder
    _assert_same_modules(loaded.text_encoder.model.language_model, causal.model)
    _assert_same_modules(loaded.text_encoder.lm_head, causal.lm_head)
    assert loaded.distilled_lora == str(root / DISTILLED_LORA_FILE)
    assert loaded.text_max_length == TINY_TEXT_MAX_LENGTH and loaded.stg_blocks == (0,)
    prompt = ["a red fox runs through snow"]
    assert loaded.tokenizer(prompt)["input_ids"] == tiny.tokenizer(prompt)["input_ids"]
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.chat_template is not None


def test_the_checkpoint_generates_the_tiny_presets_frames_and_audio(saved: tuple[Path, Ltx2Models]) -> None:
    root, _ = saved
    from_dir = _generate(ServiceConfig(ltx2=checkpoint_config(root)))
    tiny = _generate(ServiceConfig(ltx2=Ltx2ModelConfig(seed=SEED)))
    assert from_dir.frames.shape == tiny.frames.shape == (SPEC.num_frames, SPEC.height, SPEC.width, 3)
    assert np.array_equal(from_dir.frames, tiny.frames)
    assert from_dir.audio is not None and tiny.audio is not None
    np.testing.assert_allclose(from_dir.audio, tiny.audio, atol=1e-6)


def test_the_component_assets_are_those_of_the_saved_preset(saved: tuple[Path, Ltx2Models]) -> None:
    root, tiny = saved
    geometry, tokenizer = load_ltx2_assets(checkpoint_config(root))
    assert geometry == ltx2_geometry(tiny)
    prompt = ["a red fox runs through snow"]
    assert tokenizer(prompt)["input_ids"] == tiny.tokenizer(prompt)["input_ids"]


def test_bfloat16_loads_bf16_parameters_and_generates(saved: tuple[Path, Ltx2Models]) -> None:
    root, _ = saved
    config = checkpoint_config(root, dtype="bfloat16")
    models = load_ltx2_models(config)
    for part in (*DIFFUSERS_PARTS, "text_encoder"):
        dtypes = {p.dtype for p in getattr(models, part).parameters()}
        assert dtypes == {torch.bfloat16}, (part, dtypes)
    spec = dataclasses.replace(SPEC, use_multiscale=False, num_inference_steps=1)
    video = EngineInLine(LocalEngine(ServiceConfig(ltx2=config)), ServiceConfig(ltx2=config)).generate(
        spec, JobContext.create(on_progress=lambda _: None)
    )
    assert video.frames.shape == (spec.num_frames, spec.height, spec.width, 3)
    assert video.audio is not None and np.isfinite(video.audio).all() and np.abs(video.audio).max() > 0


def test_a_stg_block_past_the_transformer_names_the_field(saved: tuple[Path, Ltx2Models]) -> None:
    root, _ = saved
    with pytest.raises(ValueError, match=r"ltx2\.stg_blocks.*1 block"):
        load_ltx2_models(checkpoint_config(root, stg_blocks=(28,)))


@pytest.fixture
def component_model_class(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`Ltx2ComponentModel` importable here: the python_backend's own utilities module (its pure-Python
    half, shipped with pytriton), as the stub process has it."""
    install_python_backend_utils(monkeypatch)
    from service.engines.triton_backend.ltx2_component_model import Ltx2ComponentModel

    return Ltx2ComponentModel


def _initialized(model_class: Any, name: str, parameters: dict[str, str]) -> Any:
    """A Triton component model as tritonserver initializes it from config.pbtxt's string parameters."""
    values = {key: {"string_value": value} for key, value in ({"component": name} | parameters).items()}
    model = model_class()
    model.initialize({"model_config": json.dumps({"parameters": values})})
    return model


def _checkpoint_parameters(root: Path) -> dict[str, str]:
    return {
        "ltx2.preset": "ltx-2.3",
        "ltx2.model_dir": str(root),
        "ltx2.text_max_length": str(TINY_TEXT_MAX_LENGTH),
        "ltx2.stg_blocks": "0",
    }


def test_the_triton_components_on_the_checkpoint_are_the_tiny_presets(
    saved: tuple[Path, Ltx2Models], component_model_class: Any
) -> None:
    root, tiny = saved
    checkpoint = _checkpoint_parameters(root)

    def component(name: str, parameters: dict[str, str]) -> Any:
        return _initialized(component_model_class, name, parameters).module

    for name in ("ltx2_transformer", "ltx2_vae_decoder", "ltx2_audio_decoder", "ltx2_latent_upsampler"):
        _assert_same_modules(component(name, checkpoint), component(name, {}))
    batch = tiny.tokenizer(
        ["a red fox runs through snow"],
        padding="max_length",
        max_length=TINY_TEXT_MAX_LENGTH,
        return_tensors="pt",
    )
    inputs = (batch["input_ids"], batch["attention_mask"], torch.tensor([0.5]))
    with torch.no_grad():
        from_dir = component("ltx2_text_encoder", checkpoint)(*inputs)
        expected = component("ltx2_text_encoder", {})(*inputs)
    assert len(from_dir) == len(expected) == 3
    for got, want in zip(from_dir, expected, strict=True):
        assert torch.equal(got, want)


def _store_block_linears_in_fp8(transformer_dir: Path) -> dict[str, torch.Tensor]:
    """The transformer blocks' linear weights re-saved as float8_e4m3fn (how FP8 checkpoints store them);
    returns the stored tensors."""
    weights = transformer_dir / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    fp8 = {
        key: tensor.to(torch.float8_e4m3fn)
        for key, tensor in state.items()
        if key.startswith("transformer_blocks.") and key.endswith(".weight") and tensor.dim() == 2
    }
    save_file(state | fp8, str(weights))
    return fp8


def test_an_fp8_stored_checkpoint_loads_into_bfloat16_and_generates(tmp_path: Path) -> None:
    save_tiny_as_checkpoint(tmp_path)
    stored = _store_block_linears_in_fp8(tmp_path / "transformer")
    assert stored
    config = checkpoint_config(tmp_path, dtype="bfloat16")
    transformer = load_ltx2_models(config).transformer
    assert {p.dtype for p in transformer.parameters()} == {torch.bfloat16}
    loaded = transformer.state_dict()
    for key, tensor in stored.items():
        assert torch.equal(loaded[key], tensor.to(torch.bfloat16)), key
    spec = dataclasses.replace(SPEC, use_multiscale=False, num_inference_steps=1)
    service = ServiceConfig(ltx2=config)
    video = EngineInLine(LocalEngine(service), service).generate(
        spec, JobContext.create(on_progress=lambda _: None)
    )
    assert video.frames.shape == (spec.num_frames, spec.height, spec.width, 3)
    assert video.audio is not None and np.isfinite(video.audio).all()


def test_fp8_compute_is_not_a_dtype_choice() -> None:
    # FP8 compute (fast_path.fp8's scaled-mm linears) is wired for LTX-Video only; ltx2.dtype says so.
    with pytest.raises(ValueError, match=r"ltx2\.dtype: 'float8_e4m3fn' is not one of float32, bfloat16"):
        load_ltx2_models(Ltx2ModelConfig(dtype="float8_e4m3fn"))


def test_config_pbtxt_parameters_round_trip_the_new_fields(tmp_path: Path) -> None:
    from export.repository import ltx2_config_parameters
    from service.engines.triton_backend.params import ltx2_config_from

    config = checkpoint_config(tmp_path, stg_blocks=(0, 2), text_max_length=77)
    assert ltx2_config_from(ltx2_config_parameters(config)) == config


def test_the_single_file_form_needs_the_vae_in_diffusers_layout(tmp_path: Path) -> None:
    # diffusers 0.42.1 converts the 2.0 VAE decoder's keys only, and has no single-file loader for the audio
    # VAE: both come from config_dir in diffusers layout.
    (tmp_path / "vae").mkdir()
    build_tiny_ltx2(SEED).vae.save_config(tmp_path / "vae")
    single = tmp_path / "ltx-2.3-22b-dev.safetensors"
    save_file({"x": torch.zeros(1)}, str(single))
    config = Ltx2ModelConfig(preset="ltx-2.3", single_file=str(single), config_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"ltx2\.single_file: .* 2\.3 vae .*diffusers layout"):
        load_ltx2_models(config)


def _diffusers_rename_table(function: Any, name: str) -> dict[str, str]:
    """A rename table of diffusers' single-file conversion, read from its source (it is a local there)."""
    tree = ast.parse(inspect.getsource(function).lstrip())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            table: dict[str, str] = ast.literal_eval(node.value)
            return table
    raise AssertionError(f"{name} is no longer in {function.__name__}")


def _original_transformer_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` under the original LTX-2 key names: diffusers' rename table undone, each name checked by
    running it through diffusers' own conversion. `adaln_single` -> `time_embed` is the conversion's one
    special case (a handler, not the table): the check below is what keeps that inverse honest."""
    convert = sfu.convert_ltx2_transformer_to_diffusers
    table = _diffusers_rename_table(convert, "LTX_2_0_TRANSFORMER_KEYS_RENAME_DICT")
    prefix = next(original for original, renamed in table.items() if renamed == "")
    original: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = key
        for before, after in reversed(table.items()):
            name = name.replace(after, before) if after else name
        for special in ("time_embed.", "audio_time_embed."):
            if name.startswith(special):
                name = special.replace("time_embed.", "adaln_single.") + name[len(special) :]
        assert list(convert({prefix + name: tensor}).keys()) == [key], key
        original[prefix + name] = tensor.contiguous()
    return original


def test_the_single_file_transformer_loads_through_the_preset(tmp_path: Path) -> None:
    tiny = save_tiny_as_checkpoint(tmp_path)
    for weights in (tmp_path / "transformer").glob("*.safetensors"):
        weights.unlink()  # only its config stays: the weights come from the single file
    single = tmp_path / "ltx-2.3-22b-dev.safetensors"
    save_file(_original_transformer_keys(tiny.transformer.state_dict()), str(single))
    config = checkpoint_config(tmp_path, model_dir=None, single_file=str(single), config_dir=str(tmp_path))
    loaded = load_ltx2_models(config)
    for part in DIFFUSERS_PARTS:
        _assert_same_modules(getattr(loaded, part), getattr(tiny, part))
