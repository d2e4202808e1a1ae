"""Loopback fakes of the channel endpoints: a generic webhook, Slack, Teams and Twilio.

Each checks what the real endpoint checks (method, content type, payload shape,
Twilio's form fields and basic auth) and answers as it does. ``script`` holds
status codes to answer with first (e.g. ``[500, 429]``); then it accepts.
"""

from __future__ import annotations

import base64
import json
import secrets
from urllib.parse import parse_qs

from tests.support.http_fake import FakeHandler, LoopbackHTTPFake

TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "test-auth-token"


class _Handler(FakeHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        fake: ChannelFake = self.fake
        if fake.script:
            self.reply(fake.script.pop(0), b"try later", {"Retry-After": "1"})
            return
        status, answer = fake.check(self.path, self.headers, body)
        if 200 <= status < 300:
            fake.received.append(answer)
        self.reply_json(status, answer if status < 300 else {"error": answer})


class ChannelFake(LoopbackHTTPFake):
    """One endpoint of ``kind``; ``received`` holds what it accepted."""

    handler = _Handler

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.script: list[int] = []
        self.received: list = []

    def check(self, path: str, headers, body: bytes) -> tuple[int, object]:
        """(status, answer) as the real endpoint would give them."""
        if self.kind == "twilio":
            return _twilio(path, headers, body)
        if not headers.get("Content-Type", "").startswith("application/json"):
            return 415, "Content-Type must be application/json"
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, "invalid JSON"
        problem = _CHECKS[self.kind](payload)
        return (400, problem) if problem else (200, payload)


def _webhook(p: dict) -> str:
    ticket = p.get("ticket") or {}
    keys = {"id", "subject", "status", "priority", "category", "team", "assignee"}
    if not {"event", "text", "at"} <= set(p) or not keys <= set(ticket):
        return "missing fields"
    return ""


def _slack(p: dict) -> str:
    # Slack answers 400 "no_text" when neither text nor blocks is given.
    return "" if isinstance(p.get("text"), str) and p["text"] else "no_text"


def _teams(p: dict) -> str:
    if p.get("@type") == "MessageCard":
        return "" if p.get("@context") and (p.get("text") or p.get("sections")) else "bad card"
    [att] = p.get("attachments") or [None]
    if p.get("type") != "message" or not att:
        return "expected a message with one attachment"
    content = att.get("content") or {}
    ok = att.get("contentType") == "application/vnd.microsoft.card.adaptive"
    return (
        "" if ok and content.get("type") == "AdaptiveCard" and content.get("body") else "bad card"
    )


_CHECKS = {"webhook": _webhook, "slack": _slack, "teams": _teams}


def _twilio(path: str, headers, body: bytes) -> tuple[int, object]:
    if path != f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json":
        return 404, "The requested resource was not found"
    expected = base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    if headers.get("Authorization") != f"Basic {expected}":
        return 401, "Authenticate"
    if not headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        return 400, "expected a form"
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    if not all(form.get(k) for k in ("To", "From", "Body")):
        return 400, "A 'To', 'From' and 'Body' are required"
    if not (form["To"].startswith("whatsapp:+") and form["From"].startswith("whatsapp:+")):
        return 400, "Invalid 'To' or 'From' WhatsApp number"
    sid = "SM" + secrets.token_hex(16)
    return 201, {
        "sid": sid,
        "status": "queued",
        "to": form["To"],
        "from": form["From"],
        "body": form["Body"],
        "account_sid": TWILIO_SID,
    }
