"""Labelled CSV in, model or evaluation report out.

A CSV needs a label column (``category``, ``label``, ``topic_group`` or
``queue``, or ``--label-column``) and the text: ``subject`` + ``body``, or one
``text`` column (``--text-column``).
"""

from __future__ import annotations

import csv
import hashlib
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from classifier.model import Progress, TextModel, TextModelParams
from classifier.textprep import model_text
from config.errors import DataError

LABEL_COLUMNS = ("category", "label", "topic_group", "queue")
DEFAULT_CORPUS = Path(__file__).parent / "data" / "default_corpus.csv"

csv.field_size_limit(10_000_000)


@dataclass
class Dataset:
    """Model texts and their labels."""

    texts: list[str]
    labels: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def extend(self, texts: Iterable[str], labels: Iterable[str]) -> None:
        self.texts.extend(texts)
        self.labels.extend(labels)


def load_csv(
    path: str | Path, text_column: str | None = None, label_column: str | None = None
) -> Dataset:
    """Read a labelled CSV; :class:`DataError` names what is wrong."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            label = _pick_label(columns, label_column, path)
            get_text = _text_getter(columns, text_column, path)
            texts, labels = [], []
            for row in reader:
                value = (row.get(label) or "").strip()
                if not value:
                    continue  # an unlabelled row teaches nothing
                texts.append(get_text(row))
                labels.append(value)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read it as UTF-8 CSV: {exc}") from None
    if len(set(labels)) < 2:
        raise DataError(f"{path}: needs rows of at least two labels in column {label!r}")
    return Dataset(texts, labels, str(path))


def _pick_label(columns: Sequence[str], wanted: str | None, path: Path) -> str:
    if wanted:
        if wanted not in columns:
            raise DataError(f"{path}: no column {wanted!r} (columns: {', '.join(columns)})")
        return wanted
    for name in LABEL_COLUMNS:
        if name in columns:
            return name
    raise DataError(
        f"{path}: no label column; expected one of {', '.join(LABEL_COLUMNS)} or --label-column"
    )


def _text_getter(columns: Sequence[str], wanted: str | None, path: Path) -> Callable[[dict], str]:
    if wanted:
        if wanted not in columns:
            raise DataError(f"{path}: no column {wanted!r} (columns: {', '.join(columns)})")
        return lambda row: model_text("", row.get(wanted) or "")
    if "subject" in columns and "body" in columns:
        return lambda row: model_text(row.get("subject") or "", row.get("body") or "")
    if "text" in columns:
        return lambda row: model_text("", row.get("text") or "")
    raise DataError(f"{path}: no text; expected subject and body columns, or text")


def corpus_hash(*paths: Path) -> str:
    """Fingerprint of the training files: a changed corpus means a new model."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def train(
    data: Dataset, params: TextModelParams | None = None, progress: Progress | None = None
) -> TextModel:
    """Train a :class:`TextModel` on ``data``."""
    return TextModel(params).fit(data.texts, data.labels, progress)


@dataclass
class Report:
    """What ``classifier eval`` prints."""

    accuracy: float
    macro_f1: float
    labels: list[str]
    confusion: np.ndarray
    per_class: str
    rows: int
    batch_per_second: float
    single_ms_p50: float
    single_ms_p99: float
    extra: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        """Return the report as text."""
        width = max(len(lbl) for lbl in self.labels)
        short = [lbl[:7] for lbl in self.labels]
        lines = [
            f"rows           {self.rows}",
            f"accuracy       {self.accuracy:.4f}",
            f"macro-F1       {self.macro_f1:.4f}",
            f"throughput     {self.batch_per_second:,.0f} tickets/s (batch), "
            f"single ticket p50 {self.single_ms_p50:.3f} ms, p99 {self.single_ms_p99:.3f} ms",
            "",
            "per class:",
            self.per_class.rstrip(),
            "",
            "confusion matrix (rows: true, columns: predicted):",
            " " * (width + 1) + " ".join(f"{s:>7}" for s in short),
        ]
        for lbl, row in zip(self.labels, self.confusion, strict=True):
            lines.append(f"{lbl:>{width}} " + " ".join(f"{int(v):>7}" for v in row))
        return "\n".join(lines)


def evaluate(model: TextModel, data: Dataset, single_sample: int = 500) -> Report:
    """Score ``model`` on ``data`` and time it (batch, and one ticket at a time)."""
    start = time.perf_counter()
    predicted = model.predict(data.texts)
    batch_seconds = time.perf_counter() - start
    timings = []
    for text in data.texts[:single_sample]:
        t = time.perf_counter()
        model.proba_one(text)
        timings.append((time.perf_counter() - t) * 1000)
    labels = sorted(set(data.labels) | set(predicted))
    return Report(
        accuracy=float(accuracy_score(data.labels, predicted)),
        macro_f1=float(f1_score(data.labels, predicted, average="macro", labels=labels)),
        labels=labels,
        confusion=confusion_matrix(data.labels, predicted, labels=labels),
        per_class=classification_report(
            data.labels, predicted, labels=labels, digits=3, zero_division=0
        ),
        rows=len(data),
        batch_per_second=len(data) / batch_seconds if batch_seconds > 0 else float("inf"),
        single_ms_p50=float(np.percentile(timings, 50)) if timings else 0.0,
        single_ms_p99=float(np.percentile(timings, 99)) if timings else 0.0,
    )


class ProgressBar:
    """A one-line progress bar on a terminal; plain lines otherwise (logs, CI)."""

    def __init__(self, stream=None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.start = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, step: str, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self.start
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {done}/{total} {step} ({elapsed:.1f} s)"
        if self.tty:
            end = "\n" if done >= total else ""
            self.stream.write(f"\r{line:<78}{end}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
