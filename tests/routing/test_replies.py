"""Quote stripping over the public reply fixtures in tests/data, and the approval reply grammar."""

from __future__ import annotations

import email
import email.policy
import re
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from routing.replies import ReplyDecision, extract_new_text, parse_decision
from tests.conftest import EMAILS

TALON = EMAILS / "talon" / "files"
ZAPIER = EMAILS / "zapier-email-reply-parser" / "files"
MPR = EMAILS / "mail-parser-reply" / "files"


def _parts(path: Path) -> tuple[str | None, str | None]:
    """The first text/plain and text/html bodies of an .eml file."""
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    return (
        plain.get_content() if plain is not None else None,
        html.get_content() if html is not None else None,
    )


def _fixture(folder: Path, name: str) -> str:
    return (folder / name).read_text(encoding="utf-8")


def _squash(text: str) -> str:
    return re.sub(r"\s", "", text)


# --- talon: full client replies whose new text is "Hello" ------------------------------------

TALON_CLIENTS = [
    "android", "aol", "apple_mail", "apple_mail_2", "comcast", "gmail", "hotmail", "iphone",
    "outlook", "sparrow", "thunderbird", "yahoo",
]  # fmt: skip


@pytest.mark.parametrize("client", TALON_CLIENTS)
def test_talon_standard_reply_plain_part_is_hello(client: str) -> None:
    # iphone and sparrow upstream keep their signature; we strip "Sent from my" and "-- ".
    plain, _html = _parts(TALON / "standard_replies" / f"{client}.eml")
    assert extract_new_text(plain, None) == "Hello"


@pytest.mark.parametrize("client", ["android", "aol", "comcast", "gmail", "hotmail", "sparrow"])
def test_talon_standard_reply_html_part_is_hello(client: str) -> None:
    _plain, html = _parts(TALON / "standard_replies" / f"{client}.eml")
    assert extract_new_text(None, html) == "Hello"


@pytest.mark.parametrize("name", sorted(p.name for p in (TALON / "html_replies").glob("*.html")))
def test_talon_html_replies(name: str) -> None:
    # Upstream compares with whitespace removed, and so do we.
    new = extract_new_text(None, _fixture(TALON / "html_replies", name))
    assert _squash(new) == _squash("Hi. I am fine.\n\nThanks,\nAlex")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("OLK_SRC_BODY_SECTION.html", "Reply"), ("reply-separated-by-hr.html", "Hi\nthere\nBob")],
)
def test_talon_outlook_html_markers(name: str, expected: str) -> None:
    assert extract_new_text(None, _fixture(TALON, name)) == expected


def test_talon_yahoo_share_block() -> None:
    plain, html = _parts(TALON / "reply-quotations-share-block.eml")
    for new in (extract_new_text(plain, None), extract_new_text(None, html)):
        assert new.startswith("Hi Katharine.")
        assert "wrote:" not in new
        assert "booking inquiry" not in new


# --- zapier and mail-parser-reply: plain bodies ----------------------------------------------

