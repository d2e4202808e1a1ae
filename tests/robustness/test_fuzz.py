"""Hypothesis fuzzing over mutated real mails: nothing but ``UnparseableMail`` escapes,
nothing stops the daemon, every mail is accounted for, what we send stays clean.

Two levels share ``tests/support/mutate.py`` with ``bench/fuzz.py``:

* in memory (``tests/support/inmemory.py``): parse -> guards -> composed
  acknowledgement and assignee notice, a few thousand examples;
* the whole daemon: a few hundred mutated mails delivered in batches into one
  site, every batch drained by ``run_pass``, then audited.

Example counts: ``MAILTRIAGE_FUZZ_CASES`` (in-memory examples, default 1200, a
quarter of that again for the 7bit check) and ``MAILTRIAGE_FUZZ_DAEMON_CASES``
(default 200), sized for about 30 s on two cores. The examples are derandomized
(reproducible, always under CI); set ``MAILTRIAGE_FUZZ_RANDOM=1`` locally to explore.
A failing example's mail bytes are printed; Hypothesis's shrinking is off unless
``MAILTRIAGE_FUZZ_SHRINK=1`` (shrinking mutations of a real mail costs minutes
and the printed mail is already the evidence).
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from tests.support import mutate, outgoing
from tests.support.drive import run_batches
from tests.support.inmemory import InMemoryDaemon

FAST_CASES = int(os.environ.get("MAILTRIAGE_FUZZ_CASES", "1200"))
DAEMON_CASES = int(os.environ.get("MAILTRIAGE_FUZZ_DAEMON_CASES", "200"))
SHRINK = os.environ.get("MAILTRIAGE_FUZZ_SHRINK") == "1"
DAEMON_SEED = int(os.environ.get("MAILTRIAGE_FUZZ_SEED", "20260105"))
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CORPUS = mutate.load_corpus()
assert CORPUS, "the e-mail fixtures in tests/data/emails are missing"


def test_the_fixture_corpus_is_there_and_varied():
    assert len(CORPUS) >= 30, f"only {len(CORPUS)} fixture mails found"


FUZZ_SETTINGS = settings(
    max_examples=FAST_CASES,
    derandomize=UNDER_CI or os.environ.get("MAILTRIAGE_FUZZ_RANDOM") != "1",
    database=None,
    phases=[p for p in Phase if SHRINK or p not in (Phase.shrink, Phase.explain)],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DAEMON = InMemoryDaemon()


def _mutated(rng: random.Random) -> bytes:
    raw = mutate.mutated_mail(rng, CORPUS)
    note(f"mail ({len(raw)} bytes): {raw[:3000]!r}")
    return raw


@FUZZ_SETTINGS
@given(st.randoms(use_true_random=False))
def test_parse_guard_compose_never_raise_and_headers_stay_clean(rng):
    """Only UnparseableMail may leave parsing (run() returns it as a result); nothing
    raises afterwards; composed replies have only the Composer's headers, one line each."""
    result = DAEMON.run(_mutated(rng))
    found = []
    for label, raw in result.outgoing:
        found += outgoing.header_problems(raw, label)
    outgoing.assert_clean(found)


@settings(FUZZ_SETTINGS, max_examples=max(FAST_CASES // 4, 10))
@given(st.randoms(use_true_random=False))
def test_composed_7bit_parts_hold_no_control_bytes(rng):
    """Request text with NUL or control bytes must not go out in a part declared 7bit
    (known defect 7). Separate from the header test so one defect cannot hide the other."""
    try:
        result = DAEMON.run(_mutated(rng))
    except Exception:  # the test above reports those
        return
    found = []
    for label, raw in result.outgoing:
        found += outgoing.problems([(label, raw)])
    outgoing.assert_clean([p for p in found if "declared 7bit" in p])


@pytest.mark.slow
def test_daemon_survives_and_accounts_for_mutated_mail(site, daemon):
    """A few hundred mutated mails in batches through the real runner on one site."""
    rng = random.Random(DAEMON_SEED)
    mails = [mutate.mutated_mail(rng, CORPUS) for _ in range(DAEMON_CASES)]
    report = run_batches(daemon(), site, mails, batch=100)
    seed = f"(MAILTRIAGE_FUZZ_SEED={DAEMON_SEED}, {DAEMON_CASES} cases)"
    assert not report.deaths, f"run_pass raised {len(report.deaths)}x {seed}:\n" + report.deaths[0]
    assert not report.accounting, f"{seed}\n" + "\n".join(report.accounting[:60])
    outgoing.assert_clean(report.outgoing)
    assert report.caught == 0, f"the runner's catch-all caught {report.caught} exceptions {seed}"
