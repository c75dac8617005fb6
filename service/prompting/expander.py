"""The prompt-expander seam and what every backend shares: cleaning the reply and falling back.

Contract: an expander REPLACES the prompt with the language model's description of the video. The
description is cleaned (control characters and undecodable bytes dropped, whitespace collapsed, a leading
label such as "Description:" and wrapping quotes removed) and cut to `max_chars` at a sentence or word
end. An empty description is a failure, not a result. Callers go through `expand_or_explain`, which never
fails the job: without an expander, or when it fails, the prompt is used as given and the job log says so.
The returned string is the prompt actually used; it is what the result's `prompt` field must report.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Protocol

from service.domain.progress import Progress, ProgressCallback, Stage

logger = logging.getLogger(__name__)

NOT_CONFIGURED_MESSAGE = (
    "expand_prompt requested but no prompt expander is configured; using the prompt as given"
)
_LEADING_LABEL = re.compile(
    r"^(?:expanded prompt|video description|description|prompt)\s*:\s*", re.IGNORECASE
)
_QUOTES = "\"'\u201c\u201d\u2018\u2019"
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


class ExpansionError(Exception):
    """The expander could not produce a description (unreachable, timed out, bad or empty reply)."""


class PromptExpander(Protocol):
    def expand(self, prompt: str) -> str:
        """The detailed description that replaces `prompt`; raises ExpansionError on failure."""
        ...


def _printable(text: str) -> str:
    # Category C covers control, format, unassigned and private-use characters; U+FFFD marks bytes a
    # byte-level tokenizer could not decode. Whitespace is kept here and collapsed afterwards.
    return "".join(
        char for char in text if char.isspace() or (unicodedata.category(char)[0] != "C" and char != "\ufffd")
    )


def _bounded(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    sentence_ends = [match.end() for match in _SENTENCE_END.finditer(head)]
    if sentence_ends and sentence_ends[-1] >= max_chars // 2:  # a whole sentence, if that keeps enough
        return head[: sentence_ends[-1]]
    if text[max_chars].isspace():
        return head.rstrip()
    last_space = head.rfind(" ")
    return head[:last_space].rstrip() if last_space > 0 else head


def clean_expansion(text: str, max_chars: int) -> str:
    """The reply as it will be used as a prompt: printable, one paragraph, at most `max_chars` long."""
    cleaned = " ".join(_printable(text).split())
    cleaned = _LEADING_LABEL.sub("", cleaned)
    if len(cleaned) >= 2 and cleaned[0] in _QUOTES and cleaned[-1] in _QUOTES:
        cleaned = cleaned[1:-1].strip()
    return _bounded(cleaned, max_chars)


def expand_or_explain(expander: PromptExpander | None, prompt: str, on_progress: ProgressCallback) -> str:
    """The prompt to generate with: the expansion, or `prompt` itself with a job-log line saying why."""
    if expander is None:
        logger.info(NOT_CONFIGURED_MESSAGE)
        on_progress(Progress(Stage.ENCODING_PROMPT, message=NOT_CONFIGURED_MESSAGE))
        return prompt
    try:
        expanded = expander.expand(prompt)
    except ExpansionError as error:
        return _fall_back(prompt, on_progress, str(error))
    except Exception as error:  # expansion is optional; a bug here must not fail the job
        logger.exception("prompt expander raised unexpectedly")
        return _fall_back(prompt, on_progress, f"{type(error).__name__}: {error}")
    on_progress(
        Progress(
            Stage.ENCODING_PROMPT,
            message=f"expanded the prompt from {len(prompt)} to {len(expanded)} characters",
        )
    )
    return expanded


def _fall_back(prompt: str, on_progress: ProgressCallback, reason: str) -> str:
    message = f"prompt expansion failed ({reason}); using the prompt as given"
    logger.warning(message)
    on_progress(Progress(Stage.ENCODING_PROMPT, message=message))
    return prompt
