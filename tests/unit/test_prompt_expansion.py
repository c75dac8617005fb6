"""Prompt expansion: tiny causal LMs through the real model-directory path, and a fake chat endpoint.

The contract under test (service/prompting/expander.py): the expansion replaces the prompt; it is the
model's reply only (never the framed instruction), cleaned and cut to `max_chars`; any failure falls back
to the prompt as given, with a job-log line that says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from service.domain.progress import Progress
from service.prompting import (
    DEFAULT_INSTRUCTION,
    ExpanderBackend,
    PromptExpansionConfig,
    build_prompt_expander,
    clean_expansion,
    expand_or_explain,
)

PROMPT = "a red fox runs through snow"
NOT_CONFIGURED = "expand_prompt requested but no prompt expander is configured; using the prompt as given"
END_OF_TEXT = "<|endoftext|>"
WORD = "wave"  # the one word the rigged model can say
# A minimal chat template, so the tokenizer-has-a-template path (what instruct checkpoints use) runs.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


class _Log:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, progress: Progress) -> None:
        self.messages.append(progress.message)


def _byte_tokenizer(chat_template: str | None) -> PreTrainedTokenizerFast:
    """One token per byte, plus the word token " wave" (reachable by decoding only, which is enough)."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate((END_OF_TEXT, *alphabet, "\u0120" + WORD))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=END_OF_TEXT, pad_token=END_OF_TEXT
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def _save_tiny_model(directory: Path, *, chat_template: str | None, rigged: bool) -> Path:
    tokenizer = _byte_tokenizer(chat_template)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=32, n_layer=1, n_head=2,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    if rigged:
        # Final layer norm with weight 0 outputs its bias whatever the input, and the tied embedding
        # turns that into logits: making the bias the word token's (enlarged) embedding direction makes
        # " wave" the argmax at every step, so greedy output is " wave" x max_new_tokens.
        word_id = tokenizer.convert_tokens_to_ids("\u0120" + WORD)
        with torch.no_grad():
            model.transformer.wte.weight[word_id] = 0.0
            model.transformer.wte.weight[word_id, 0] = 10.0
            model.transformer.ln_f.weight.zero_()
            model.transformer.ln_f.bias.zero_()
            model.transformer.ln_f.bias[0] = 1.0
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny_model(tmp_path_factory.mktemp("random_lm"), chat_template=CHAT_TEMPLATE, rigged=False)


@pytest.fixture(scope="module", params=[CHAT_TEMPLATE, None], ids=["chat_template", "plain_frame"])
def rigged_model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny_model(tmp_path_factory.mktemp("rigged_lm"), chat_template=request.param, rigged=True)


def _local(model_dir: Path, **overrides: object) -> PromptExpansionConfig:
    settings: dict[str, object] = {
        "backend": "local_model",
        "model_dir": str(model_dir),
        "max_new_tokens": 12,
    }
    return PromptExpansionConfig(**{**settings, **overrides})  # type: ignore[arg-type]


# --- local model --------------------------------------------------------------------------------------------


def test_rigged_model_output_is_exactly_the_generated_words(rigged_model_dir: Path) -> None:
    expander = build_prompt_expander(_local(rigged_model_dir))
    assert expander is not None
    # 12 new tokens of " wave"; the framed prompt is not part of the reply.
    assert expander.expand(PROMPT) == " ".join([WORD] * 12)


def test_rigged_model_output_is_cut_at_a_word_end(rigged_model_dir: Path) -> None:
    expander = build_prompt_expander(_local(rigged_model_dir, max_chars=22))
    assert expander is not None
    assert expander.expand(PROMPT) == "wave wave wave wave"  # 19 chars; a fifth word would end at 24


def test_random_model_expansion_is_bounded_printable_and_deterministic(random_model_dir: Path) -> None:
    config = _local(random_model_dir, max_new_tokens=40, max_chars=30)
    first = build_prompt_expander(config)
    second = build_prompt_expander(config)  # a second load of the same directory
    assert first is not None and second is not None
    expanded = first.expand(PROMPT)
    assert isinstance(expanded, str) and 0 < len(expanded) <= 30
    assert expanded == expanded.strip() and "\ufffd" not in expanded
    assert all(char.isprintable() for char in expanded)
    assert second.expand(PROMPT) == expanded  # greedy decoding


def test_random_model_seeded_sampling_repeats_with_the_same_seed(random_model_dir: Path) -> None:
    def sample(seed: int) -> str:
        expander = build_prompt_expander(
            _local(random_model_dir, temperature=1.0, seed=seed, max_new_tokens=24)
        )
        assert expander is not None
        return expander.expand(PROMPT)

    assert sample(seed=7) == sample(seed=7)


def test_local_model_through_expand_or_explain_is_the_prompt_used(rigged_model_dir: Path) -> None:
    log = _Log()
    used = expand_or_explain(build_prompt_expander(_local(rigged_model_dir)), PROMPT, log)
    assert used == " ".join([WORD] * 12)
    assert any("expanded the prompt" in message for message in log.messages)


def test_unloadable_model_dir_falls_back_with_a_log_line(tmp_path: Path) -> None:
    log = _Log()
    used = expand_or_explain(build_prompt_expander(_local(tmp_path)), PROMPT, log)  # empty directory
    assert used == PROMPT
    assert len(log.messages) == 1
    assert log.messages[0].startswith("prompt expansion failed (local model")
    assert log.messages[0].endswith("using the prompt as given")


def test_missing_model_dir_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_dir"):
        build_prompt_expander(_local(tmp_path / "absent"))


# --- none configured ----------------------------------------------------------------------------------------


def test_none_configured_uses_the_prompt_and_says_so() -> None:
    assert build_prompt_expander(PromptExpansionConfig()) is None
    log = _Log()
    assert expand_or_explain(None, PROMPT, log) == PROMPT
    assert log.messages == [NOT_CONFIGURED]


# --- cleaning and config ------------------------------------------------------------------------------------


def test_cleaning_drops_labels_quotes_control_chars_and_extra_whitespace() -> None:
    raw = '  Description:  "A fox\x07 runs\n\n through\tsnow.\ufffd"  '
    assert clean_expansion(raw, max_chars=100) == "A fox runs through snow."


def test_cleaning_cuts_at_a_sentence_end_when_that_keeps_enough() -> None:
    text = "A fox runs. It leaps over a log and lands in deep snow."
    assert clean_expansion(text, max_chars=20) == "A fox runs."
    assert clean_expansion("Abcdefghij", max_chars=4) == "Abcd"  # no word end: a hard cut


def test_config_checks() -> None:
    assert PromptExpansionConfig(backend="chat_completions").backend is ExpanderBackend.CHAT_COMPLETIONS  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PromptExpansionConfig(api_key="k", api_key_file="/k")
    with pytest.raises(ValueError):
        PromptExpansionConfig(max_chars=0)
    with pytest.raises(ValueError, match="base_url"):
        build_prompt_expander(PromptExpansionConfig(backend=ExpanderBackend.CHAT_COMPLETIONS))
    assert "cinematic" in DEFAULT_INSTRUCTION
