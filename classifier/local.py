"""The classifiers the daemon calls: the trained model, or keywords when there is none.

Both answer the :class:`classifier.base.Classifier` seam: category, priority,
confidence, who decided and why. They never raise on odd text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from classifier.base import Classification
from classifier.keywords import KeywordClassifier
from classifier.model import TextModel
from classifier.priority import PriorityRules
from classifier.textprep import model_text

log = logging.getLogger(__name__)


class ModelClassifier:
    """Category from a :class:`TextModel`; priority from :class:`PriorityRules`.

    A class the model knows but the configuration does not (a custom taxonomy
    using part of the default one) is never returned: its probability is given
    to nobody, the best *configured* category wins, and the confidence stays the
    model's probability for it, so an unsure answer goes to triage.
    """

    def __init__(
        self,
        model: TextModel,
        categories: Iterable[str],
        priority: PriorityRules,
        source: str = "model",
    ) -> None:
        self.model = model
        self.priority = priority
        self.source = source
        configured = set(categories)
        self._columns = [i for i, c in enumerate(model.classes) if c in configured]
        if not self._columns:
            raise ValueError("the model knows none of the configured categories")

    def classify(self, subject: str, body: str, sender: str = "") -> Classification:
        """Return the category with its calibrated probability, and the priority."""
        return self._answer(self.model.proba_one(model_text(subject, body)), subject, body, sender)

    def classify_many(self, items: Sequence[tuple[str, str, str]]) -> list[Classification]:
        """Classify (subject, body, sender) items with one vectorised model call."""
        if not items:
            return []
        proba = self.model.predict_proba([model_text(s, b) for s, b, _ in items])
        return [self._answer(row, *item) for row, item in zip(proba, items, strict=True)]

    def _answer(self, proba, subject: str, body: str, sender: str) -> Classification:
        scores = {self.model.classes[i]: round(float(proba[i]), 4) for i in self._columns}
        best = max(self._columns, key=lambda i: proba[i])
        prio = self.priority.assess(subject, body, sender)
        return Classification(
            category=self.model.classes[best],
            priority=prio.priority,
            confidence=float(proba[best]),
            source=self.source,
            model_version=self.model.version,
            reasons=prio.reasons,
            scores=scores,
        )


class KeywordFallback:
    """Used only when no model is available; its confidence is honest (often low)."""

    def __init__(self, keywords: KeywordClassifier, priority: PriorityRules) -> None:
        self.keywords = keywords
        self.priority = priority

    def classify(self, subject: str, body: str, sender: str = "") -> Classification:
        """Return the keyword winner (``general`` on no hit or a tie)."""
        category, confidence, scores = self.keywords.best(subject, body)
        prio = self.priority.assess(subject, body, sender)
        return Classification(
            category=category,
            priority=prio.priority,
            confidence=confidence,
            source="keywords",
            model_version="keywords",
            reasons=prio.reasons,
            scores=scores,
        )
