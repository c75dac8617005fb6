"""Prompt expansion through an OpenAI-compatible chat-completions endpoint: a fake server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from service.domain.progress import Progress
from service.prompting import PromptExpansionConfig, build_prompt_expander, expand_or_explain

PROMPT = "a lighthouse at dusk"
CANNED = "A tall white lighthouse stands on a rocky cliff as the sun sets, the camera slowly circling it."
TIMEOUT_S = 0.5


@dataclass
class _Behaviour:
    """What the fake endpoint answers next, and what it was sent."""

    status: int = 200
    body: bytes = b""
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)


def _completion(content: object) -> bytes:
    return json.dumps(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    behaviour: _Behaviour

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.behaviour.requests.append(
            {"path": self.path, "headers": dict(self.headers), "json": json.loads(self.rfile.read(length))}
        )
        time.sleep(self.behaviour.delay_s)
        self.send_response(self.behaviour.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.behaviour.body)))
        self.end_headers()
        self.wfile.write(self.behaviour.body)


@pytest.fixture
def endpoint() -> Iterator[tuple[str, _Behaviour]]:
    behaviour = _Behaviour(body=_completion(CANNED))
    handler = type("Handler", (_Handler,), {"behaviour": behaviour})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # a handler still sleeping in the timeout test does not block shutdown
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/", behaviour
    finally:
        server.shutdown()
        server.server_close()


def _config(base_url: str, **overrides: Any) -> PromptExpansionConfig:
    settings: dict[str, Any] = {
        "backend": "chat_completions", "base_url": base_url, "model": "tiny-chat", "timeout_s": TIMEOUT_S,
    }  # fmt: skip
    return PromptExpansionConfig(**{**settings, **overrides})


def _expand_logged(config: PromptExpansionConfig) -> tuple[str, list[str]]:
    messages: list[str] = []

    def on_progress(progress: Progress) -> None:
        messages.append(progress.message)

    return expand_or_explain(build_prompt_expander(config), PROMPT, on_progress), messages


def test_returns_the_completion_and_sends_model_messages_and_key(
    endpoint: tuple[str, _Behaviour], tmp_path: Path
) -> None:
    base_url, behaviour = endpoint
    key_file = tmp_path / "api_key"
    key_file.write_text("secret-123\n")
    config = _config(base_url, api_key_file=str(key_file), instruction="Describe the video.")
    used, _ = _expand_logged(config)
    assert used == CANNED
    (request,) = behaviour.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer secret-123"
    sent = request["json"]
    assert sent["model"] == "tiny-chat"
    assert sent["messages"] == [
        {"role": "system", "content": "Describe the video."},
        {"role": "user", "content": PROMPT},
    ]
    assert sent["temperature"] == 0.0


def test_api_key_from_the_config_and_none_without(endpoint: tuple[str, _Behaviour]) -> None:
    base_url, behaviour = endpoint
    _expand_logged(_config(base_url, api_key="inline-key"))
    _expand_logged(_config(base_url))
    assert behaviour.requests[0]["headers"]["Authorization"] == "Bearer inline-key"
    assert "Authorization" not in behaviour.requests[1]["headers"]


def test_server_error_falls_back_to_the_prompt_and_says_so(endpoint: tuple[str, _Behaviour]) -> None:
    base_url, behaviour = endpoint
    behaviour.status, behaviour.body = 500, b'{"error": "model crashed"}'
    used, messages = _expand_logged(_config(base_url))
    assert used == PROMPT
    (message,) = messages
    assert message.startswith("prompt expansion failed (")
    assert "HTTP 500" in message and "model crashed" in message
    assert message.endswith("; using the prompt as given")


def test_timeout_falls_back_to_the_prompt_and_says_so(endpoint: tuple[str, _Behaviour]) -> None:
    base_url, behaviour = endpoint
    behaviour.delay_s = TIMEOUT_S * 3
    started = time.monotonic()
    used, messages = _expand_logged(_config(base_url))
    assert time.monotonic() - started < TIMEOUT_S * 2.5  # gave up at the timeout, not at the reply
    assert used == PROMPT
    (message,) = messages
    assert "timed out" in message and message.endswith("using the prompt as given")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>gateway</html>", "invalid JSON"),
        (json.dumps({"choices": []}).encode(), "without choices[0].message.content"),
        (_completion(None), "non-text"),
        (_completion("  \n "), "empty description"),
    ],
    ids=["not_json", "no_choices", "null_content", "blank_content"],
)
def test_bad_replies_fall_back_to_the_prompt(
    endpoint: tuple[str, _Behaviour], body: bytes, reason: str
) -> None:
    base_url, behaviour = endpoint
    behaviour.body = body
    used, messages = _expand_logged(_config(base_url))
    assert used == PROMPT
    assert reason in messages[0] and messages[0].endswith("using the prompt as given")


def test_unreachable_endpoint_falls_back() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    used, messages = _expand_logged(_config(f"http://127.0.0.1:{closed_port}/v1"))
    assert used == PROMPT
    assert "unreachable" in messages[0] and messages[0].endswith("using the prompt as given")


def test_missing_api_key_file_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="api_key_file"):
        build_prompt_expander(_config("http://127.0.0.1:1/v1", api_key_file=str(tmp_path / "absent")))
