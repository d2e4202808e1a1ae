"""Agent commands by e-mail: the grammar (pure: text in, commands and the rest out).

Commands are lines at the top of a reply's new text, each starting with ``#``,
case-insensitive, one per line; the first line that is not a command ends them
(blank lines before it are skipped). What follows is the answer relayed to the
requester. ``#note`` takes the rest of its line; so does ``#reason``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["COMMANDS", "REQUESTER_COMMANDS", "Command", "Parsed", "parse_commands"]

#: name -> what its argument is ("" = none)
COMMANDS = {
    "take": "",
    "assign": "address",
    "status": "status",
    "priority": "priority",
    "category": "category",
    "team": "team",
    "note": "text",
    "cc": "address",
    "reason": "text",
    "close": "",
}
#: What a requester may do to their own ticket.
REQUESTER_COMMANDS = frozenset({"close"})
#: The statuses an agent may set (the others belong to the daemon).
SETTABLE_STATUSES = ("in_progress", "waiting", "resolved", "closed")
_LINE = re.compile(r"^\s*#([A-Za-z_-]+)\b[ \t]*(.*?)\s*$")


@dataclass(frozen=True, slots=True)
class Command:
    """One command line: its name (lower case), its argument, and the line as written."""

    name: str
    arg: str
    line: str

    @property
    def known(self) -> bool:
        """True for a command of the grammar."""
        return self.name in COMMANDS


@dataclass(frozen=True, slots=True)
class Parsed:
    """The commands at the top of a text and the text after them."""

    commands: tuple[Command, ...]
    rest: str


def parse_commands(text: str) -> Parsed:
    """Split ``text`` into its leading command lines and the rest."""
    lines = (text or "").splitlines()
    commands: list[Command] = []
    index = 0
    for index, line in enumerate(lines):  # noqa: B007 - the index is the rest's start
        if not line.strip():
            continue
        found = _LINE.match(line)
        if found is None:
            break
        commands.append(Command(found[1].lower().replace("-", "_"), found[2], line.strip()))
    else:
        index = len(lines)
    return Parsed(tuple(commands), "\n".join(lines[index:]).strip())
