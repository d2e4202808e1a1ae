"""The category model: word and character TF-IDF, linear SVMs, a calibrated stack.

Two linear SVMs read the same text differently, one by words and word pairs,
one by character n-grams inside words (robust to typos and inflections). A
multinomial logistic regression trained on their *cross-validated* decision
values stacks them and turns the margins into calibrated probabilities: the
confidence that decides whether a person triages the ticket.

Two paths with the same answer:

* :meth:`TextModel.predict_proba` for batches (training, evaluation), through
  sparse matrices;
* :meth:`TextModel.proba_one` for the daemon's one mail at a time, through
  ``(indices, values)`` rows and dense weight columns: well under a millisecond,
  where a scikit-learn ``Pipeline.predict_proba`` call costs several.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from classifier.features import CharWbVectorizer, Row, WordTfidf

# Bump when the features or the stack change: cached models are then rebuilt.
MODEL_FORMAT = 3

Progress = Callable[[str, int, int], None]  # (step, done, total)


class ModelError(Exception):
    """A model file that cannot be used (missing, corrupt, another version)."""


@dataclass(frozen=True)
class TextModelParams:
    """Hyper-parameters; the defaults were chosen by cross-validation on Endava's train split."""

    word_ngrams: tuple[int, int] = (1, 2)
    word_min_df: int = 2
    char_ngrams: tuple[int, int] = (2, 5)
    char_min_df: int = 3
    svm_c: float = 0.5
    meta_c: float = 1.0
    folds: int = 3
    seed: int = 0


class _Base:
    """One vectoriser + linear SVM; knows its dense weights for the single-text path."""

    def __init__(self, name: str, vectorizer: WordTfidf | CharWbVectorizer, c: float) -> None:
        self.name = name
        self.vectorizer = vectorizer
        self.c = c
        self.coef_t: np.ndarray = np.empty((0, 0))  # (n_features, n_classes), row access
        self.intercept: np.ndarray = np.empty(0)

    def svm(self) -> LinearSVC:
        return LinearSVC(C=self.c, dual="auto", max_iter=5000)

    def fit_final(self, x: sp.csr_matrix, y: np.ndarray) -> None:
        svm = self.svm().fit(x, y)
        coef = np.atleast_2d(svm.coef_)
        intercept = np.atleast_1d(svm.intercept_)
        if coef.shape[0] == 1:  # binary: one margin, make it two symmetric columns
            coef = np.vstack([-coef, coef])
            intercept = np.array([-intercept[0], intercept[0]])
        self.coef_t = np.ascontiguousarray(coef.T)
        self.intercept = intercept

    def decision(self, x: sp.csr_matrix) -> np.ndarray:
        return np.asarray(x @ self.coef_t) + self.intercept

    def decision_one(self, row: Row) -> np.ndarray:
        idx, values = row
        return values @ self.coef_t[idx] + self.intercept


