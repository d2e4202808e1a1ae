"""The IT spelling corrector: corrections, protected tokens, edits, odd input, accuracy."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from classifier import lexicon as lexicon_module
from classifier.base import Correction
from classifier.corrector import MAX_TEXT_LENGTH, ItCorrector
from classifier.lexicon import SpellLexicon
from classifier.spell_distance import edit_cost, osa_distance
from classifier.spelling_eval import (
    PROTECTION_CASES,
    it_subset,
    measure_accuracy,
    protection_changes,
)


@pytest.fixture(scope="session")
def spell_cache(tmp_path_factory) -> Path:
    """One compiled-dictionary cache for the session: it is built once."""
    return tmp_path_factory.mktemp("spell-cache")


@pytest.fixture(scope="session")
def corrector(spell_cache: Path) -> ItCorrector:
    """A loaded corrector shared by the tests (it keeps no per-text state)."""
    corrector = ItCorrector(spell_cache)
    assert corrector.load() is not None
    return corrector


@pytest.mark.parametrize(
    ("typed", "intended"),
    [
        ("netwrok", "network"),
        ("conection", "connection"),
        ("pasword", "password"),
        ("outlok", "outlook"),
        ("pritner", "printer"),
        ("keybaord", "keyboard"),
        ("recieve", "receive"),
        ("acess", "access"),
        ("sofware", "software"),
        ("laptp", "laptop"),
        ("dont", "don't"),
    ],
)
def test_corrects_it_misspelling(corrector: ItCorrector, typed: str, intended: str) -> None:
    assert corrector.correct(f"the {typed} again").text == f"the {intended} again"


def test_keeps_the_capital_of_a_sentence_start(corrector: ItCorrector) -> None:
    assert corrector.correct("Netwrok is down. Pasword expired.").text == (
        "Network is down. Password expired."
    )


def test_corrects_a_mid_sentence_product_one_slip_away(corrector: ItCorrector) -> None:
    assert corrector.correct("I cannot open Outlok today.").text == "I cannot open Outlook today."


def test_corrects_the_stem_of_a_possessive(corrector: ItCorrector) -> None:
    assert corrector.correct("the pritner's tray").text == "the printer's tray"


@pytest.mark.parametrize(
    "text",
    [
        "wifi and wi-fi stay as they are",
        "the network connection works again, thanks",
        "teh adn",  # under 4 letters: too many real words are one edit away
        "Please ask Jonh about the laptop",
        "Thanks,\nJonh Smiht",
        "NETWROK and PASWORD are labels",
    ],
)
def test_leaves_alone(corrector: ItCorrector, text: str) -> None:
    assert corrector.correct(text).text == text


def test_a_capital_after_a_hard_wrap_is_not_a_sentence_start(corrector: ItCorrector) -> None:
    text = "yesterday I asked\nMarek Nowak and Jonh about it"
    assert corrector.correct(text).text == text


def test_foreign_text_is_left_alone(corrector: ItCorrector) -> None:
    text = "der drucker funktioniert nicht mehr seit heute morgen, bitte schnell helfen danke"
    assert corrector.correct(text).text == text


@pytest.mark.parametrize("case", PROTECTION_CASES)
def test_protected_text_is_unchanged(corrector: ItCorrector, case: str) -> None:
    assert corrector.correct(case).text == case


def test_protection_set_is_large_and_untouched(corrector: ItCorrector) -> None:
    assert len(PROTECTION_CASES) >= 60
    assert protection_changes(corrector) == []


def test_only_plain_words_change_next_to_protected_tokens(corrector: ItCorrector) -> None:
    text = "the netwrok on srv-netwrok01.corp.local and `netwrok` and netwrok@example.com"
    assert corrector.correct(text).text == (
        "the network on srv-netwrok01.corp.local and `netwrok` and netwrok@example.com"
    )


def test_edits_point_into_the_original(corrector: ItCorrector) -> None:
    text = "Hi,\n\nmy netwrok conection fails (pasword?) and the pritner's acess too."
    result = corrector.correct(text)
    assert result.original == text
    assert [e.original for e in result.edits] == [
        "netwrok",
        "conection",
        "pasword",
        "pritner's",
        "acess",
    ]
    for edit in result.edits:
        assert text[edit.start : edit.start + len(edit.original)] == edit.original
    assert result.text == (
        "Hi,\n\nmy network connection fails (password?) and the printer's access too."
    )


def test_unchanged_text_has_no_edits(corrector: ItCorrector) -> None:
    assert corrector.correct("all fine here") == Correction("all fine here", "all fine here", ())


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\x00\x01\x02 netwrok \x7f",
        "\ud800 lone surrogate netwrok",
        "emoji 🖨️💥 pritner",
        "fullwidth " + "".join(chr(ord(c) + 0xFEE0) for c in "netwrok"),
        "'" * 50 + "netwrok" + "'" * 50,
        "a" * 10_000,
        "x" * (MAX_TEXT_LENGTH + 1),
    ],
)
def test_odd_text_never_raises(corrector: ItCorrector, text: str) -> None:
    result = corrector.correct(text)
    assert result.original == text
    assert isinstance(result.text, str)


def test_random_text_never_raises(corrector: ItCorrector) -> None:
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABC'\u2019`>\n\t.,-_/\\@:0123456789äöüé\u200b"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300)))
        result = corrector.correct(text)
        assert result.original == text
        for edit in result.edits:
            assert text[edit.start : edit.start + len(edit.original)] == edit.original


def test_non_text_is_treated_as_text(corrector: ItCorrector) -> None:
    assert corrector.correct(None).text == ""  # type: ignore[arg-type]
    assert corrector.correct(b"the netwrok").text == "the network"  # type: ignore[arg-type]


def test_missing_dictionary_leaves_text_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(cls, cache_dir=None):
        raise RuntimeError("no dictionary")

    monkeypatch.setattr(SpellLexicon, "load", classmethod(fail))
    assert ItCorrector().correct("the netwrok").text == "the netwrok"


def test_codespell_it_subset_accuracy(spell_cache: Path) -> None:
    pairs = it_subset()
    assert len(pairs) > 1000
    assert measure_accuracy(ItCorrector(spell_cache), pairs).ratio >= 0.92


def test_it_subset_rules() -> None:
    lines = [
        "netwrok->network",  # in
        "pasword->password, passport,",  # several corrections: out
        "lan->land",  # too short: out
        "netwrok2->network",  # not a plain word: out
        "wrod->word",  # in ("word" is an IT term: the Office program)
        "teh->the",  # correction not an IT term: out
    ]
    terms = frozenset({"network", "password", "land", "word"})
    assert it_subset(lines, terms) == [("netwrok", "network"), ("wrod", "word")]


def test_cache_is_built_once_and_reused(spell_cache: Path, corrector: ItCorrector) -> None:
    files = list(spell_cache.glob("spelling-*.marshal"))
    assert len(files) == 1
    before = files[0].stat().st_mtime_ns
    assert len(SpellLexicon.load(spell_cache)) > 80_000
    assert files[0].stat().st_mtime_ns == before


@pytest.fixture
def tiny_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the real dictionaries by a few words, so that a build takes milliseconds."""
    sources = {
        "general": b"the 1000\nnetwork 500\nprinter 300\n",
        "supplement": gzip.compress(json.dumps({"the": 10, "centers": 5, "rare": 1}).encode()),
        "lexicon": b"# IT\nsharepoint\nnetwork\n",
        "names": b"anja\n",
    }
    monkeypatch.setattr(lexicon_module, "read_sources", lambda: sources)


