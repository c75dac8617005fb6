"""Prompt expansion: turning a short prompt into a detailed video description before generation."""

from service.prompting.config import DEFAULT_INSTRUCTION, ExpanderBackend, PromptExpansionConfig
from service.prompting.expander import (
    NOT_CONFIGURED_MESSAGE,
    ExpansionError,
    PromptExpander,
    clean_expansion,
    expand_or_explain,
)
from service.prompting.factory import build_prompt_expander

__all__ = [
    "DEFAULT_INSTRUCTION",
    "NOT_CONFIGURED_MESSAGE",
    "ExpanderBackend",
    "ExpansionError",
    "PromptExpander",
    "PromptExpansionConfig",
    "build_prompt_expander",
    "clean_expansion",
    "expand_or_explain",
]
