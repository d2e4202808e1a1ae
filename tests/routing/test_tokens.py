"""Approval tokens and strict single-address sender matching."""

from __future__ import annotations

import re

import pytest

from routing.tokens import (
    find_token,
    hash_token,
    new_token,
    sender_matches,
    single_address,
    token_matches,
    tokens_equal,
)

TOKEN = "APR-ABCDEFGHIJKLMNOP"


def test_new_tokens_are_random_and_well_formed() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(re.fullmatch(r"APR-[A-Z2-7]{16}", t) for t in tokens)


def test_only_a_hash_is_stored_and_it_ignores_case() -> None:
    digest = hash_token(TOKEN)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert TOKEN not in digest
    assert hash_token(TOKEN.lower()) == digest
    assert token_matches(TOKEN.lower(), digest)
    assert not token_matches("APR-ABCDEFGHIJKLMNOQ", digest)


def test_tokens_equal() -> None:
    assert tokens_equal(TOKEN, TOKEN.lower())
    assert not tokens_equal(TOKEN, "APR-ABCDEFGHIJKLMNOQ")


@pytest.mark.parametrize(
    ("subject", "text", "found"),
    [
        (f"Re: Approval needed [TKT-20250303-ABC123] [{TOKEN}]", "", TOKEN),
        (f"Re: [{TOKEN.lower()}]", "", TOKEN),
        ("Re: Approval needed", f"To: support+{TOKEN}@example.com", TOKEN),
        ("Re: Approval needed", f"support+{TOKEN.lower()}@example.com", TOKEN),
        ("Re: x", f"> token [{TOKEN}]", TOKEN),
        ("Re: [APR-SHORT]", "", None),
        ("Re: [APR-ABCDEFGHIJKLMNOPQ]", "", None),  # too long: not one of ours
        ("Re: [APR-ABCDEFGHIJKLMNO1]", "", None),  # 1 is not base32
        ("", "", None),
    ],
)
def test_find_token(subject: str, text: str, found: str | None) -> None:
    assert find_token(subject, text) == found


def test_subject_token_wins_over_body() -> None:
    other = "APR-ZZZZZZZZZZZZZZZZ"
    assert find_token(f"Re: [{TOKEN}]", f"[{other}]") == TOKEN


APPROVER = "approver@corp.com"


@pytest.mark.parametrize(
    "from_header",
    [
        "approver@corp.com",
        "<approver@corp.com>",
        "Approver <APPROVER@Corp.com>",
        '"Doe, Jane" <approver@corp.com>',
        '"approver@corp.com" <approver@corp.com>',
        "approver@corp.com (Jane Doe)",
        "Jane\r\n Doe <approver@corp.com>",
    ],
)
def test_single_approver_address_matches(from_header: str) -> None:
    assert sender_matches(from_header, " Approver@Corp.com ")


@pytest.mark.parametrize(
    "from_header",
    [
        '"approver@corp.com" <attacker@evil.com>',
        "approver@corp.com, attacker@evil.com",
        "attacker@evil.com <approver@corp.com>",
        "Approver <approver@corp.com",
        "Approver approver@corp.com>",
        '"Approver <approver@corp.com>',
        "<approver@corp.com> <attacker@evil.com>",
        "<approver@corp.com> attacker@evil.com",
        "(approver@corp.com) attacker@evil.com",
        "attacker@evil.com (approver@corp.com)",
        "Doe, Jane <approver@corp.com>",
        "list: approver@corp.com;",
        '"approver@corp.com"@evil.com',
        "approver@corp.com@evil.com",
        "<@evil.com:approver@corp.com>",
        "approver@corp.com\r\nBcc: x@evil.com",
        "approver@corp.com\x00",
        "approver@corp.com.",
        "",
    ],
)
def test_spoofed_or_ambiguous_from_never_matches(from_header: str) -> None:
    assert not sender_matches(from_header, APPROVER)


def test_single_address_returns_the_bare_address() -> None:
    assert single_address('"Jane" <Jane.Doe+it@Corp.com>') == "Jane.Doe+it@Corp.com"
    assert single_address("approver@corp.com, other@corp.com") is None


def test_other_sender_does_not_match() -> None:
    assert not sender_matches("Colleague <colleague@corp.com>", APPROVER)
