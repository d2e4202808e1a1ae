"""``mailtriage classifier train|eval``: train a model on labelled mail, measure it.

::

    mailtriage classifier train tickets.csv --out var/model.pkl
    mailtriage classifier eval holdout.csv --model var/model.pkl
    mailtriage classifier train --from-corrections          # default corpus + agents' fixes

``train`` writes to ``--out``, else to ``classifier.model_path`` from the
config (which the daemon then uses). ``eval`` reads ``--model``, else the
configured model, else the default one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from classifier.factory import default_model
from classifier.model import ModelError, TextModel
from classifier.textprep import model_text
from classifier.training import (
    DEFAULT_CORPUS,
    Dataset,
    ProgressBar,
    evaluate,
    load_csv,
    train,
)
from config.errors import DataError, UserError
from config.loader import default_config_path, load_settings, resolve_path

# Agents' corrections are few and recent: each counts as this many corpus rows.
CORRECTION_WEIGHT = 3

LoadCorrections = Callable[[argparse.Namespace], list[tuple[str, str]]]


class ClassifierCommandError(UserError):
    """A classifier command that cannot run; the message is the one line shown."""


def add_classifier_commands(
    sub: argparse._SubParsersAction, load_corrections: LoadCorrections, parents: list
) -> None:
    """Add ``train`` and ``eval`` under the ``classifier`` command."""
    p = sub.add_parser("train", parents=parents, help="train a model from a labelled CSV")
    p.add_argument("data", nargs="?", type=Path, help="labelled CSV (default: the shipped corpus)")
    p.add_argument("--out", type=Path, help="model file to write (default: classifier.model_path)")
    p.add_argument(
        "--from-corrections",
        action="store_true",
        help="add the category corrections agents made (from the database)",
    )
    _column_options(p)
    p.set_defaults(func=lambda args: _run(_train, args, load_corrections))

    p = sub.add_parser("eval", parents=parents, help="measure a model on a labelled CSV")
    p.add_argument("data", type=Path, help="labelled CSV")
    p.add_argument("--model", type=Path, help="model file (default: the configured one)")
    _column_options(p)
    p.set_defaults(func=lambda args: _run(_eval, args, load_corrections))


def _column_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-column", help="text column (default: subject+body, else text)")
    p.add_argument("--label-column", help="label column (default: category, label, ...)")


def _run(command, args: argparse.Namespace, load_corrections: LoadCorrections) -> int:
    try:
        return command(args, load_corrections)
    except (DataError, ModelError, ClassifierCommandError) as exc:
        print(f"mailtriage: error: {exc}", file=sys.stderr)
        return 1


def _train(args: argparse.Namespace, load_corrections: LoadCorrections) -> int:
    out = args.out or _configured_model(args)
    if out is None:
        raise ClassifierCommandError("say where to write the model: --out PATH")
    data = load_csv(args.data or DEFAULT_CORPUS, args.text_column, args.label_column)
    if args.from_corrections:
        pairs = load_corrections(args)
        data.extend(
            (model_text("", text) for text, _ in pairs for _ in range(CORRECTION_WEIGHT)),
            (label for _, label in pairs for _ in range(CORRECTION_WEIGHT)),
        )
        print(f"added {len(pairs)} agent corrections (x{CORRECTION_WEIGHT})", file=sys.stderr)
    labels = sorted(set(data.labels))
    print(f"training on {len(data)} rows, {len(labels)} categories: {', '.join(labels)}")
    start = time.perf_counter()
    model = train(data, progress=ProgressBar())
    model.save(out)
    print(f"trained in {time.perf_counter() - start:.1f} s; wrote {out} (version {model.version})")
    return 0


def _eval(args: argparse.Namespace, load_corrections: LoadCorrections) -> int:
    data: Dataset = load_csv(args.data, args.text_column, args.label_column)
    model = _model_for_eval(args)
    print(f"model {model.version}: {len(model.classes)} categories, trained on {model.trained_on}")
    unknown = sorted(set(data.labels) - set(model.classes))
    if unknown:
        print(f"warning: labels the model never saw: {', '.join(unknown)}", file=sys.stderr)
    print(evaluate(model, data).render())
    return 0


def _model_for_eval(args: argparse.Namespace) -> TextModel:
    if args.model:
        return TextModel.load(args.model)
    configured = _configured_model(args)
    if configured is not None:
        return TextModel.load(configured)
    settings = _settings_or_none(args)
    cache = resolve_path(settings, settings.classifier.cache_dir) if settings else None
    return default_model(cache or Path("var/cache"))


def _configured_model(args: argparse.Namespace) -> Path | None:
    settings = _settings_or_none(args)
    if settings is None or not settings.classifier.model_path:
        return None
    return resolve_path(settings, settings.classifier.model_path)


def _settings_or_none(args: argparse.Namespace):
    path = getattr(args, "config", None) or default_config_path()
    if not Path(path).exists():
        return None
    return load_settings(path)  # a broken config is a ConfigError: exit 2, key named
