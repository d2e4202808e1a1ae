"""What the model reads: new text only, normalised, subject weighted."""

from __future__ import annotations

from classifier.textprep import SUBJECT_WEIGHT, model_text, new_text, normalise


def test_quoted_reply_and_outlook_header_are_cut() -> None:
    body = (
        "The printer on floor 3 jams again.\n\n"
        "From: Service Desk <it@example.com>\nSent: Monday\nTo: me\nSubject: VPN\n\n"
        "Your VPN ticket is resolved."
    )
    assert new_text(body) == "The printer on floor 3 jams again."


def test_gmail_attribution_signature_and_mobile_footer_are_cut() -> None:
    assert new_text("Outlook crashes\n\nOn Mon, Jan 5, 2026 at 9:00 AM Bob wrote:\n> old") == (
        "Outlook crashes"
    )
    assert new_text("Wi-Fi drops\n-- \nJane Doe\nFinance") == "Wi-Fi drops"
    assert new_text("Locked out\n\nSent from my iPhone") == "Locked out"
    assert new_text("Help\n-----Original Message-----\nFrom: x") == "Help"


def test_a_mail_that_starts_quoted_keeps_its_new_text() -> None:
    assert new_text("> quoted first\n\nmy new question about VPN") == "my new question about VPN"


def test_only_quote_falls_back_to_everything() -> None:
    assert new_text("> only quoted") == "> only quoted"


def test_normalise_matches_the_training_form() -> None:
    assert normalise("VPN: can't reach https://intra.example.com/x (mail bob@example.com) 42x") == (
        "vpn can t reach urladdr mail emailaddr 42x"
    )


def test_subject_is_weighted() -> None:
    assert model_text("Printer", "jam").split().count("printer") == SUBJECT_WEIGHT