# Expected new text where upstream's tests state it (or the file makes it plain).
KNOWN = {
    "correct_sig.txt": "this is an email with a correct -- signature.",
    "email_1_3.txt": "Oh thanks.\n\nHaving the function would be great.\n\n-Abhishek Kona",
    "email_1_4.txt": "Awesome! I haven't had another problem with it.",
    "email_1_7.txt": ":+1:",
    "email_2_1.txt": "Outlook with a reply",
    "email_2_2.txt": "Outlook with a reply directly above line",
    "email_2_3.txt": "Outlook with a reply above headers using unusual format",
    "email_BlackBerry.txt": "Here is another email",
    "email_gmail.txt": "This is a test for inbox replying to a github message.",
    "email_headers_no_delimiter.txt": "And another reply!",
    "email_iPhone.txt": "Here is another email",
    "email_multi_word_sent_from_my_mobile_device.txt": "Here is another email",
    "email_sent_from_BlackBerry.txt": "Here is another email",
    "email_sent_from_iPhone.txt": "Here is another email",
    "email_sent_from_multi_word_mobile_device.txt": "Here is another email",
    "email_3_1.txt": "First reply.\n\nThis is fairly common; nothing too hard here!",
    "email_danish_3.txt": "Hej,\n\nSvar.",
    "email_danish_4.txt": "Hej,\n\nSvar.",
    "email_nl_1_2.txt": "Outlook met een antwoord",
    "multiline_on_de.txt": "Am heutigen Tage",
    "multi_header.txt": "No problem. I\u2019ll just start a new order.",
    # Interleaved after a top line: we keep only what is above the first quote (see
    # routing.replies); upstream zapier also keeps "You can list the keys ..." below it.
    "email_1_2.txt": "Hi,",
    # Bottom-posted: the text under the quote counts; we stop at the next quote block.
    "email_1_8.txt": "I will reply under this one",
    # The body starts with a quoted header block or attribution: nothing in it is new.
    "email_pl_1_1.txt": "",
    "email_pl_1_2.txt": "",
    "email_pl_1_3.txt": "",
    "multiline_on.txt": "",
}
# Text that must survive (the reply) and text that must not (quoted or signature).
KEEPS = {
    "email_partial_quote_header.txt": ["On your remote host you can run:", "telnet 127.0.0.1"],
    "greedy_on.txt": ["On your remote host you can run:", "the tunnel is not working."],
    "email_sent_from_my_not_signature.txt": ["Sent from my desk"],
    "email_sent_from_not_signature.txt": ["Sent from my desk"],
    "email_sig_delimiter_in_middle_of_line.txt": ["fix -- this is not a signature", "kthxbai"],
    "email_one_is_not_on.txt": ["Locally (on development), when I run..."],
    "email_bullets.txt": ["- how about bullets", "- and another"],
    "email_1_5.txt": ["This is the fourth bullet point", "It goes on and on\nfor a while."],
    "email_danish_1.txt": ["Tak for din mail."],
    "email_danish_2.txt": ["Jeg har modtaget filerne."],
    "email_danish_5.txt": ["Svar."],
    "email_swedish_1.txt": ["Ursäkta mitt sena svar!"],
    "email_swedish_2.txt": ["/John"],
    "email_sv_anon_1.txt": ["070-0000000"],
    "email_ja_1_2.txt": ["以上、よろしくお願いいたします"],
    "email_ja_1_1.txt": ["こんにちは"],
    "caution.txt": ["Hi lads's Team,", "job at our end."],
    "outlook.txt": ["My number is: +00 0000 000 000"],
    "begins_with_signature.txt": ["Christopher Edwards"],
}
GONE = [
    r"^>", r"wrote:\s*$", r"schrieb", r"skrev", r"napisał", r"^\*?From:", r"^Fra:", r"^Od:",
    r"^\*?Van:", r"Original Message", r"Oprindelig", r"^Sent from my \w+$", r"^-- ?$",
    r"Get Outlook for", r"CAUTION:", r"_{10,}", r"mailing list", r"2022年1月1日",
]  # fmt: skip


def _bodies() -> list[tuple[str, Path]]:
    return [
        (f"{d.parent.name}/{p.name}", p) for d in (ZAPIER, MPR) for p in sorted(d.glob("*.txt"))
    ]


@pytest.mark.parametrize(("label", "path"), _bodies(), ids=[b[0] for b in _bodies()])
def test_plain_reply_fixture(label: str, path: Path) -> None:
    new = extract_new_text(path.read_text(encoding="utf-8"), None)
    if path.name in KNOWN:
        assert new == KNOWN[path.name]
    for kept in KEEPS.get(path.name, []):
        assert kept in new
    for pattern in GONE:
        assert not re.search(pattern, new, re.MULTILINE), (label, pattern, new)


def test_pathological_line_is_fast() -> None:
    body = _fixture(ZAPIER, "pathological.txt")
    started = time.perf_counter()
    new = extract_new_text(body, None)
    assert time.perf_counter() - started < 0.5
    assert new.endswith("as soon as I\nget back to a computer.")


def test_huge_inputs_are_linear() -> None:
    nasty = [
        "On " + "1 " * 50_000 + "wrote",
        ">" * 200_000,
        "From: x\n" * 20_000,
        "-" * 200_000,
        "<div>" * 20_000 + "x" + "</div>" * 20_000,
        "!" * 200_000,
    ]
    started = time.perf_counter()
    for text in nasty:
        extract_new_text(text, None)
        extract_new_text(None, text)
        parse_decision(text, text)
    assert time.perf_counter() - started < 5


# --- hand-written replies --------------------------------------------------------------------


def test_outlook_from_sent_block_below_the_answer() -> None:
    body = (
        "Approved\r\n\r\nRegards,\r\nAnn\r\n\r\n"
        "From: IT Support <support@example.com>\r\nSent: Monday, 3 March 2025 10:00\r\n"
        "To: Ann <ann@example.com>\r\nSubject: Approval needed [TKT-20250303-ABC123]\r\n\r\n"
        "Reply APPROVE or REJECT.\r\n"
    )
    assert extract_new_text(body, None) == "Approved\n\nRegards,\nAnn"