def _fold_decisions(
    x: sp.csr_matrix, y: np.ndarray, base: _Base, train: np.ndarray, held: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    svm = base.svm().fit(x[train], y[train])
    dec = svm.decision_function(x[held])
    if dec.ndim == 1:
        dec = np.column_stack([-dec, dec])
    # A fold may miss a rare class: put its columns where they belong.
    full = np.zeros((len(held), n))
    full[:, svm.classes_] = dec
    return held, full


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class TextModel:
    """Stacked word + character SVMs with calibrated probabilities over ``classes``."""

    def __init__(self, params: TextModelParams | None = None) -> None:
        self.params = params or TextModelParams()
        p = self.params
        self.bases = [
            _Base(
                "word",
                WordTfidf(ngram_range=p.word_ngrams, min_df=p.word_min_df, sublinear_tf=True),
                p.svm_c,
            ),
            _Base(
                "char",
                CharWbVectorizer(ngram_range=p.char_ngrams, min_df=p.char_min_df),
                p.svm_c,
            ),
        ]
        self.classes: list[str] = []
        self.meta_coef_t = np.empty((0, 0))
        self.meta_intercept = np.empty(0)
        self.version = ""
        self.trained_on = 0

    # --- training -------------------------------------------------------------

    def fit(
        self, texts: Sequence[str], labels: Sequence[str], progress: Progress | None = None
    ) -> TextModel:
        """Learn from ``texts`` and their ``labels`` (at least two classes)."""
        classes, y = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
        if len(classes) < 2:
            raise ValueError("training needs at least two categories")
        counts = np.bincount(y)
        folds = max(2, min(self.params.folds, int(counts.min()))) if counts.min() > 1 else 0
        steps = len(self.bases) * ((folds or 0) + 2) + 1
        done = 0

        def tick(step: str) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(step, done, steps)

        # liblinear releases the GIL: folds and final fits run side by side in threads.
        stacked = []
        with ThreadPoolExecutor(_workers()) as pool:
            for base in self.bases:
                x = base.vectorizer.fit_transform(list(texts))
                tick(f"{base.name} features")
                final = pool.submit(base.fit_final, x, y)
                if folds:
                    kfold = StratifiedKFold(folds, shuffle=True, random_state=self.params.seed)
                    jobs = [
                        pool.submit(_fold_decisions, x, y, base, tr, held, len(classes))
                        for tr, held in kfold.split(np.zeros(len(y)), y)
                    ]
                    out = np.zeros((x.shape[0], len(classes)))
                    for job in jobs:
                        held, dec = job.result()
                        out[held] = dec
                        tick(f"{base.name} cross-validation")
                    stacked.append(out)
                final.result()
                if not folds:  # too few examples per class to cross-validate
                    stacked.append(base.decision(x))
                tick(f"{base.name} model")
        meta = LogisticRegression(C=self.params.meta_c, max_iter=5000)
        meta.fit(np.hstack(stacked), y)
        coef, intercept = meta.coef_, meta.intercept_
        if coef.shape[0] == 1:
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self.meta_coef_t = np.ascontiguousarray(coef.T)
        self.meta_intercept = intercept
        self.classes = [str(c) for c in classes]
        self.trained_on = len(texts)
        self.version = self._fingerprint()
        tick("calibration")
        return self

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for base in self.bases:
            h.update(base.coef_t.tobytes())
        h.update(self.meta_coef_t.tobytes())
        return h.hexdigest()[:12]

    # --- prediction -----------------------------------------------------------

    def _check(self) -> None:
        if not self.classes:
            raise ModelError("the model is not trained")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return class probabilities, one row per text, columns in :attr:`classes` order."""
        self._check()
        stacked = [b.decision(b.vectorizer.transform(list(texts))) for b in self.bases]
        return _softmax(np.hstack(stacked) @ self.meta_coef_t + self.meta_intercept)

    def predict(self, texts: Sequence[str]) -> list[str]:
        """Return the most probable class of each text."""
        proba = self.predict_proba(texts)
        return [self.classes[i] for i in proba.argmax(axis=1)]

    def proba_one(self, text: str) -> np.ndarray:
        """Return the class probabilities of one text (the daemon's fast path)."""
        self._check()
        stacked = np.concatenate(
            [b.decision_one(b.vectorizer.transform_one(text)) for b in self.bases]
        )
        return _softmax(stacked @ self.meta_coef_t + self.meta_intercept)

    # --- persistence ------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the model atomically to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        payload = {"format": MODEL_FORMAT, "sklearn": sklearn.__version__, "model": self}
        with tmp.open("wb") as fh:
            pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> TextModel:
        """Read a model written by :meth:`save`; :class:`ModelError` when unusable.

        Only load model files you wrote: like every pickle, a model file runs code.
        """
        try:
            with Path(path).open("rb") as fh:
                payload = pickle.load(fh)  # noqa: S301 - our own file, see the docstring
        except FileNotFoundError:
            raise ModelError(f"model file {path} does not exist") from None
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise ModelError(f"model file {path} cannot be read: {exc}") from None
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise ModelError(f"model file {path} is from another mailtriage version; retrain")
        if payload.get("sklearn") != sklearn.__version__:
            raise ModelError(
                f"model file {path} was trained with scikit-learn {payload.get('sklearn')}, "
                f"this is {sklearn.__version__}; retrain"
            )
        return payload["model"]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
