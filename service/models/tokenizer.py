"""An offline tokenizer for the tiny presets: byte-level, deterministic, built from nothing on disk.

It stands in for LTX-Video's T5 tokenizer and keeps its conventions (pad id 0, `</s>` id 1 appended to every
prompt, 256 tokens), so prompt encoding, padding and attention masks behave as with the real model.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "</s>", "<unk>"
_SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)  # ids 0, 1, 2 as in T5


def build_byte_tokenizer(model_max_length: int) -> PreTrainedTokenizerFast:
    """One token per UTF-8 byte (256 of them) after T5's three special tokens; no merges."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate((*_SPECIAL_TOKENS, *alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    eos_id = vocab[EOS_TOKEN]
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN}", pair=f"$A {EOS_TOKEN} $B {EOS_TOKEN}", special_tokens=[(EOS_TOKEN, eos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=model_max_length,
    )


def byte_tokenizer_vocab_size() -> int:
    return len(_SPECIAL_TOKENS) + len(pre_tokenizers.ByteLevel.alphabet())
