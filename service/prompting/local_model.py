"""Prompt expansion with a local causal language model (transformers), loaded once from a directory.

Any instruction-tuned checkpoint in transformers layout works (e.g. a Qwen or Llama "Instruct" model):
its chat template frames the instruction and the prompt; a tokenizer without one gets a plain-text frame.
Nothing is downloaded (`local_files_only=True`). Generation is greedy, or seeded sampling with a
temperature, so the same prompt gives the same expansion.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from service.prompting.config import PromptExpansionConfig
from service.prompting.expander import ExpansionError, clean_expansion

logger = logging.getLogger(__name__)


class LocalModelExpander:
    """A PromptExpander backed by `AutoModelForCausalLM`; loads on first use, one generation at a time."""

    def __init__(self, config: PromptExpansionConfig) -> None:
        if config.model_dir is None:
            raise ValueError("prompt_expansion.model_dir is required for the local_model backend")
        if not Path(config.model_dir).is_dir():
            raise ValueError(f"prompt_expansion.model_dir {config.model_dir!r} is not a directory")
        self._config = config
        self._model_dir = config.model_dir
        self._lock = threading.Lock()  # one model, shared by the job workers
        self._tokenizer: Any = None
        self._model: Any = None

    def expand(self, prompt: str) -> str:
        with self._lock:
            try:
                self._load()
                generated = self._generate(prompt)
            except (OSError, ValueError, RuntimeError) as error:
                raise ExpansionError(f"local model {self._model_dir}: {error}") from error
        expansion = clean_expansion(generated, self._config.max_chars)
        if not expansion:
            raise ExpansionError(f"local model {self._model_dir} produced no text")
        return expansion

    def _load(self) -> None:
        if self._model is not None:
            return
        config = self._config
        logger.info("loading the prompt-expansion model from %s", self._model_dir)
        dtype = config.dtype if config.dtype == "auto" else getattr(torch, config.dtype)
        self._tokenizer = AutoTokenizer.from_pretrained(self._model_dir, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(self._model_dir, local_files_only=True, dtype=dtype)
        self._model = model.to(config.device).eval()

    def _frame(self, prompt: str) -> str:
        """The model's input text: the chat template when the tokenizer has one."""
        instruction = self._config.instruction
        if getattr(self._tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": instruction}, {"role": "user", "content": prompt}]
            text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return str(text)
        return f"{instruction}\n\nPrompt: {prompt}\nDescription:"

    def _generate(self, prompt: str) -> str:
        config = self._config
        inputs = self._tokenizer(self._frame(prompt), return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(config.device)
        sampling = config.temperature > 0
        options: dict[str, Any] = {"do_sample": sampling, "max_new_tokens": config.max_new_tokens}
        if sampling:
            options["temperature"] = config.temperature
        pad_id = self._tokenizer.pad_token_id
        options["pad_token_id"] = pad_id if pad_id is not None else self._tokenizer.eos_token_id
        # fork_rng keeps the seeding from leaking into the process-wide generator the pipelines use.
        with torch.random.fork_rng(), torch.inference_mode():
            torch.manual_seed(config.seed)
            output = self._model.generate(**inputs, **options)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]  # the reply only, not the framed prompt
        return str(self._tokenizer.decode(new_tokens, skip_special_tokens=True))
