"""Jinja2 e-mail templates: ``<kind>.subject.j2``, ``<kind>.txt.j2``, ``<kind>.html.j2``.

Users override any template by putting a file of the same name in a folder
given as ``override_dir``; the packaged ones are the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined

KINDS = (
    "ack",
    "assigned",
    "comment",
    "approval_request",
    "approval_reminder",
    "approval_result",
    "approval_help",
    "sla_reminder",
    "sla_escalation",
    "sla_explain",
)


@dataclass(frozen=True)
class Rendered:
    """A rendered message body: one-line subject, text part, HTML part."""

    subject: str
    text: str
    html: str


class TemplateRenderer:
    """Renders message kinds from the packaged (or overridden) templates."""

    def __init__(self, override_dir: Path | None = None) -> None:
        loaders = [PackageLoader("templates", ".")]
        if override_dir is not None:
            loaders.insert(0, FileSystemLoader(str(override_dir)))
        common = {"undefined": StrictUndefined, "keep_trailing_newline": True}
        # The text part is plain text, never rendered as HTML: escaping would garble it.
        self._text = Environment(loader=ChoiceLoader(loaders), autoescape=False, **common)  # noqa: S701
        self._html = Environment(loader=ChoiceLoader(loaders), autoescape=True, **common)

    def render(self, kind: str, **context: Any) -> Rendered:
        """Render ``kind`` with ``context``; the subject is collapsed to one line."""
        subject = self._text.get_template(f"{kind}.subject.j2").render(**context)
        return Rendered(
            subject=" ".join(subject.split()),
            text=self._text.get_template(f"{kind}.txt.j2").render(**context),
            html=self._html.get_template(f"{kind}.html.j2").render(**context),
        )
