"""Benchmark of the IT spelling corrector: start-up, memory, throughput, accuracy, protection.

Run as ``.venv/bin/python bench/bench_corrector.py``. Targets (from the issue):
start-up < 0.5 s and < 60 MB RSS for the dictionary, >= 2,000 mails/s on one
core for a 150-word mail, >= 0.92 top-1 accuracy on codespell's IT subset, and
0 changes on the protection set. Start-up is measured in fresh processes: once
with an empty cache directory (the one-off build) and once with the built cache.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifier.corrector import ItCorrector  # noqa: E402
from classifier.spelling_eval import (  # noqa: E402
    PROTECTION_CASES,
    it_subset,
    measure_accuracy,
    protection_changes,
)

STARTUP_PROBE = """
import json, sys, time
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
t0 = time.perf_counter()
from classifier.corrector import ItCorrector
t1, before = time.perf_counter(), rss()
corrector = ItCorrector(sys.argv[1])
corrector.load()
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "rss_delta": rss() - before,
                  "rss": rss()}))
"""

SENTENCES = (
    "my laptop does not connect to the office network since the update yesterday",
    "the printer on the second floor shows a paper jam but there is no paper inside",
    "i cannot open outlook because it asks for my password again and again",
    "the vpn connection drops every few minutes when i work from home",
    "please reset my account password because it expired during my holiday",
    "the shared folder on the file server is read only for our whole department",
    "teams crashes when i try to share my screen in a meeting",
    "my keyboard and mouse stop working after the docking station goes to sleep",
    "the new monitor flickers and the display settings do not show the right resolution",
    "i need access to the finance database for the quarterly report",
    "the software installation fails with an error message about missing permissions",
    "the wireless network in the meeting room is very slow this week",
    "could you please install the latest browser version on my computer",
    "the backup job did not run last night and the storage quota is almost full",
    "my phone does not receive any email since i changed the authenticator app",
    "the scanner sends documents to the wrong mailbox after the migration",
    "the application hangs when i try to export the spreadsheet as a document",
    "our team needs a new distribution list for the project with external recipients",
)
COMMON_TYPOS = {
    "network": "netwrok",
    "connection": "conection",
    "password": "pasword",
    "outlook": "outlok",
    "printer": "pritner",
    "keyboard": "keybaord",
    "receive": "recieve",
    "access": "acess",
    "software": "sofware",
    "laptop": "laptp",
    "installation": "instalation",
    "display": "dispaly",
    "monitor": "moniter",
    "account": "acount",
    "message": "mesage",
    "permissions": "permisions",
    "application": "aplication",
    "database": "databse",
    "wireless": "wireles",
    "storage": "storgae",
    "mailbox": "mailbx",
    "document": "documnet",
}
PROTECTED_BITS = (
    "see TKT-20261123-AB12CD",
    "host srv-db01.corp.local",
    "error 0x80070005",
    "path C:\\Users\\anna\\report.xlsx",
    "asset LT-00123",
    "ip 10.0.0.12",
)


def make_mail(rng: random.Random, typos: int, fresh: bool) -> str:
    """Return a ~150-word IT mail with ``typos`` misspellings (new random ones if ``fresh``)."""
    words = ["hello", "team,"]
    while len(words) < 145:
        words += rng.choice(SENTENCES).split()
        words[-1] += "."
        if rng.random() < 0.3:
            words += rng.choice(PROTECTED_BITS).split()
    for _ in range(typos):
        i = rng.randrange(2, len(words))
        word = words[i].rstrip(".,")
        if fresh and len(word) >= 6 and word.isalpha():
            j = rng.randrange(1, len(word) - 1)
            words[i] = word[:j] + word[j + 1 :]  # drop one letter: a never-seen typo
        elif word in COMMON_TYPOS:
            words[i] = COMMON_TYPOS[word]
    return " ".join([*words, "thanks,", "anna"])


def measure_startup() -> tuple[dict, dict]:
    """Return the start-up figures of a first (cache-building) and a cached fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as cache:
        runs = []
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, "-c", STARTUP_PROBE, cache],
                capture_output=True,
                text=True,
                check=True,
                env=env,
                cwd=ROOT,
            )
            runs.append(json.loads(out.stdout))
    return runs[0], runs[1]


def mails_per_second(corrector: ItCorrector, mails: list[str]) -> float:
    """Return how many of ``mails`` per second ``corrector`` corrects."""
    start = time.perf_counter()
    for mail in mails:
        corrector.correct(mail)
    return len(mails) / (time.perf_counter() - start)


def main() -> None:
    """Print the benchmark figures."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # single core
    first, cached = measure_startup()
    print(f"start-up, first run (builds cache): {first['import'] + first['load']:.2f} s")
    print(
        f"start-up, cached (fresh process): import {cached['import']:.3f} s"
        f" + load {cached['load']:.3f} s = {cached['import'] + cached['load']:.3f} s"
    )
    print(
        f"dictionary RSS delta: {cached['rss_delta']:.1f} MB (process RSS {cached['rss']:.1f} MB)"
    )

    corrector = ItCorrector()
    corrector.load()
    rng = random.Random(20261123)
    clean = [make_mail(rng, 0, False) for _ in range(1000)]
    pooled = [make_mail(rng, 5, False) for _ in range(2000)]
    fresh = [make_mail(rng, 3, True) for _ in range(300)]
    words = sum(len(m.split()) for m in pooled) / len(pooled)
    print(f"mail size: {words:.0f} words")
    mails_per_second(corrector, clean[:100])  # warm up
    print(f"clean mails: {mails_per_second(corrector, clean):,.0f} mails/s")
    mails_per_second(corrector, pooled[:200])  # warm the suggestion cache
    print(f"mails with 5 recurring typos: {mails_per_second(corrector, pooled):,.0f} mails/s")
    print(f"mails with 3 never-seen typos: {mails_per_second(corrector, fresh):,.0f} mails/s")

    pairs = it_subset()
    start = time.perf_counter()
    accuracy = measure_accuracy(ItCorrector(), pairs)
    print(
        f"codespell IT subset top-1: {accuracy.correct}/{accuracy.total}"
        f" = {accuracy.ratio:.4f} ({time.perf_counter() - start:.1f} s)"
    )
    changed = protection_changes(corrector)
    print(f"protection set: {len(changed)} of {len(PROTECTION_CASES)} texts changed")
    for case, text in changed:
        print(f"  {case!r} -> {text!r}")


if __name__ == "__main__":
    main()
