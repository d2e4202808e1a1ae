"""HTML reply bodies to plain text, with the quoted parts already taken out.

Only the standard library's :class:`html.parser.HTMLParser` is used. What mail
clients put around quoted mail is known markup, so it is handled here, where the
structure is still visible:

* dropped, and replaced by one ``>`` line so that :mod:`routing.replies` also
  drops the attribution line above it: ``<blockquote>``, Gmail's
  ``div.gmail_quote``, Yahoo's ``div.yahoo_quoted``;
* dropped silently: Thunderbird's ``moz-cite-prefix`` ("On ... wrote:"),
  signature blocks (``gmail_signature``, Outlook web's ``#Signature``);
* everything from here on is old mail (a *cut*): Outlook web's
  ``#divRplyFwdMsg`` and ``#appendonsend``, Outlook for Mac's
  ``#OLK_SRC_BODY_SECTION``, Outlook desktop's ``border-top`` header box, and
  ``<hr>`` (Outlook 2003, Hotmail, Zimbra put one above the quoted headers).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

QUOTE_MARK = ">"

_SKIP_CONTENT = frozenset({"style", "script", "title", "template", "noscript", "xml"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "li", "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot", "th", "thead",
        "tr", "ul",
    }
)  # fmt: skip
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr"}
)  # fmt: skip
_CUT_IDS = frozenset({"divrplyfwdmsg", "appendonsend", "olk_src_body_section"})
_QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted")
_SILENT_CLASSES = ("moz-cite-prefix", "gmail_signature")
_SILENT_IDS = frozenset({"signature"})
_SPACES = re.compile(r"[ \t\r\n\f\v\xa0]+")


def html_to_text(html: str) -> str:
    """Return the visible text of ``html`` above any quoted part, one line per block."""
    parser = _ReplyTextParser()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    return "\n".join(lines).strip("\n")


def _what_to_do(tag: str, attrs: dict[str, str]) -> str:
    """Classify an element: "cut", "quote", "silent" or "" (render it)."""
    ident = attrs.get("id", "").lower().removeprefix("x_")
    classes = attrs.get("class", "").lower().split()
    style = attrs.get("style", "").lower().replace(" ", "")
    if tag == "hr" or ident in _CUT_IDS:
        return "cut"
    # Outlook desktop and Windows Mail: the quoted header sits in a box with a top rule.
    if tag in ("div", "p") and "border-top" in style and "padding" in style:
        return "cut"
    if tag == "blockquote" or any(c.startswith(_QUOTE_CLASSES) for c in classes):
        return "quote"
    if ident in _SILENT_IDS or any(c.startswith(_SILENT_CLASSES) for c in classes):
        return "silent"
    return ""


class _ReplyTextParser(HTMLParser):
    """Collects text into ``parts``; skips dropped subtrees; stops at a cut."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._stopped = False
        self._skip_tag: str | None = None  # the element whose subtree is being skipped
        self._skip_depth = 0
        self._pre = 0
        self._line_has_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._stopped:
            return
        if self._skip_tag is not None:
            self._skip_depth += tag == self._skip_tag
            return
        action = _what_to_do(tag, {k: v or "" for k, v in attrs})
        if action == "cut":
            self._stopped = True
            return
        if action or tag in _SKIP_CONTENT:
            self._soft_newline()
            if action == "quote":
                self._emit(QUOTE_MARK)
                self._soft_newline()
            if tag not in _VOID:
                self._skip_tag, self._skip_depth = tag, 1
            return
        if tag == "br":
            self.parts.append("\n")
            self._line_has_text = False
        elif tag in _BLOCKS:
            self._soft_newline()
            self._pre += tag == "pre"
        elif tag == "td":
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._stopped:
            return
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip_tag = None
            return
        if tag in _BLOCKS:
            self._soft_newline()
            if tag == "pre" and self._pre:
                self._pre -= 1

    def handle_data(self, data: str) -> None:
        if self._stopped or self._skip_tag is not None:
            return
        if self._pre:
            self._emit(data.replace("\xa0", " "))
            return
        text = _SPACES.sub(" ", data)
        if not self._line_has_text:
            text = text.lstrip()
        if text:
            self._emit(text)

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        if text.strip():
            self._line_has_text = not text.endswith("\n")

    def _soft_newline(self) -> None:
        """End the current line unless it is empty (blocks never add blank lines)."""
        if self._line_has_text:
            self.parts.append("\n")
            self._line_has_text = False
