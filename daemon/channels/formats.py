"""What each channel's endpoint expects on the wire, built when the row is written.

generic webhook: JSON ``{event, ticket: {...}, text, at}``; Slack incoming
webhook: JSON ``{"text": ...}``; Teams: an Adaptive Card in a ``message``
(Workflows webhooks) or a legacy MessageCard (Office 365 connectors);
Twilio: the form fields of ``POST /2010-04-01/Accounts/{sid}/Messages.json``,
one request per WhatsApp number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from config.schema import ChannelSettings
from daemon.store.models import Ticket

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
TWILIO_API = "https://api.twilio.com"
_COLOURS = {"critical": "B42318", "high": "DC6803", "medium": "2E90FA", "low": "667085"}


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP POST a channel wants: where, what type, the body."""

    url: str
    content_type: str
    body: str


def iso(at: datetime) -> str:
    """A naive-UTC time as ISO 8601 with ``Z``."""
    return at.replace(microsecond=0).isoformat() + "Z"


def ticket_facts(channel: ChannelSettings, ticket: Ticket) -> dict:
    """The ticket as the generic webhook carries it."""
    facts = {
        "id": ticket.id,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "category": ticket.category,
        "team": ticket.team,
        "assignee": ticket.assignee,
    }
    if channel.ticket_url:
        facts["url"] = ticket_link(channel, ticket)
    return facts


def ticket_link(channel: ChannelSettings, ticket: Ticket) -> str | None:
    """The ticket's page, when the channel names a URL pattern."""
    return channel.ticket_url.replace("{id}", ticket.id) if channel.ticket_url else None


def headline(event: str, ticket: Ticket, text: str) -> str:
    """One line for chat: ``[TKT-…] escalated (high): text``."""
    return f"[{ticket.id}] {event} ({ticket.priority}): {text}"


def build(channel: ChannelSettings, event: str, ticket: Ticket, text: str, at: datetime):
    """The requests ``channel`` wants for ``event`` on ``ticket``."""
    return _BUILDERS[channel.kind](channel, event, ticket, text, at)


def _webhook(channel, event, ticket, text, at) -> list[Request]:
    payload = {"event": event, "ticket": ticket_facts(channel, ticket), "text": text, "at": iso(at)}
    return [Request(channel.url, JSON, json.dumps(payload, ensure_ascii=False))]


def _slack(channel, event, ticket, text, at) -> list[Request]:
    line = headline(event, ticket, text)
    link = ticket_link(channel, ticket)
    # Slack's mrkdwn: "<url|label>" is a link; &, < and > must be escaped in text.
    safe = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = f"<{link}|{safe}>" if link else safe
    return [Request(channel.url, JSON, json.dumps({"text": body}, ensure_ascii=False))]


def _teams(channel, event, ticket, text, at) -> list[Request]:
    card = _message_card if channel.card == "messagecard" else _adaptive_card
    return [Request(channel.url, JSON, json.dumps(card(channel, event, ticket, text)))]


def _facts(ticket: Ticket) -> list[tuple[str, str]]:
    return [
        ("Priority", ticket.priority),
        ("Status", ticket.status),
        ("Category", ticket.category),
        ("Team", ticket.team or "-"),
        ("Assignee", ticket.assignee or "-"),
    ]


def _adaptive_card(channel, event, ticket, text) -> dict:
    """An Adaptive Card 1.4 wrapped as Teams Workflows webhooks expect it."""
    body = [
        {
            "type": "TextBlock",
            "text": f"[{ticket.id}] {event}",
            "weight": "Bolder",
            "size": "Medium",
        },
        {"type": "TextBlock", "text": text, "wrap": True},
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(ticket)]},
    ]
    content = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if link := ticket_link(channel, ticket):
        content["actions"] = [{"type": "Action.OpenUrl", "title": "Open ticket", "url": link}]
    attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "content": content}
    return {"type": "message", "attachments": [attachment]}


def _message_card(channel, event, ticket, text) -> dict:
    """The legacy Office 365 connector MessageCard."""
    card = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": headline(event, ticket, text)[:200],
        "themeColor": _COLOURS.get(ticket.priority, "667085"),
        "title": f"[{ticket.id}] {event}: {ticket.subject}",
        "text": text,
        "sections": [{"facts": [{"name": k, "value": v} for k, v in _facts(ticket)]}],
    }
    if link := ticket_link(channel, ticket):
        target = [{"os": "default", "uri": link}]
        card["potentialAction"] = [{"@type": "OpenUri", "name": "Open ticket", "targets": target}]
    return card


def _twilio(channel, event, ticket, text, at) -> list[Request]:
    base = (channel.url or TWILIO_API).rstrip("/")
    sid = quote(channel.account_sid or "", safe="")
    url = f"{base}/2010-04-01/Accounts/{sid}/Messages.json"
    body = headline(event, ticket, text)[:1600]  # WhatsApp bodies: at most 1,600 characters
    sender = whatsapp(channel.from_number or "")
    return [
        Request(url, FORM, urlencode({"To": whatsapp(n), "From": sender, "Body": body}))
        for n in channel.to_numbers
    ]


def whatsapp(number: str) -> str:
    """``whatsapp:+15551234567`` from a number with or without the prefix."""
    return number if number.startswith("whatsapp:") else f"whatsapp:{number}"


_BUILDERS = {"webhook": _webhook, "slack": _slack, "teams": _teams, "twilio": _twilio}
