"""Mail text -> the text the models read: new text only, subject weighted, normalised.

Quoted replies, forwarded headers and signatures say what *someone else* wrote
or who the sender is, not what the problem is, so they are cut before
classifying. Normalisation matches the form of the Endava training data
(lower case, words only) so one model family serves both.
"""

from __future__ import annotations

import re

# A line that starts quoted or forwarded material: everything from it on is dropped.
_CUT_LINE = re.compile(
    r"""^\s*(?:
        -{2,}\s*(?:original\s+message|forwarded\s+message|ursprüngliche\s+nachricht)\s*-{2,}
      | _{10,}
      | on\s.{4,200}\swrote:\s*$
      | (?:from|von|de):\s.+?(?:sent|gesendet|envoyé|date):.*$
      | sent\s+from\s+my\s+\w+
      | get\s+outlook\s+for\s+\w+
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# Header block of a quoted Outlook message: "From: ..." followed by "Sent: ..." lines.
_HEADER_START = re.compile(r"^\s*(?:from|von|de)\s*:\s*\S", re.IGNORECASE)
_HEADER_NEXT = re.compile(r"^\s*(?:sent|date|gesendet|envoyé|to|subject)\s*:", re.IGNORECASE)
_SIGNATURE = re.compile(r"^--\s*$")

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_NON_WORD = re.compile(r"[^\w]+")
_DIGITS = re.compile(r"\b\d+\b")
_SPACES = re.compile(r"\s+")

SUBJECT_WEIGHT = 2  # the subject is repeated: a short summary the sender chose


def new_text(body: str) -> str:
    """Return ``body`` without quoted replies, forwarded headers and signature."""
    lines = body.splitlines()
    kept: list[str] = []
    for i, line in enumerate(lines):
        if line.lstrip().startswith(">") or _SIGNATURE.match(line) or _CUT_LINE.match(line):
            if kept or not line.lstrip().startswith(">"):
                break
            continue  # a mail that *starts* quoted: skip the quote, keep reading
        if _HEADER_START.match(line) and any(
            _HEADER_NEXT.match(nxt) for nxt in lines[i + 1 : i + 3]
        ):
            break
        kept.append(line)
    return "\n".join(kept).strip() or body.strip()


def normalise(text: str) -> str:
    """Lower-case ``text``, name addresses and links, keep words only."""
    text = _URL.sub(" urladdr ", text)
    text = _EMAIL.sub(" emailaddr ", text)
    text = _NON_WORD.sub(" ", text.lower()).replace("_", " ")
    text = _DIGITS.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def model_text(subject: str, body: str) -> str:
    """Return what the category model reads for a mail's ``subject`` and ``body``."""
    subject = normalise(subject)
    return " ".join([subject] * SUBJECT_WEIGHT + [normalise(new_text(body))]).strip()
