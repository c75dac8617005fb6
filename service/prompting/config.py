"""Settings of the prompt expander (`expand_prompt` / `enable_prompt_expansion` request fields).

One backend at a time: a local causal language model from a model directory, or an OpenAI-compatible
chat-completions endpoint. With the default `NONE`, requests that ask for expansion run with the prompt as
given and say so in the job log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# The system message both backends send: what LTX models were trained on is long, concrete, present-tense
# descriptions of one shot, so that is what the language model is asked to write.
DEFAULT_INSTRUCTION = (
    "You expand short prompts into detailed cinematic video descriptions for a text-to-video model. "
    "Write one paragraph of at most 150 words in the present tense that describes a single continuous "
    "shot: the subject and its actions, the setting, lighting, colours, camera angle and camera movement. "
    "Keep every detail the user gave and do not contradict it. Reply with the description only."
)


class ExpanderBackend(StrEnum):
    NONE = "none"
    LOCAL_MODEL = "local_model"  # transformers AutoModelForCausalLM from `model_dir`
    CHAT_COMPLETIONS = "chat_completions"  # OpenAI-compatible POST {base_url}/chat/completions


@dataclass(frozen=True)
class PromptExpansionConfig:
    backend: ExpanderBackend = ExpanderBackend.NONE
    instruction: str = DEFAULT_INSTRUCTION
    max_new_tokens: int = 256  # generation budget of either backend
    max_chars: int = 2000  # the expansion is cut (at a sentence or word end) to at most this many chars
    temperature: float = 0.0  # 0: greedy; above 0: sampling, reproducible through `seed`
    seed: int = 0
    # local_model
    model_dir: str | None = None  # a transformers checkpoint directory (config, weights, tokenizer)
    device: str = "cpu"
    dtype: str = "auto"  # torch dtype name, or "auto" for the checkpoint's own
    # chat_completions
    base_url: str | None = None  # e.g. "http://llm.internal:8000/v1"
    model: str | None = None  # the endpoint's model name
    api_key: str | None = field(default=None, repr=False)  # sent as a Bearer token
    api_key_file: str | None = None  # read at each call, so a rotated secret takes effect
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        # Accept the plain strings a TOML file gives.
        object.__setattr__(self, "backend", ExpanderBackend(self.backend))
        if self.max_new_tokens < 1 or self.max_chars < 1:
            raise ValueError("prompt_expansion: max_new_tokens and max_chars must be at least 1")
        if self.temperature < 0 or self.timeout_s <= 0:
            raise ValueError("prompt_expansion: temperature must be >= 0 and timeout_s > 0")
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("prompt_expansion: set api_key or api_key_file, not both")
