"""Build the corrector and classifier the configuration asks for.

The default model is trained on first run from the corpus the project ships
(``classifier/data/default_corpus.csv``, see CORPUS.md) and cached in
``classifier.cache_dir`` under a name holding the corpus hash, the model format
and the scikit-learn version: a new corpus or library retrains once, never on
every start. ``classifier.model_path`` names a model written by
``mailtriage classifier train`` instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import sklearn

from classifier.base import Classifier, Correction, Corrector
from classifier.keywords import KeywordClassifier
from classifier.local import KeywordFallback, ModelClassifier
from classifier.model import MODEL_FORMAT, ModelError, TextModel
from classifier.priority import PriorityRules
from classifier.training import DEFAULT_CORPUS, corpus_hash, load_csv, train
from config.loader import ConfigError
from config.schema import ClassifierSettings

log = logging.getLogger(__name__)


class IdentityCorrector:
    """``classifier.spelling = false``: the text stays as written."""

    def correct(self, text: str) -> Correction:
        """Return ``text`` unchanged."""
        return Correction(original=text, text=text)


def build_corrector(cfg: ClassifierSettings, cache_dir: Path | None = None) -> Corrector:
    """Return the IT spelling corrector, or the identity when spelling is off."""
    if not cfg.spelling:
        return IdentityCorrector()
    from classifier.corrector import ItCorrector

    return ItCorrector(cache_dir=cache_dir)


def default_model_path(cache_dir: Path, corpus: Path = DEFAULT_CORPUS) -> Path:
    """Where the default model trained from ``corpus`` is cached."""
    key = f"{corpus_hash(corpus)}-f{MODEL_FORMAT}-sk{sklearn.__version__}"
    return Path(cache_dir) / f"default-model-{key}.pkl"


def default_model(cache_dir: Path, corpus: Path = DEFAULT_CORPUS) -> TextModel:
    """Return the default model, training and caching it the first time."""
    path = default_model_path(cache_dir, corpus)
    if path.exists():
        try:
            return TextModel.load(path)
        except ModelError as exc:
            log.warning("retraining the default model: %s", exc)
    start = time.perf_counter()
    model = train(load_csv(corpus))
    try:
        model.save(path)
        _drop_stale(path)
    except OSError as exc:  # a read-only cache still gets a working model
        log.warning("cannot cache the default model in %s: %s", cache_dir, exc)
    log.info(
        "trained the default model on %d mails in %.1f s",
        model.trained_on,
        time.perf_counter() - start,
    )
    return model


def _drop_stale(current: Path) -> None:
    for old in current.parent.glob("default-model-*.pkl"):
        if old != current:
            with contextlib.suppress(OSError):
                old.unlink()


def build_classifier(
    cfg: ClassifierSettings,
    categories: Sequence[str],
    cache_dir: Path,
    model_path: Path | None = None,
    keywords: dict[str, list[str]] | None = None,
) -> Classifier:
    """Return the classifier: the trained model (yours or the default), maybe asking a remote one.

    ``model_path`` (already resolved) overrides ``cfg.model_path``. A configured
    model that cannot be used is a :class:`ConfigError`: a silent fallback would
    hide it. The keyword classifier is used only when the default model cannot
    serve the configured taxonomy at all.
    """
    priority = PriorityRules(cfg.vip_senders)
    chosen = model_path or (Path(cfg.model_path) if cfg.model_path else None)
    local: Classifier
    if chosen is not None:
        try:
            local = ModelClassifier(TextModel.load(chosen), categories, priority)
        except (ModelError, ValueError) as exc:
            raise ConfigError(f"classifier.model_path: {exc}") from None
    else:
        model = default_model(cache_dir)
        if set(categories) <= set(model.classes):
            local = ModelClassifier(model, categories, priority)
        else:
            unknown = sorted(set(categories) - set(model.classes))
            log.warning(
                "categories %s are not in the default model; classifying by keywords until "
                "a model is trained ('mailtriage classifier train')",
                ", ".join(unknown),
            )
            local = KeywordFallback(KeywordClassifier(categories, keywords), priority)
    remote = cfg.openai
    if not remote.enabled:
        return local
    from classifier.llm import OpenAIClassifier

    api_key = remote.api_key.get_secret_value() if remote.api_key else None
    return OpenAIClassifier(
        local,
        categories,
        cfg.confidence_threshold,
        model=remote.model,
        base_url=remote.base_url,
        api_key=api_key or os.environ.get("OPENAI_API_KEY"),
        timeout=remote.timeout_seconds,
    )
