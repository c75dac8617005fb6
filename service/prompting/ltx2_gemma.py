"""Prompt expansion for LTX-2.3 with the resident Gemma-3 text encoder (it doubles as its own enhancer).

As ltx-core's `enhance_t2v` and diffusers' `LTX2Pipeline.enhance_prompt`: the LTX-2.3 text-to-video system
prompt (`T2V_DEFAULT_SYSTEM_PROMPT`, passed explicitly: diffusers' `__call__` defaults to the 2.5 one), the
user turn "user prompt: ...", sampling at temperature 0.7 from a fixed seed (10), up to 512 new tokens.
No second model is loaded.
"""

from __future__ import annotations

import torch
from diffusers.pipelines.ltx2.prompt_enhancement import clean_response
from diffusers.pipelines.ltx2.utils import GEMMA3_PROMPT_ENHANCEMENT_CONFIG, T2V_DEFAULT_SYSTEM_PROMPT

from service.prompting.expander import ExpansionError, clean_expansion

MAX_PROMPT_CHARS = 4000


class ResidentGemmaExpander:
    """`PromptExpander` on the LTX-2.3 models' own Gemma-3 (anything with `generate` and a chat template)."""

    def __init__(self, model: torch.nn.Module, tokenizer: object, max_new_tokens: int | None = None) -> None:
        self._model = model
        self._tokenizer = tokenizer
        config = GEMMA3_PROMPT_ENHANCEMENT_CONFIG
        self._max_new_tokens = max_new_tokens or config.max_new_tokens
        self._seed = config.seed
        self._generation_kwargs = dict(config.generation_kwargs)

    def expand(self, prompt: str) -> str:
        tokenizer = self._tokenizer
        messages = [
            {"role": "system", "content": T2V_DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": f"{GEMMA3_PROMPT_ENHANCEMENT_CONFIG.user_prompt_prefix}: {prompt}"},
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]
        device = next(self._model.parameters()).device
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(device)  # type: ignore[operator]
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(self._seed)  # `generate` takes no generator: seed the global one, privately
            output = self._model.generate(  # type: ignore[operator]
                **inputs, max_new_tokens=self._max_new_tokens, **self._generation_kwargs
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        reply = tokenizer.decode(new_tokens, skip_special_tokens=True)  # type: ignore[attr-defined]
        expanded = clean_expansion(clean_response(reply), MAX_PROMPT_CHARS)
        if not expanded:
            raise ExpansionError("the resident Gemma model returned an empty description")
        return expanded
