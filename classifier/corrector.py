"""ItCorrector: fixes misspelt words in IT support mail and leaves everything technical alone.

Only plain words are ever touched: a run of ASCII letters (with at most one
apostrophe), standing between whitespace with nothing but punctuation around
it. Anything with a digit, dot, slash, backslash, ``@``, hyphen or underscore
inside (addresses, URLs, hosts, IPs, paths, error codes, ticket ids, tokens,
asset tags) is never a plain word, so it is never looked at. Of the plain
words, these are left alone too:

* words inside quoted lines (``>``), backticks, lines indented 4 spaces or a
  tab, and log lines (a clock time ``hh:mm:ss``, an ISO timestamp, or a
  leading log level such as ``ERROR``);
* ALL-CAPS and CamelCase words (VPN, SharePoint), words under 4 letters;
* capitalised words (maybe names) unless one typing slip away from a word
  with the same first letter and, mid-sentence, from an IT term ("in
  Outlok"); common first names; lines of up to four capitalised words
  (signatures, titles); reply attributions and forwarded headers (a line
  with a year and a time, or with an address or a time that ends in a colon
  or starts with "Label:");
* known words: the English frequency list plus ``data/it_lexicon.txt``;
* all words of a text that looks foreign (under 10 % English function words,
  counting words with non-ASCII letters), where "corrections" would be English
  words forced on it.
"""

from __future__ import annotations

import logging
import re
import threading
from bisect import bisect_right
from functools import lru_cache
from pathlib import Path

from classifier.base import Correction, Edit
from classifier.lexicon import MIN_LENGTH, SpellLexicon

log = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 500_000  # beyond this a "mail" is a log dump or an attachment
MAX_UNKNOWN_WORDS = 300  # per text: bounds the time spent on garbage
FOREIGN_MIN_WORDS = 8
ENGLISH_SHARE = 0.1  # English prose: 30-50 % function words; other languages: a few %
# Unambiguously English function words ("die", "was", "no", "a", "i", "on" are not).
FUNCTION_WORDS = frozenset(
    (  # noqa: SIM905 - a word list reads better as text
        "the and of to is are for with this that you your my me we our it not have has can"
        " please from at be been do does did but if or there what when which they he she"
        " his her after since about just would could should any all some get got still now"
        " again today thanks thank hello hi dear"
    ).split()
)
SUGGESTION_CACHE_SIZE = 50_000
MIN_NAME_FIX = 5  # letters a mid-sentence capitalised word needs before it may be fixed

OPENING = "\"'([{<*_\u201e\u201c\u2018\u00ab"
CLOSING = "\"')]}>*_.,;:!?\u201c\u201d\u2019\u00bb"
WORD = re.compile(  # a plain word: letters, one apostrophe at most, punctuation around
    f"(?<!\\S)[{re.escape(OPENING)}]*([A-Za-z]+(?:['\u2019][A-Za-z]+)?)[{re.escape(CLOSING)}]*(?!\\S)"
)
LETTERS = re.compile(r"[a-z]+(?:'[a-z]+)?")  # the fast pre-check, on lowercased text
CODE = re.compile(r"```[\s\S]*?(?:```|\Z)|`[^`\n]*`")
CLOCK = re.compile(r"\b\d\d?:\d\d\b")
LOG_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d?:\d\d|\b\d\d?:\d\d:\d\d\b")
YEAR = re.compile(r"\b(?:19|20)\d\d\b")
LOG_LEVEL = re.compile(r"[ \t]*\[?(?:ERROR|WARN|WARNING|INFO|DEBUG|TRACE|FATAL|CRITICAL|NOTICE)\b")
NAMES_LINE = re.compile(r"[ \t]*[A-Z]\S*(?:[ \t]+[A-Z]\S*){0,3}[ \t\r]*")
LABEL = re.compile(r"[ \t]*\w[\w -]{0,20}:")
NON_ASCII_WORD = re.compile(r"\b[^\W\d_]*[^\x00-\x7f\W\d_][^\W\d_]*\b")  # "Wysłano", "Envoyé"
LEADING = " \t\"'([{<*_-\u201e\u201c\u2018\u00ab\u2022"
SENTENCE_END = ".!?"
LINE_END_BREAKS = ".!?,:;"


