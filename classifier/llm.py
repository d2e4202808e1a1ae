"""An optional OpenAI-compatible model, asked only when the local model is unsure.

Works with anything that speaks the chat-completions wire format: OpenAI,
Azure OpenAI, Ollama, vLLM, LM Studio (``base_url``). The answer must be a JSON
object naming a category of the configured taxonomy; anything else, a timeout
or any error leaves the local answer in place, and the ticket records which
source decided.

**Privacy**: when this is enabled, the subject and up to :data:`MAX_CHARS`
characters of the new text of unsure mails leave the building and reach the
model's operator. Point ``base_url`` at a model you host if that is not
acceptable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace

from classifier.base import Classification, Classifier
from classifier.textprep import new_text

log = logging.getLogger(__name__)

MAX_CHARS = 2000

SYSTEM_PROMPT = (
    "You classify IT support e-mails. Answer with one JSON object and nothing else: "
    '{{"category": one of {categories}, "reason": a short phrase}}. '
    "Choose the category of the main problem the sender reports."
)


class OpenAIClassifier:
    """Wraps a local :class:`Classifier`; asks the remote model below ``threshold``."""

    def __init__(
        self,
        local: Classifier,
        categories: Sequence[str],
        threshold: float,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
        client: object | None = None,
    ) -> None:
        self.local = local
        self.categories = list(categories)
        self.threshold = threshold
        self.model = model
        if client is None:
            from openai import OpenAI

            client = OpenAI(
                base_url=base_url,
                api_key=api_key or "not-needed",
                timeout=timeout,
                max_retries=0,
            )
        self.client = client

    def classify(self, subject: str, body: str, sender: str = "") -> Classification:
        """Return the local answer, or the remote model's category when the local one is unsure."""
        local = self.local.classify(subject, body, sender)
        if local.confidence >= self.threshold:
            return local
        try:
            category, reason = self._ask(subject, body)
        except Exception as exc:  # any failure keeps the local answer
            why = " ".join(str(exc).split())[:200] or type(exc).__name__
            log.warning("openai-compatible model failed, keeping the local answer: %s", why)
            return replace(local, reasons=(*local.reasons, f"remote model failed: {why}"))
        return replace(
            local,
            category=category,
            # The remote model gives no probability: keep the ticket above the
            # triage threshold because a second opinion decided.
            confidence=max(local.confidence, self.threshold),
            source="openai",
            model_version=f"openai:{self.model}",
            reasons=(*local.reasons, f"remote model: {reason}" if reason else "remote model"),
        )

    def _ask(self, subject: str, body: str) -> tuple[str, str]:
        text = new_text(body)[:MAX_CHARS]
        response = self.client.chat.completions.create(
            model=self.model,
            temperature=0,
            response_format={"type": "json_object"},
            messages=[
                {
                    "role": "system",
                    "content": SYSTEM_PROMPT.format(categories=json.dumps(self.categories)),
                },
                {"role": "user", "content": f"Subject: {subject}\n\n{text}"},
            ],
        )
        content = response.choices[0].message.content or ""
        return parse_answer(content, self.categories)


def parse_answer(content: str, categories: Sequence[str]) -> tuple[str, str]:
    """Validate the model's JSON answer against the taxonomy; ``ValueError`` if it is off."""
    start, end = content.find("{"), content.rfind("}")
    if start < 0 or end < start:
        raise ValueError("answer is not a JSON object")
    try:
        data = json.loads(content[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"answer is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("answer is not a JSON object")
    category = str(data.get("category", "")).strip().lower()
    if category not in categories:
        raise ValueError(f"answer names no configured category: {category!r}")
    reason = " ".join(str(data.get("reason", "")).split())[:200]
    return category, reason
