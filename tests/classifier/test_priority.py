"""Priority cue rules: each step up or down has a reason a person can read."""

from __future__ import annotations

import pytest

from classifier.priority import PriorityRules

RULES = PriorityRules(vip_senders=["ceo@example.com", "@board.example.com"])


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("Email is down", "Exchange went down for the whole company", "critical"),
        ("Help", "Our files are encrypted and there is a ransom note", "critical"),
        ("VPN", "Nobody can connect to the VPN this morning", "critical"),
        ("Wi-Fi", "The whole office has no Wi-Fi since 9", "high"),
        ("Laptop", "My screen is black and I cannot work", "high"),
        ("Report", "I need Excel fixed before end of day, deadline for the board", "high"),
        ("Strange mail", "I clicked a link in a phishing email", "high"),
        ("Keyboard", "The E key sticks a bit", "medium"),
        ("Question", "No rush, how do I change my Teams background?", "low"),
        ("Font", "Not urgent but the font in Outlook is small", "low"),
    ],
)
def test_cues(subject, body, expected) -> None:
    result = RULES.assess(subject, body)
    assert result.priority == expected, result.reasons
    assert result.reasons


def test_urgency_beats_no_rush_and_every_cue_is_a_reason() -> None:
    result = RULES.assess("Printers", "No rush for me, but the whole floor cannot print, urgent")
    assert result.priority == "high"
    assert any("many users" in r for r in result.reasons)
    assert any("urgent" in r for r in result.reasons)
    assert not any("no rush" in r for r in result.reasons)


def test_vip_senders_by_address_or_domain_case_blind() -> None:
    assert RULES.assess("Mouse", "new mouse please", "CEO@Example.com").priority == "high"
    assert RULES.assess("Mouse", "new mouse please", "x@board.example.com").priority == "high"
    assert RULES.assess("Mouse", "new mouse please", "x@example.com").priority == "medium"
    vip_down = RULES.assess("Down", "site outage", "ceo@example.com")
    assert vip_down.priority == "critical" and any("VIP" in r for r in vip_down.reasons)


def test_no_cue_is_medium_and_says_so() -> None:
    result = RULES.assess("Monitor", "Please send a second monitor")
    assert result.priority == "medium"
    assert result.reasons == ("no priority cue -> medium",)


def test_words_inside_other_words_do_not_fire() -> None:
    # "downtown", "viruses" in a path, "asapp" are not cues
    assert RULES.assess("Move", "I moved to the downtown office", "").priority == "medium"