def is_protected_line(line: str) -> bool:
    """Is ``line`` quoted, indented, a log line, names alone, or a reply or forward header?"""
    if line.lstrip(" \t").startswith(">") or line.startswith(("    ", "\t")):
        return True
    if LOG_LEVEL.match(line) or NAMES_LINE.fullmatch(line):
        return True  # "ERROR: ...", "[WARN] ..."; a signature or title: "Jonh Smiht"
    clock = ":" in line and CLOCK.search(line) is not None
    if clock and (LOG_TIME.search(line) or YEAR.search(line)):
        return True  # a log line, or a header line with a date: "Sent: 1 March 2023 12:00"
    if clock or "@" in line:  # "... <anna@example.com> wrote:", "From: anna@example.com"
        return line.rstrip().endswith(":") or LABEL.match(line) is not None
    return False


class ProtectedSpans:
    """The spans of a text where no word may be changed: code in backticks, protected lines."""

    def __init__(self, text: str) -> None:
        spans = [m.span() for m in CODE.finditer(text)] if "`" in text else []
        offset = 0
        for line in text.split("\n"):
            if line and is_protected_line(line):
                spans.append((offset, offset + len(line)))
            offset += len(line) + 1
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in sorted(spans):
            if self._ends and start <= self._ends[-1]:
                self._ends[-1] = max(self._ends[-1], end)
            else:
                self._starts.append(start)
                self._ends.append(end)

    def covers(self, offset: int) -> bool:
        """Is ``offset`` inside a protected span?"""
        i = bisect_right(self._starts, offset) - 1
        return i >= 0 and offset < self._ends[i]


def is_sentence_start(text: str, offset: int) -> bool:
    """Does the word at ``offset`` begin a sentence, a paragraph or a list item?

    A line break alone is not enough: mail is hard-wrapped, so a capitalised word
    at the start of a continuation line is more likely a name than a new sentence.
    """
    i = offset - 1
    while i >= 0 and text[i] in LEADING:
        i -= 1
    if i < 0 or text[i] in SENTENCE_END:
        return True
    if text[i] not in "\r\n":
        return False
    newlines = 0
    while i >= 0 and text[i].isspace():
        newlines += text[i] == "\n"
        i -= 1
    return i < 0 or newlines > 1 or text[i] in LINE_END_BREAKS


def apply_edits(text: str, edits: list[Edit]) -> str:
    """Return ``text`` with each edit's original replaced by its correction."""
    pieces, last = [], 0
    for edit in edits:
        pieces.append(text[last : edit.start])
        pieces.append(edit.corrected)
        last = edit.start + len(edit.original)
    pieces.append(text[last:])
    return "".join(pieces)


