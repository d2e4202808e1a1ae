"""The category model: linear SVMs stacked and calibrated, averaged with two small networks.

Three linear SVMs read the same text differently: by words and word pairs, by
character n-grams inside words (robust to typos and inflections), and by the
first words alone (the subject of a mail, the title of a ticket). A multinomial
logistic regression trained on their *cross-validated* decision values stacks
them and turns the margins into calibrated probabilities. Two one-hidden-layer
networks (:mod:`classifier.neural`) draw the non-linear borders the SVMs cannot;
the answer is the average of the stack and the networks, each family weighing
half. That average is the confidence that decides whether a person triages the
ticket.

Two paths with the same answer (to float32 rounding, 1e-6):

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from classifier.features import CharWbVectorizer, WordTfidf
from classifier.linear import LinearBase, fold_decisions
from classifier.neural import LsaMember, NeuralParams, WordsMember, usable
from config.errors import DataError

# Bump when the features or the stack change: cached models are then rebuilt.
MODEL_FORMAT = 4

# The networks' share of the answer: the two model families weigh the same.
# Fixed by design, not tuned on any test set.
NEURAL_WEIGHT = 0.5

Progress = Callable[[str, int, int], None]  # (step, done, total)


class ModelError(DataError):
    """A model file that cannot be used (missing, corrupt, another version)."""


@dataclass(frozen=True)
class TextModelParams:
    """Hyper-parameters; the defaults were chosen by cross-validation on Endava's train split."""

    word_ngrams: tuple[int, int] = (1, 2)
    word_min_df: int = 2
    char_ngrams: tuple[int, int] = (2, 5)
    char_min_df: int = 3
    head_words: int = 6
    svm_c: float = 0.5
    class_weight: str | None = "balanced"  # rare categories count as much as common ones
    meta_c: float = 1.0
    folds: int = 3
    seed: int = 0
    neural: NeuralParams | None = field(default_factory=NeuralParams)  # None: linear only


