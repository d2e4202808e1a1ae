"""Measuring the spelling corrector: codespell's IT misspellings and a protection set.

The IT subset is fixed by the data alone, never by the corrector's answers. An
entry ``misspelling->correction`` of codespell's ``codespell_lib/data/dictionary.txt``
(its main list; the en-GB, rare and usage lists are not misspellings) is in the
subset when:

1. it has exactly one correction (no comma: codespell's multi-choice entries
   are ambiguous by its own account);
2. misspelling and correction are plain lowercase ASCII words (no apostrophes,
   digits, hyphens or underscores: identifiers are not prose);
3. the misspelling has at least ``MIN_LENGTH`` (4) letters: the corrector's
   documented scope is words of 4 letters or more;
4. the correction is a term of ``classifier/data/it_lexicon.txt``.

Entries whose misspelling happens to be a valid English word stay in the subset
(and count as misses when left alone), so the figure is not flattered by them.
With codespell 2.4.3 and the lexicon as shipped the subset has 7,049 pairs. The
corrector prefers IT terms among equally distant candidates, by design, and
every correction in the subset is one: the figure measures the IT use case.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from classifier.base import Corrector
from classifier.lexicon import LEXICON_FILE, MIN_LENGTH, read_word_list

PLAIN_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True, slots=True)
class Accuracy:
    """Top-1 accuracy of a corrector on a list of (misspelling, correction) pairs."""

    total: int
    correct: int
    misses: tuple[tuple[str, str, str], ...]

    @property
    def ratio(self) -> float:
        """Correct answers over all pairs (0.0 for an empty list)."""
        return self.correct / self.total if self.total else 0.0


def codespell_dictionary() -> Path:
    """Return the path of codespell's main misspelling list (codespell must be installed)."""
    spec = importlib.util.find_spec("codespell_lib")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("codespell is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "dictionary.txt"


def it_terms() -> frozenset[str]:
    """Return the terms of the shipped IT lexicon."""
    text = (resources.files("classifier") / "data" / LEXICON_FILE).read_text("utf-8")
    return frozenset(read_word_list(text))


def it_subset(
    lines: list[str] | None = None, terms: frozenset[str] | None = None
) -> list[tuple[str, str]]:
    """Return the (misspelling, correction) pairs of the IT subset, in dictionary order.

    ``lines`` defaults to codespell's main dictionary, ``terms`` to the IT lexicon.
    """
    if lines is None:
        lines = codespell_dictionary().read_text("utf-8").splitlines()
    terms = it_terms() if terms is None else terms
    pairs = []
    for line in lines:
        wrong, arrow, right = line.strip().partition("->")
        if not arrow or "," in right:
            continue
        if not (PLAIN_WORD.fullmatch(wrong) and PLAIN_WORD.fullmatch(right)):
            continue
        if len(wrong) >= MIN_LENGTH and right in terms:
            pairs.append((wrong, right))
    return pairs


def measure_accuracy(corrector: Corrector, pairs: list[tuple[str, str]]) -> Accuracy:
    """Correct each misspelling on its own and count exact matches with the correction."""
    correct, misses = 0, []
    for wrong, right in pairs:
        got = corrector.correct(wrong).text
        if got == right:
            correct += 1
        else:
            misses.append((wrong, right, got))
    return Accuracy(len(pairs), correct, tuple(misses))


# Texts that must come back unchanged: every misspelling-like token in them is
# protected (address, URL, host, IP, path, code, id, tag, product, name, quote, log).
PROTECTION_CASES: tuple[str, ...] = (
    # e-mail addresses
    "Please write to jonh.smiht@exmaple.com about it.",
    "Forward it to <pasword.reset@corp.example> today.",
    "The alias netwrok-team@example.org bounces.",
    "Mail from servce_desk@helpdsk.example.net was rejected.",
    # URLs
    "Open https://sharepiont.example.com/sites/netwrok in the browser.",
    "The page www.exmaple.com/acess/login is blank.",
    "The admin page http://10.0.0.1:8080/admin/setings times out.",
    "Download it from ftp://files.example.com/pub/sofware please.",
    "See <https://wiki.example.com/Pasword_Reset> for the steps.",
    # hostnames
    "The server srv-db01.corp.local is down again.",
    "I cannot reach FILESRV02 since this morning.",
    "The share on fileservr.corp.local is read only.",
    "Our relay exchnage01.corp.example.com rejects mail.",
    "Printing via printsrv-03 fails.",
    # IP addresses
    "The printer has the address 10.0.0.12 now.",
    "The subnet 192.168.1.0/24 has no gateway.",
    "The host fe80::1ff:fe23:4567:890a does not answer.",
    "The router 2001:db8::1 drops packets.",
    "The database on 127.0.0.1:5432 refuses connections.",
    # paths
    "The file C:\\Users\\jonh\\Documnets\\file.txt is missing.",
    "The log /var/log/syslog is full.",
    "The share \\\\server\\Pubic\\Scnas is gone.",
    "The script ~/Downlods/setup.sh does not run.",
    "I ran ./configre --prefix=/usr/locl and it failed.",
    "The backup D:\\Backpus\\2026 is empty.",
    # error codes
    "The update fails with 0x80070005 every time.",
    "Chrome shows ERR_CONNECTION_RESET on that page.",
    "The mail bounced with 550 5.7.1 relay denied.",
    "The site returns HTTP 404 for every page.",
    "The call fails with E_ACCESSDENIED here.",
    "The login fails with STATUS_LOGON_FAILURE again.",
    "The event shows 0xc000006d for my account.",
    "The installer ends with error 1603.",
    # ticket ids and approval tokens
    "This is about TKT-20261123-AB12CD from last week.",
    "Approved [APR-7f3a9c2e] by the manager.",
    "It is the same as INC0012345 please.",
    "See REQ-4711 for the details.",
    # asset tags
    "My laptop LT-00123 does not start.",
    "The desktop PC4711 is very slow.",
    "The notebook NB-2026-0042 needs a new battery.",
    "The screen MON-0099 flickers.",
    # tokens with digits
    "We still run win11 on this machine.",
    "The ipv6 address is not assigned.",
    "My office365 license expired.",
    "The image w10pro22 is outdated.",
    "The serial abc123def is on the label.",
    # CamelCase and ALL-CAPS product names
    "SharePoint and OneDrive do not sync.",
    "PowerShell shows an error when I start it.",
    "My iPhone and MacBook cannot connect.",
    "FortiClient and AnyConnect both fail.",
    "LastPass and GlobalProtect need an update.",
    "The VPN asks for MFA every time.",
    "The NETWROK cable label is wrong.",
    "The PASWORD field is empty.",
    "The DHCP server gives no address.",
    # people's names
    "I talked to Jonh about the printer.",
    "Please ask Krzysztof Wojcik about the laptop.",
    "Please ask Sabine Schmitz for the key.",
    "Dear Anja,\nthe printer works again.",
    "The manager Piotr Nowak approved it.",
    "Thanks,\nJonh Smiht",
    "Best regards\nMaximilian Mustermnn\nIT Servce Desk",
    # quoted lines, code and logs
    "> my netwrok is down\nThat was yesterday.",
    "> > pasword expired\nIt works now.",
    "Please run `netwrok restart` on the host.",
    "The output was:\n```\nconection refused\nrecieve timeout\n```\nAny idea?",
    "The log says:\n    recieve buffer full\nWhat does it mean?",
    "The config has:\n\tpasword: hunter2\nIs that right?",
    "2026-11-23 09:14:02 ERROR conection refused by peer",
    "Nov 23 09:14:02 srv sshd[123]: Failed pasword for root",
    "[WARN] netwrok unreachable from the host",
    "ERROR: acess denied for the user",
    # hyphenated words and short words
    "The wi-fi and the e-mail work again.",
    "Please re-instal the driver tomorrow.",
    "The net and the app are teh same.",
)


def protection_changes(
    corrector: Corrector, cases: tuple[str, ...] = PROTECTION_CASES
) -> list[tuple[str, str]]:
    """Return the (case, corrected text) pairs where the corrector changed a protected text."""
    changed = []
    for case in cases:
        text = corrector.correct(case).text
        if text != case:
            changed.append((case, text))
    return changed
