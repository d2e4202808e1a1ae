"""Keyword matching: the fallback when no model can be trained or loaded.

Naive help desks stop here (0.455 macro-F1 on Endava's topics); mailtriage
uses it only when the model is unavailable, and says so in ``source``.
Keywords come from the built-in list for the default taxonomy plus each
category's ``keywords`` in the config.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from classifier.textprep import normalise


def _words(joined: str) -> tuple[str, ...]:
    return tuple(joined.split("|"))


BUILTIN: dict[str, tuple[str, ...]] = {
    "network": _words(
        "network|wifi|wi fi|wireless|vpn|internet|ethernet|lan|dns|dhcp|router|"
        "switch|firewall|proxy|latency|packet loss|no connection|connectivity|"
        "anyconnect|globalprotect"
    ),
    "hardware": _words(
        "laptop|desktop|monitor|screen|keyboard|mouse|docking|dock|battery|"
        "charger|headset|webcam|hard drive|ssd|ram|usb|phone|mobile device|"
        "broken|replacement|new computer"
    ),
    "software": _words(
        "install|installation|software|application|app|update|upgrade|licence|"
        "license|crash|crashes|excel|word|powerpoint|sap|adobe|salesforce|jira|"
        "browser|chrome|windows update|error message"
    ),
    "access": _words(
        "password|locked out|account locked|login|log in|sign in|mfa|"
        "authenticator|two factor|2fa|permission|permissions|access to|"
        "access rights|admin rights|shared drive access|okta|entra|reset"
    ),
    "email": _words(
        "email|e mail|outlook|mailbox|calendar|meeting invite|teams|"
        "distribution list|shared mailbox|inbox|exchange|out of office|"
        "sharepoint|onedrive|zoom"
    ),
    "printing": _words(
        "printer|printing|print|toner|paper jam|scanner|scan|copier|print queue|cartridge"
    ),
    "security": _words(
        "phishing|malware|virus|ransomware|suspicious|spam|hacked|compromised|"
        "breach|scam|stolen|lost laptop|antivirus|defender"
    ),
    "general": _words("question|information|policy|request|how do i|where can i"),
}


class KeywordClassifier:
    """Scores each category by the keywords found; ties and no hits go to ``general``."""

    def __init__(
        self, categories: Iterable[str], extra: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        self.categories = list(categories)
        self._patterns: dict[str, list[re.Pattern[str]]] = {}
        for name in self.categories:
            words = set(BUILTIN.get(name, ())) | {w for w in (extra or {}).get(name, ())}
            self._patterns[name] = [
                re.compile(rf"\b{re.escape(normalise(w))}\b") for w in sorted(words) if w.strip()
            ]
        self.fallback = "general" if "general" in self.categories else self.categories[-1]

    def scores(self, subject: str, body: str) -> dict[str, float]:
        """Return hits per category (subject hits count double)."""
        subject_n, body_n = normalise(subject), normalise(body)
        return {
            name: float(sum(2 * bool(p.search(subject_n)) + bool(p.search(body_n)) for p in pats))
            for name, pats in self._patterns.items()
        }

    def best(self, subject: str, body: str) -> tuple[str, float, dict[str, float]]:
        """Return (category, confidence, scores); confidence is the winner's share of hits."""
        scores = self.scores(subject, body)
        total = sum(scores.values())
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], self.categories.index(kv[0])))
        if not total or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
            return self.fallback, 0.0, scores
        return ranked[0][0], ranked[0][1] / total, scores