@pytest.mark.usefixtures("tiny_sources")
def test_a_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    SpellLexicon.load(tmp_path)
    built = next(tmp_path.glob("spelling-*.marshal"))
    good = built.read_bytes()
    built.write_bytes(b"\x00garbage")
    lexicon = SpellLexicon.load(tmp_path)
    assert lexicon.is_known("network") and lexicon.is_known("sharepoint")
    assert built.read_bytes() == good


@pytest.mark.usefixtures("tiny_sources")
def test_sources_are_merged_above_the_supplement_floor(tmp_path: Path) -> None:
    lexicon = SpellLexicon.load(tmp_path)
    assert lexicon.is_known("centers") and not lexicon.is_known("rare")
    assert lexicon.count("centers") == 500  # scaled by the counts of "the"
    assert lexicon.names == frozenset({"anja"})
    assert lexicon.it_terms == frozenset({"sharepoint", "network"})


@pytest.mark.usefixtures("tiny_sources")
def test_an_unwritable_cache_dir_still_works(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    corrector = ItCorrector(not_a_dir)
    assert corrector.correct("the netwrok").text == "the network"


@pytest.mark.usefixtures("tiny_sources")
def test_the_dictionary_is_loaded_on_first_use(tmp_path: Path) -> None:
    corrector = ItCorrector(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    corrector.correct("the netwrok")
    assert list((tmp_path / "cache").glob("spelling-*.marshal"))


def reference_osa(a: str, b: str) -> int:
    """The textbook dynamic programme for the optimal-string-alignment distance."""
    rows = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            best = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                best = min(best, rows[i - 2][j - 2] + 1)
            rows[i][j] = best
    return rows[-1][-1]


def test_bit_parallel_osa_matches_the_textbook_distance() -> None:
    rng = random.Random(3)
    for _ in range(3000):
        a = "".join(rng.choice("abcd") for _ in range(rng.randrange(0, 9)))
        b = "".join(rng.choice("abcd") for _ in range(rng.randrange(0, 9)))
        assert osa_distance(a, b) == reference_osa(a, b), (a, b)


def test_typing_slips_cost_less_than_arbitrary_edits() -> None:
    assert edit_cost("pasword", "password") == 0.5  # a double
    assert edit_cost("netwrok", "network") == 0.75  # a swap
    assert edit_cost("laptp", "laptop") == 0.75  # a missing letter
    assert edit_cost("nerwork", "network") == 0.85  # a neighbouring key
    assert edit_cost("nepwork", "network") == 1.0  # anything else


@pytest.mark.parametrize(
    "text",
    [
        "Am So., 1. Jan. 2023 um 17:22 Uhr schrieb John Doe <\nnoreply@github.com>:",
        "Dnia 28 lutego 2023 14:00 Anna Nowak <anna@example.com> napisał(a):\r\n> hej",
        "Wysłano: środa, 1 marca 2023 12:00\r\nTemat: Test\r\n",
        "Thanks,\r\nJonh Smiht\r\n",
    ],
)
def test_reply_headers_are_protected(corrector: ItCorrector, text: str) -> None:
    assert corrector.correct(text).text == text


def test_non_ascii_words_count_as_foreign(corrector: ItCorrector) -> None:
    text = "Dzień dobry, drukarka nie działa, proszę o pomoc, mój komputer też nie działa dzisiaj"
    assert corrector.correct(text).text == text


def test_two_edits_keep_the_first_letter(corrector: ItCorrector) -> None:
    assert corrector.suggest("ntsoft") is None
    assert corrector.suggest("athenticaton") == "authentication"