@pytest.mark.parametrize(
    "header",
    [
        "**From:** IT Support <support@example.com>\n**Sent:** Monday\n**To:** Ann",
        "*From:* IT Support <support@example.com>\n*Sent:* Monday\n*Subject:* x",
        "-----Original Message-----\nFrom: IT Support\nSent: Monday",
        "________________________________\nFrom: IT Support <support@example.com>\nSent: Mo",
        "Von: IT Support <support@example.com>\nGesendet: Montag\nAn: Ann\nBetreff: x",
    ],
)
def test_outlook_header_variants(header: str) -> None:
    body = f"reject\nnot this quarter\n\n{header}\n\nPlease approve or reject."
    assert extract_new_text(body, None) == "reject\nnot this quarter"


def test_gmail_attribution_wrapped_over_two_lines() -> None:
    body = (
        "Declined.\n\nOn Mon, 3 Mar 2025 at 10:00, IT Support <\nsupport@example.com> wrote:\n\n"
        "> Reply APPROVE or REJECT.\n"
    )
    assert extract_new_text(body, None) == "Declined."


def test_apple_mail_attribution() -> None:
    body = "approve\n\nOn 3 Mar 2025, at 10:00, IT Support wrote:\n\n> Please approve\n"
    assert extract_new_text(body, None) == "approve"


def test_sent_from_my_iphone() -> None:
    body = "Approve\n\nSent from my iPhone\n\nOn Mar 3, 2025, at 10:00, IT <it@x.com> wrote:\n> x"
    assert extract_new_text(body, None) == "Approve"


def test_signature_after_dash_dash_space() -> None:
    assert extract_new_text("Reject\n\n-- \nAnn Smith\nCFO", None) == "Reject"


def test_bottom_posted_reply() -> None:
    body = "On 03/03/2025 10:00, IT Support wrote:\n> Please approve or reject.\n\napproved\n"
    assert extract_new_text(body, None) == "approved"


def test_quoted_only_reply_has_no_new_text() -> None:
    body = "\n\nOn Mon, 3 Mar 2025 at 10:00, IT <it@example.com> wrote:\n> Please approve\n"
    assert extract_new_text(body, None) == ""


@pytest.mark.parametrize(
    "banner",
    [
        "[EXTERNAL] CAUTION: This email originated from outside the organization.\n",
        "CAUTION: This email originated from outside the organization.",  # no blank line (HTML)
        "CAUTION: This email originated from outside of the organization. Do not\n"
        "click links unless you know the content is safe.",
        "[EXTERNAL]",
        "External email",
    ],
)
def test_external_sender_banner_is_dropped(banner: str) -> None:
    assert extract_new_text(f"{banner}\nApprove\nfine by me", None) == "Approve\nfine by me"


def test_html_banner_table_above_the_answer() -> None:
    html = (
        "<table><tr><td>CAUTION: This email originated from outside of the organization."
        "</td></tr></table><div>Approved</div><div class=gmail_quote>x</div>"
    )
    assert extract_new_text(None, html) == "Approved"


def test_html_only_outlook_reply() -> None:
    html = (
        "<html><body><div class=WordSection1><p class=MsoNormal>Approved &#8211; go ahead"
        "<o:p></o:p></p><p class=MsoNormal><o:p>&nbsp;</o:p></p>"
        "<div id=\"appendonsend\"></div><hr style='display:inline-block;width:98%'>"
        '<div id="divRplyFwdMsg"><b>From:</b> IT Support<br><b>Sent:</b> Monday</div>'
        "<p>Please reply APPROVE or REJECT</p></div></body></html>"
    )
    new = extract_new_text(None, html)
    assert new == "Approved \u2013 go ahead"
    assert parse_decision(new, "RE: Approval needed") == ReplyDecision(
        "approve", "go ahead", "body"
    )


def test_html_only_outlook_desktop_border_top_reply() -> None:
    html = (
        "<p>Reject</p><div style='border:none;border-top:solid #E1E1E1 1.0pt;"
        "padding:3.0pt 0in 0in 0in'><p><b>From:</b> IT</p></div><p>approve</p>"
    )
    assert extract_new_text(None, html) == "Reject"


def test_html_only_gmail_reply() -> None:
    html = (
        '<div dir="ltr">deny<div>wrong cost centre</div></div><br><div class="gmail_quote">'
        '<div dir="ltr" class="gmail_attr">On Mon, Mar 3, 2025 at 10:00 AM IT Support &lt;'
        '<a href="mailto:it@example.com">it@example.com</a>&gt; wrote:<br></div>'
        '<blockquote class="gmail_quote">Please approve</blockquote></div>'
    )
    assert extract_new_text(None, html) == "deny\nwrong cost centre"


