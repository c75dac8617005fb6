"""Prompt expansion through an OpenAI-compatible chat-completions endpoint (vLLM, TGI, llama.cpp, ...).

One POST to `{base_url}/chat/completions` with the instruction as the system message and the prompt as
the user message; the reply's first choice is the description. Every way the call can go wrong (refused,
timed out, non-2xx, not JSON, no content) becomes an ExpansionError that names the endpoint and the cause.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from service.prompting.config import PromptExpansionConfig
from service.prompting.expander import ExpansionError, clean_expansion

logger = logging.getLogger(__name__)

_MAX_REPLY_BYTES = 1024 * 1024  # a chat reply is a few kB; do not buffer a runaway body
_ERROR_BODY_CHARS = 200  # how much of an error body goes into the log line


class ChatCompletionsExpander:
    """A PromptExpander that calls a chat-completions endpoint with urllib."""

    def __init__(self, config: PromptExpansionConfig) -> None:
        if not config.base_url or not config.model:
            raise ValueError("prompt_expansion.base_url and .model are required for chat_completions")
        if config.api_key_file is not None and not Path(config.api_key_file).is_file():
            raise ValueError(f"prompt_expansion.api_key_file {config.api_key_file!r} is not a file")
        self._config = config
        self._url = config.base_url.rstrip("/") + "/chat/completions"

    def expand(self, prompt: str) -> str:
        reply = self._post(self._request_body(prompt))
        expansion = clean_expansion(_reply_content(reply, self._url), self._config.max_chars)
        if not expansion:
            raise ExpansionError(f"{self._url} replied with an empty description")
        return expansion

    def _request_body(self, prompt: str) -> dict[str, Any]:
        config = self._config
        return {
            "model": config.model,
            "messages": [
                {"role": "system", "content": config.instruction},
                {"role": "user", "content": prompt},
            ],
            "temperature": config.temperature,
            "max_tokens": config.max_new_tokens,
            "seed": config.seed,
        }

    def _api_key(self) -> str | None:
        if self._config.api_key_file is not None:
            try:
                return Path(self._config.api_key_file).read_text().strip()
            except OSError as error:
                raise ExpansionError(f"cannot read the API key file: {error}") from error
        return self._config.api_key

    def _post(self, body: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        api_key = self._api_key()
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        request = urllib.request.Request(self._url, data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._config.timeout_s) as response:
                raw = response.read(_MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as error:
            detail = error.read(_ERROR_BODY_CHARS).decode(errors="replace")
            raise ExpansionError(f"{self._url} answered HTTP {error.code}: {detail}") from error
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ExpansionError(f"{self._url} unreachable or timed out: {reason}") from error
        if len(raw) > _MAX_REPLY_BYTES:
            raise ExpansionError(f"{self._url} replied with more than {_MAX_REPLY_BYTES} bytes")
        try:
            return json.loads(raw)
        except ValueError as error:
            raise ExpansionError(f"{self._url} replied with invalid JSON: {error}") from error


def _reply_content(reply: Any, url: str) -> str:
    """choices[0].message.content, or an ExpansionError saying what the reply lacked."""
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as error:
        raise ExpansionError(f"{url} replied without choices[0].message.content") from error
    if not isinstance(content, str):
        raise ExpansionError(f"{url} replied with a non-text message content")
    return content
