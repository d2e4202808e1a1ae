"""One linear member of the category model: a vectoriser and a linear SVM.

:class:`classifier.model.TextModel` stacks several, each reading the text its
own way. A member keeps its SVM as dense weight rows so one mail costs a row
gather and a small product, not an estimator call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.svm import LinearSVC

from classifier.features import CharWbVectorizer, Row, WordTfidf


def first_words(text: str, n: int) -> str:
    """Return the first ``n`` words of ``text``: the subject of a model text."""
    return " ".join(text.split(None, n)[:n])


class LinearBase:
    """One vectoriser + linear SVM; knows its dense weights for the single-text path."""

    def __init__(
        self,
        name: str,
        vectorizer: WordTfidf | CharWbVectorizer,
        c: float,
        class_weight: str | None,
        seed: int,
        head: int = 0,
    ) -> None:
        self.name = name
        self.vectorizer = vectorizer
        self.c = c
        self.class_weight = class_weight
        self.seed = seed
        self.head = head  # > 0: read only the first ``head`` words
        self.coef_t: np.ndarray = np.empty((0, 0))  # (n_features, n_classes), row access
        self.intercept: np.ndarray = np.empty(0)

    def svm(self) -> LinearSVC:
        # The dual solver: several times faster than the primal on the
        # character block, where features are fewer than training mails.
        return LinearSVC(
            C=self.c,
            dual=True,
            max_iter=5000,
            class_weight=self.class_weight,
            random_state=self.seed,
        )

    def view(self, texts: Sequence[str]) -> list[str]:
        """Return what this base reads of ``texts``."""
        if self.head:
            return [first_words(t, self.head) for t in texts]
        return list(texts)

    def row(self, text: str) -> Row:
        """Return the feature row of one text."""
        return self.vectorizer.transform_one(first_words(text, self.head) if self.head else text)

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


def fold_decisions(
    x: sp.csr_matrix, y: np.ndarray, base: LinearBase, train: np.ndarray, held: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    svm = base.svm().fit(x[train], y[train])
    dec = svm.decision_function(x[held])
    if dec.ndim == 1:
        dec = np.column_stack([-dec, dec])
    # A fold may miss a rare class: put its columns where they belong.
    full = np.zeros((len(held), n))
    full[:, svm.classes_] = dec
    return held, full