def test_html_thunderbird_and_yahoo_quotes() -> None:
    html = (
        "approve<br><div class='moz-cite-prefix'>On 3/3/25 10:00, IT wrote:<br></div>"
        "<blockquote type='cite'>Please approve</blockquote>"
        "<div class='yahoo_quoted'>On Monday, IT wrote: reject</div>"
    )
    assert extract_new_text(None, html) == "approve"


def test_html_unknown_attribution_above_blockquote_is_dropped() -> None:
    html = "<p>ok</p><p>3 mars 2025 à 10:00, IT &lt;it@example.com&gt; a écrit :</p>"
    html += "<blockquote>approve</blockquote>"
    assert extract_new_text(None, html) == "ok"


def test_plain_text_is_preferred_to_html() -> None:
    assert extract_new_text("approve", "<p>reject</p>") == "approve"
    assert extract_new_text("  \n", "<p>reject</p>") == "reject"
    assert extract_new_text(None, None) == ""


# --- the grammar -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "decision"),
    [
        ("approve", "approve"),
        ("approved.", "approve"),
        ("APPROVE!", "approve"),
        ("Approve?", "approve"),  # punctuation is ignored, as CONTRACT.md says
        ("*Approved*", "approve"),
        ("\n\n  Approved\nthanks", "approve"),
        ("reject", "reject"),
        ("Rejected", "reject"),
        ("deny", "reject"),
        ("Denied.", "reject"),
        ("decline", "reject"),
        ("declined", "reject"),
        ("- approve", "approve"),
    ],
)
def test_decision_words(text: str, decision: str) -> None:
    result = parse_decision(text, "Re: Approval needed [TKT-20250303-ABC123]")
    assert (result.decision, result.source) == (decision, "body")


@pytest.mark.parametrize(
    "text",
    [
        "yes",
        "ok",
        "sounds good",
        "not approved",
        "Don't approve",
        "Hi,\napproved",
        "approval granted",
        "Approve/Reject",
        "approvedgo",
        "I approve",
    ],
)
def test_anything_else_is_no_decision(text: str) -> None:
    assert parse_decision(text, "Re: APPROVE [TKT-20250303-ABC123]") == ReplyDecision(
        None, "", "none"
    )


def test_comment_is_the_rest_of_the_new_text() -> None:
    result = parse_decision("Approved - go ahead, but only read access", "Re: x")
    assert result == ReplyDecision("approve", "go ahead, but only read access", "body")
    result = parse_decision("Reject.\n\nNot this quarter.\nAsk again in May.", "Re: x")
    assert result.comment == "Not this quarter.\nAsk again in May."
    assert parse_decision("approve", "x").comment == ""


@pytest.mark.parametrize(
    ("subject", "decision"),
    [
        ("Re: APPROVE [TKT-20250303-ABC123] [APR-ABCDEFGHIJKLMNOP]", "approve"),
        ("RE: AW: Fwd: reject [TKT-20250303-ABC123]", "reject"),
        ("[TKT-20250303-ABC123] [APR-ABCDEFGHIJKLMNOP] Approved", "approve"),
        ("SV: Antw: WG: FW: Denied", "reject"),
        ("Re[2]: [EXTERNAL] approve", "approve"),
        ("Aw: Declined: VPN access", "reject"),
    ],
)
def test_no_new_text_reads_the_subject(subject: str, decision: str) -> None:
    assert parse_decision("", subject) == ReplyDecision(decision, "", "subject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Approval needed [TKT-20250303-ABC123] [APR-ABCDEFGHIJKLMNOP]",
        "Re: [TKT-20250303-ABC123]",
        "Re: not approved",
        "",
    ],
)
def test_subject_without_a_decision(subject: str) -> None:
    assert parse_decision("", subject) == ReplyDecision(None, "", "none")


def test_quoted_only_reply_decides_from_subject() -> None:
    body = "On Mon, 3 Mar 2025 at 10:00, IT <it@example.com> wrote:\n> Please approve or reject\n"
    new = extract_new_text(body, None)
    result = parse_decision(new, "Re: APPROVE [TKT-20250303-ABC123] [APR-ABCDEFGHIJKLMNOP]")
    assert result == ReplyDecision("approve", "", "subject")


def test_body_wins_over_subject() -> None:
    assert parse_decision("reject", "Re: APPROVE").decision == "reject"
    assert parse_decision("yes", "Re: APPROVE").decision is None


def test_punctuation_only_text_counts_as_no_new_text() -> None:
    assert parse_decision("...\n---", "Re: approve").source == "subject"


def test_html_with_an_unclosed_head_still_has_text() -> None:
    html = "<html><head><meta charset=utf-8><title>t</title><body><p>Approve</p></body></html>"
    assert extract_new_text(None, html) == "Approve"