def as_text(value: object) -> str:
    """Return ``value`` as text: bytes decoded leniently, None as empty."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


class ItCorrector:
    """Corrects misspellings in IT support text; see ``classifier.base.Corrector``.

    ``cache_dir`` is where the compiled dictionary is kept (default
    ``~/.cache/mailtriage``). The dictionary is loaded on first use or by
    ``load()``; if it cannot be loaded, texts are returned unchanged.
    """

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._lexicon: SpellLexicon | None = None
        self._failed = False
        self._lock = threading.Lock()
        self._suggest = lru_cache(maxsize=SUGGESTION_CACHE_SIZE)(self._suggest_uncached)

    def load(self) -> SpellLexicon | None:
        """Load the dictionary now (idempotent); return it, or None if it is unavailable."""
        with self._lock:
            if self._lexicon is None and not self._failed:
                try:
                    self._lexicon = SpellLexicon.load(self._cache_dir)
                except Exception:  # no dictionary means no correction, never a lost mail
                    self._failed = True
                    log.exception("spelling dictionary unavailable; corrections disabled")
        return self._lexicon

    def correct(self, text: str) -> Correction:
        """Return ``text`` with its misspelt plain words corrected; never raises."""
        text = as_text(text)
        try:
            edits = self._find_edits(text)
        except Exception:  # the original text is always kept: a bug here costs no mail
            log.exception("spelling correction failed; text left as it is")
            edits = []
        return Correction(text, apply_edits(text, edits), tuple(edits))

    def suggest(self, word: str) -> str | None:
        """Return the correction of one lowercase unknown ``word``, or None."""
        return self._suggest(word)

    def _suggest_uncached(self, word: str) -> str | None:
        lexicon = self.load()
        return lexicon.suggest(word) if lexicon is not None else None

    def _find_edits(self, text: str) -> list[Edit]:
        if len(text) > MAX_TEXT_LENGTH:
            log.debug("text of %d characters not spell-checked", len(text))
            return []
        lexicon = self.load()
        if lexicon is None:
            return []
        lowered = text.lower().replace("\u2019", "'")
        tokens = LETTERS.findall(lowered)
        unknown = {t for t in set(tokens) if len(t) >= MIN_LENGTH and not lexicon.is_known(t)}
        if not unknown:
            return []  # the common case, found without looking at where the words are
        if looks_foreign(tokens, len(NON_ASCII_WORD.findall(text))):
            log.debug("text looks foreign; not spell-checked")
            return []
        spans = ProtectedSpans(text)
        places = [p for p in find_plain_words(text, lowered, unknown) if not spans.covers(p[0])]
        edits = []
        for start, word in places[:MAX_UNKNOWN_WORDS]:
            corrected = self._correct_word(text, start, word, lexicon)
            if corrected is not None and corrected != word:
                edits.append(Edit(start, word, corrected))
        return edits

    def _correct_word(self, text: str, start: int, word: str, lexicon: SpellLexicon) -> str | None:
        lower = normal_form(word)
        stem, apostrophe, tail = lower.partition("'")
        if word.isupper() or not word[1 : len(stem)].islower():
            return None  # ALL-CAPS or CamelCase: a product, acronym or identifier
        capitalised = word[0].isupper()
        if capitalised and stem in lexicon.names:
            return None
        if apostrophe and tail != "t":  # "pritner's" -> "printer's"; but "dosn't" -> "doesn't"
            suggestion = None if lexicon.is_known(stem) else self._suggest(stem)
            suggestion = suggestion and suggestion + word[len(stem) :]
        else:
            suggestion = self._suggest(lower)
        if suggestion is None:
            return None
        if capitalised:
            if not self._is_capital_fix(text, start, lower, suggestion, lexicon):
                return None
            return suggestion[0].upper() + suggestion[1:]
        return suggestion

    @staticmethod
    def _is_capital_fix(
        text: str, start: int, lower: str, suggestion: str, lexicon: SpellLexicon
    ) -> bool:
        """May a capitalised word be fixed? It may be a name, so only for one sure slip.

        Mid-sentence it must also become an IT term ("in Outlok" -> "in Outlook").
        """
        if suggestion in lexicon.names or not lexicon.is_slip(lower, suggestion):
            return False
        if is_sentence_start(text, start):
            return True
        return len(lower) >= MIN_NAME_FIX and suggestion in lexicon.it_terms


def normal_form(word: str) -> str:
    """Return ``word`` lowercased with a typographic apostrophe made plain."""
    return word.lower().replace("\u2019", "'")


def find_plain_words(text: str, lowered: str, targets: set[str]) -> list[tuple[int, str]]:
    """Return (offset, word) of each plain word of ``text`` whose ``normal_form`` is a target.

    ``lowered`` is ``text`` in normal form; the targets are found in it with
    ``str.find`` and each hit is kept only if ``WORD`` matches exactly there.
    """
    if len(lowered) != len(text):  # lowercasing changed lengths ("İ"): offsets differ
        hits = ((m.start(1), m.group(1)) for m in WORD.finditer(text))
        return [(start, word) for start, word in hits if normal_form(word) in targets]
    found = []
    for target in targets:
        start = lowered.find(target)
        while start >= 0:
            chunk = start
            while chunk > 0 and text[chunk - 1] in OPENING:
                chunk -= 1
            if chunk == 0 or text[chunk - 1].isspace():
                match = WORD.match(text, chunk)
                if match and match.span(1) == (start, start + len(target)):
                    found.append((start, text[start : start + len(target)]))
            start = lowered.find(target, start + 1)
    return sorted(found)


def looks_foreign(tokens: list[str], non_ascii: int) -> bool:
    """Are there too few English function words among the words for English prose?

    Typos do not hide English: its little words ("the", "is", "my") are rarely
    misspelt. ``tokens`` are the text's lowercased ASCII words, ``non_ascii`` the
    count of words with other letters ("Wysłano").
    """
    total = len(tokens) + non_ascii
    english = sum(1 for t in tokens if t in FUNCTION_WORDS)
    return total >= FOREIGN_MIN_WORDS and english < ENGLISH_SHARE * total
