"""Draw the small, stratified Endava samples the classifier tests train and score on.

    python tests/data/tickets/endava_topics/make_sample.py SOURCE_DIR

SOURCE_DIR holds the full fixed split ``train.csv``/``test.csv`` (not in the
repository; ``$MAILTRIAGE_ENDAVA_DIR`` when no argument is given). Writes
``train_sample.csv`` and ``test_sample.csv`` next to this script.

Deterministic without a random generator: each label gets its share of the rows
(largest remainder, at least ``MIN_PER_LABEL``), and within a label the rows whose
``sha256(row_id)`` sort first are taken. The same source gives the same files on
any machine and Python version. Rows keep the source's columns and ``row_id`` order.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = {"train": 600, "test": 300}  # rows per sample
LABEL = "topic_group"
MIN_PER_LABEL = 10


def shares(counts: dict[str, int], n: int) -> dict[str, int]:
    """Rows per label for a sample of ``n``: proportional, largest remainder, a floor."""
    total = sum(counts.values())
    exact = {k: n * c / total for k, c in counts.items()}
    out = {k: max(MIN_PER_LABEL, int(v)) for k, v in exact.items()}
    by_remainder = sorted(exact, key=lambda k: (int(exact[k]) - exact[k], k))
    for k in by_remainder[: max(0, n - sum(out.values()))]:
        out[k] += 1
    return out


def rank(row: dict[str, str]) -> str:
    """A stable pseudo-random order: the row id's SHA-256."""
    return hashlib.sha256(row["row_id"].encode()).hexdigest()


def sample(rows: list[dict[str, str]], n: int) -> list[dict[str, str]]:
    """``n`` rows stratified by label, in the source's row_id order."""
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row[LABEL]].append(row)
    want = shares({k: len(v) for k, v in by_label.items()}, n)
    chosen = [r for k, group in by_label.items() for r in sorted(group, key=rank)[: want[k]]]
    return sorted(chosen, key=lambda r: int(r["row_id"]))


def main(source: Path) -> None:
    for split, n in SIZES.items():
        with (source / f"{split}.csv").open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields, rows = list(reader.fieldnames or []), list(reader)
        out = HERE / f"{split}_sample.csv"
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(sample(rows, n))
        print(f"{out.name}: {n} of {len(rows)} rows")


if __name__ == "__main__":
    given = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MAILTRIAGE_ENDAVA_DIR")
    if not given:
        sys.exit("usage: make_sample.py SOURCE_DIR (the full Endava topics split)")
    main(Path(given))
