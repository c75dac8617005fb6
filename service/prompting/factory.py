"""Choosing the prompt expander from the config, once at start-up."""

from __future__ import annotations

import logging

from service.prompting.config import ExpanderBackend, PromptExpansionConfig
from service.prompting.expander import PromptExpander

logger = logging.getLogger(__name__)


def build_prompt_expander(config: PromptExpansionConfig) -> PromptExpander | None:
    """The configured expander, or None when expansion is not configured.

    Misconfiguration (a missing model directory, no base_url) raises ValueError here, at start-up, rather
    than quietly turning every expansion request into a fallback.
    """
    if config.backend is ExpanderBackend.NONE:
        return None
    # Imported here so that importing the config (service.config does) does not import transformers.
    if config.backend is ExpanderBackend.LOCAL_MODEL:
        from service.prompting.local_model import LocalModelExpander

        logger.info("prompt expansion: local model from %s (loaded on first use)", config.model_dir)
        return LocalModelExpander(config)
    from service.prompting.chat_endpoint import ChatCompletionsExpander

    logger.info("prompt expansion: %s model %s", config.base_url, config.model)
    return ChatCompletionsExpander(config)
