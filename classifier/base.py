"""The seams of text understanding: what a corrector and a classifier return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Edit:
    """One correction: ``original`` at ``start`` (offset in the original text) became ``corrected``."""

    start: int
    original: str
    corrected: str


@dataclass(frozen=True, slots=True)
class Correction:
    """The original text, the corrected text and the edits between them."""

    original: str
    text: str
    edits: tuple[Edit, ...] = ()


@dataclass(frozen=True, slots=True)
class Classification:
    """Category and priority with where they came from.

    ``source`` names who decided the category (``"model"``, ``"keywords"``,
    ``"openai"``, ``"fallback"``); ``reasons`` says why the priority is what it is.
    """

    category: str
    priority: str
    confidence: float
    source: str
    model_version: str = ""
    reasons: tuple[str, ...] = field(default_factory=tuple)
    scores: dict[str, float] = field(default_factory=dict)


class Corrector(Protocol):
    """Corrects misspellings; never raises on odd text."""

    def correct(self, text: str) -> Correction:
        """Return the correction of ``text`` (``text`` unchanged when nothing to fix)."""
        ...


class Classifier(Protocol):
    """Classifies a ticket's text; never raises: low confidence instead."""

    def classify(self, subject: str, body: str, sender: str = "") -> Classification:
        """Return the category and priority for a mail's subject and body."""
        ...


def classify_all(classifier: Classifier, items: list[tuple[str, str, str]]) -> list[Classification]:
    """Classify (subject, body, sender) items: one vectorised call when the classifier has one."""
    many = getattr(classifier, "classify_many", None)
    if many is not None:
        return many(items)
    return [classifier.classify(*item) for item in items]
