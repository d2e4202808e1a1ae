"""The screening rules: one small mail's headers, one assert."""

from __future__ import annotations

import pytest

from routing.reply_screen import (
    ReplyFacts,
    ScreenPolicy,
    authentication_results,
    is_forward,
    screen,
)

BOSS = "boss@example.com"


def facts(subject="Re: [TKT-1] [APR-X] Approval needed", author=BOSS, **headers):
    values = {"from": (author or "x",)}
    values.update({k.replace("_", "-").lower(): tuple(v) for k, v in headers.items()})
    return ReplyFacts(subject, values, author)


def rule(f: ReplyFacts, **policy) -> str | None:
    return screen(f, ScreenPolicy(**policy)).rule


def test_a_plain_reply_passes() -> None:
    assert rule(facts()) is None


def test_automatic_mail_is_refused_first() -> None:
    f = ReplyFacts("Automatic reply: x", {"from": (BOSS,)}, BOSS, None, ("auto-reply",))
    assert rule(f) == "automatic"


@pytest.mark.parametrize(
    "subject",
    ["FW: x", "Fwd: x", "WG: x", "TR: x", "RV: x", "Re: FW: [TKT-1] x", "[EXT] Fwd: x", "fw : x"],
)
def test_forward_prefixes(subject: str) -> None:
    assert is_forward(subject, {})


@pytest.mark.parametrize("subject", ["Re: x", "AW: x", "Re: Fwd of the new laptop", "x FW: y"])
def test_replies_are_no_forwards(subject: str) -> None:
    assert not is_forward(subject, {})


def test_resent_headers_mark_a_forward() -> None:
    assert rule(facts(resent_from=["boss@example.com"])) == "forward"


def test_two_from_headers_or_no_single_address_are_refused() -> None:
    assert rule(ReplyFacts("Re: x", {"from": (BOSS, "x@y.z")}, BOSS)) == "from"
    assert rule(facts(author=None)) == "from"


def test_a_delegate_is_refused_unless_allowed() -> None:
    f = ReplyFacts(
        "Re: x", {"from": (BOSS,), "sender": ("pa@example.com",)}, BOSS, "pa@example.com"
    )
    assert rule(f) == "delegate"
    assert rule(f, allow_delegates=True) is None
    same = ReplyFacts("Re: x", {"from": (BOSS,), "sender": (BOSS,)}, BOSS, "BOSS@example.com")
    assert rule(same) is None
    unreadable = ReplyFacts("Re: x", {"from": (BOSS,), "sender": ("a, b",)}, BOSS, None)
    assert rule(unreadable) == "delegate"


@pytest.mark.parametrize(
    ("headers", "authserv", "refused"),
    [
        # Exchange Online writes no authserv-id; its topmost header is trusted
        (["spf=pass smtp.mailfrom=x.com; dmarc=fail action=oreject; compauth=fail"], None, True),
        (["spf=pass; dkim=pass; dmarc=bestguesspass; compauth=pass reason=109"], None, False),
        (["compauth=fail reason=000", "dmarc=pass"], None, True),
        # with an authserv-id, only that server's topmost header counts
        (["evil.example; dmarc=pass", "mx.example.com; dmarc=fail"], "mx.example.com", True),
        (
            ["mx.example.com (x; y) 1; dmarc=pass", "mx.example.com; dmarc=fail"],
            "MX.example.com",
            False,
        ),
        (["evil.example; dmarc=fail"], "mx.example.com", False),
        ([], "mx.example.com", False),
    ],
)
def test_only_the_trusted_authentication_results_count(headers, authserv, refused) -> None:
    f = facts(authentication_results=headers)
    assert (
        rule(f, trust_authentication_results=True, authserv_id=authserv) == "authentication"
    ) is refused


def test_authentication_results_are_not_read_unless_trusted() -> None:
    assert rule(facts(authentication_results=["mx.example.com; dmarc=fail"])) is None


def test_authentication_results_parse_drops_comments() -> None:
    authserv, results = authentication_results(
        "mx.google.com; dkim=pass (test; mode) header.i=@x.com; dmarc=fail (p=NONE) header.from=x.com"
    )
    assert authserv == "mx.google.com" and results == {"dkim": "pass", "dmarc": "fail"}