def _interleave(first: list, second: list) -> list:
    """Return ``first[0], second[0], first[1], second[1], ...`` then the rest."""
    out = []
    for i in range(max(len(first), len(second))):
        out.extend(group[i] for group in (first, second) if i < len(group))
    return out


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class TextModel:
    """Stacked word, character and subject SVMs averaged with two networks, over ``classes``."""

    def __init__(self, params: TextModelParams | None = None) -> None:
        self.params = params or TextModelParams()
        p = self.params
        shared = (p.svm_c, p.class_weight, p.seed)
        self.bases = [
            LinearBase(
                "word",
                WordTfidf(ngram_range=p.word_ngrams, min_df=p.word_min_df, sublinear_tf=True),
                *shared,
            ),
            LinearBase(
                "char",
                CharWbVectorizer(ngram_range=p.char_ngrams, min_df=p.char_min_df),
                *shared,
            ),
        ]
        if p.head_words:
            self.bases.append(
                LinearBase(
                    "subject",
                    WordTfidf(ngram_range=p.word_ngrams, min_df=p.word_min_df, sublinear_tf=True),
                    *shared,
                    head=p.head_words,
                )
            )
        self.networks: list[WordsMember | LsaMember] = []
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
        texts = list(texts)
        classes, y = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
        if len(classes) < 2:
            raise ValueError("training needs at least two categories")
        counts = np.bincount(y)
        folds = max(2, min(self.params.folds, int(counts.min()))) if counts.min() > 1 else 0
        neural = self.params.neural if usable(counts) else None
        self.networks = [WordsMember(neural), LsaMember(neural)] if neural else []
        steps = len(self.bases) * (folds + 2) + 2 * len(self.networks) + 1
        done = 0

        def tick(step: str) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(step, done, steps)

        # liblinear and BLAS release the GIL: the SVM folds, final fits and the
        # networks run side by side in threads while the next features are built.
        # The networks, the longest jobs, are queued early so they never run last.
        with ThreadPoolExecutor(_workers()) as pool:
            running, nets = [], []
            for member in _interleave(list(self.bases), list(self.networks)):
                if isinstance(member, LinearBase):
                    try:
                        x = member.vectorizer.fit_transform(member.view(texts))
                    except ValueError:  # no term occurs often enough: too little text
                        if member is self.bases[0]:
                            raise
                        self.bases.remove(member)
                        steps -= folds + 2
                        continue
                    running.append((member, x, self._submit_base(pool, member, x, y, folds)))
                else:
                    try:
                        x = member.features(texts, self.params.seed)
                    except ValueError:  # e.g. every frequent word is a stop word
                        self.networks.remove(member)
                        steps -= 2
                        continue
                    job = pool.submit(member.fit, x, y, len(classes), self.params.seed)
                    nets.append((member, job))
                tick(f"{member.name} features")
            stacked = []
            for base, x, (final, jobs) in running:
                out = np.zeros((x.shape[0], len(classes)))
                for job in jobs:
                    held, dec = job.result()
                    out[held] = dec
                    tick(f"{base.name} cross-validation")
                final.result()
                stacked.append(out if folds else base.decision(x))
                tick(f"{base.name} model")
            for net, job in nets:
                job.result()
                tick(net.name)
        # Newton steps converge in a handful of iterations on these few dense
        # columns, where lbfgs takes hundreds (0.6 s against 6 s on Endava).
        meta = LogisticRegression(C=self.params.meta_c, solver="newton-cholesky", max_iter=200)
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

    def _submit_base(self, pool, base: LinearBase, x: sp.csr_matrix, y: np.ndarray, folds: int):
        final = pool.submit(base.fit_final, x, y)
        jobs = []
        if folds:
            kfold = StratifiedKFold(folds, shuffle=True, random_state=self.params.seed)
            n = int(y.max()) + 1
            jobs = [
                pool.submit(fold_decisions, x, y, base, tr, held, n)
                for tr, held in kfold.split(np.zeros(len(y)), y)
            ]
        return final, jobs

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        for base in self.bases:
            h.update(base.coef_t.tobytes())
        h.update(self.meta_coef_t.tobytes())
        for net in self.networks:
            h.update(net.net.w1.tobytes())
        return h.hexdigest()[:12]

    # --- prediction -----------------------------------------------------------

    def _check(self) -> None:
        if not self.classes:
            raise ModelError("the model is not trained")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return class probabilities, one row per text, columns in :attr:`classes` order."""
        self._check()
        texts = list(texts)
        matrices = [b.vectorizer.transform(b.view(texts)) for b in self.bases]
        stacked = [b.decision(x) for b, x in zip(self.bases, matrices, strict=True)]
        proba = _softmax(np.hstack(stacked) @ self.meta_coef_t + self.meta_intercept)
        if not self.networks:
            return proba
        nets = [net.proba(texts) for net in self.networks]
        return (1.0 - NEURAL_WEIGHT) * proba + NEURAL_WEIGHT * np.mean(nets, axis=0)

    def predict(self, texts: Sequence[str]) -> list[str]:
        """Return the most probable class of each text."""
        proba = self.predict_proba(texts)
        return [self.classes[i] for i in proba.argmax(axis=1)]

    def proba_one(self, text: str) -> np.ndarray:
        """Return the class probabilities of one text (the daemon's fast path)."""
        self._check()
        rows = [b.row(text) for b in self.bases]
        stacked = np.concatenate([b.decision_one(r) for b, r in zip(self.bases, rows, strict=True)])
        proba = _softmax(stacked @ self.meta_coef_t + self.meta_intercept)
        if not self.networks:
            return proba
        nets = [net.proba_one(text) for net in self.networks]
        return (1.0 - NEURAL_WEIGHT) * proba + NEURAL_WEIGHT * np.mean(nets, axis=0)

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
