"""The optional OpenAI-compatible layer, against a local chat-completions server.

No OpenAI endpoint can be reached here, so :class:`ChatServer` is a local HTTP
server that speaks the documented chat-completions wire format
(``POST /v1/chat/completions`` -> ``{"choices": [{"message": {"content": ...}}]}``);
the real ``openai`` client talks to it over loopback.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from classifier.base import Classification
from classifier.llm import OpenAIClassifier, parse_answer
from config.schema import DEFAULT_CATEGORIES

CATEGORIES = list(DEFAULT_CATEGORIES)


class ChatServer:
    """Answers chat completions with ``self.reply`` (a content string, or an HTTP status)."""

    def __init__(self) -> None:
        self.reply: str | int = '{"category": "security", "reason": "phishing"}'
        self.delay = 0.0
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                time.sleep(outer.delay)
                if isinstance(outer.reply, int):
                    self.send_response(outer.reply)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "boom"}}')
                    return
                payload = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": outer.reply},
                        }
                    ],
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Fixed:
    """A local classifier with a fixed answer."""

    def __init__(self, confidence: float) -> None:
        self.confidence = confidence

    def classify(self, subject: str, body: str, sender: str = "") -> Classification:
        return Classification("general", "medium", self.confidence, "model", "v1", ("no cue",))


@pytest.fixture
def server():
    s = ChatServer()
    yield s
    s.close()


def make(server, confidence, timeout=5.0):
    return OpenAIClassifier(
        Fixed(confidence),
        CATEGORIES,
        0.5,
        model="local-model",
        base_url=server.base_url,
        api_key="sk-test",
        timeout=timeout,
    )


def test_asked_only_when_the_local_model_is_unsure(server) -> None:
    sure = make(server, 0.9).classify("Weird mail", "asks for my password")
    assert sure.source == "model" and not server.requests
    unsure = make(server, 0.2).classify("Weird mail", "asks for my password\n> quoted secret")
    assert (unsure.category, unsure.source) == ("security", "openai")
    assert unsure.model_version == "openai:local-model"
    assert "remote model: phishing" in unsure.reasons
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sk-test"
    assert req["body"]["response_format"] == {"type": "json_object"}
    user = req["body"]["messages"][-1]["content"]
    assert "asks for my password" in user and "quoted secret" not in user  # new text only


@pytest.mark.parametrize(
    "reply",
    [
        '{"category": "astrology"}',  # not in the taxonomy
        "I think it is security",  # not JSON
        "[1, 2]",
        500,  # server error
    ],
)
def test_any_bad_answer_keeps_the_local_result(server, reply) -> None:
    server.reply = reply
    result = make(server, 0.2).classify("x", "y")
    assert (result.category, result.source) == ("general", "model")
    assert any(r.startswith("remote model failed") for r in result.reasons)


def test_timeout_keeps_the_local_result(server) -> None:
    server.delay = 2.0
    start = time.monotonic()
    result = make(server, 0.2, timeout=0.3).classify("x", "y")
    assert result.source == "model"
    assert time.monotonic() - start < 1.8


def test_parse_answer_tolerates_prose_around_the_json() -> None:
    assert parse_answer('Sure: {"category": "Printing", "reason": "toner"}', CATEGORIES) == (
        "printing",
        "toner",
    )
