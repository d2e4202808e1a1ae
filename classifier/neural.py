"""Small neural networks beside the linear stack: the non-linear half of the model.

The linear SVMs of :mod:`classifier.model` draw straight borders between
categories. Real ticket categories are not that tidy (Endava's topic groups look
like named topic-model clusters), and a one-hidden-layer network over a compact
view of the text draws curved ones. Its mistakes differ from the SVMs', so the
average of the two families is better than either: on Endava's fixed split the
SVM stack alone reaches macro-F1 0.876, each network about 0.857, the two
networks together 0.873, and the average of stack and networks 0.882
(README, "Understanding the text").

Two views, each cheap to train and to run on one mail:

* ``words``: plain TF-IDF of the 1,000 most frequent content words (English stop
  words out), the classic topic-model vocabulary;
* ``lsa``: TF-IDF of the 20,000 most frequent words projected on its first 200
  singular vectors (latent semantic analysis), L2-normalised: words that occur
  together map to the same directions.

scikit-learn's ``MLPClassifier`` trains each network (Adam, early stopping on a
stratified tenth); the weights are then kept as plain arrays so one mail costs a
few small products, not an estimator call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.neural_network import MLPClassifier

from classifier.features import Row, WordTfidf

# Below these the networks are skipped: early stopping needs a validation tenth
# holding every class, and a few hundred mails teach a network nothing a linear
# model does not.
MIN_EXAMPLES = 200
MIN_PER_CLASS = 10

_LSA_SCALE = 10.0  # unit vectors times 10: inputs of the size Adam's defaults expect


@dataclass(frozen=True)
class NeuralParams:
    """Hyper-parameters of the two networks (chosen on Endava's train split)."""

    words_features: int = 1000
    words_hidden: int = 256
    lsa_features: int = 20_000
    lsa_components: int = 200
    lsa_hidden: int = 512
    max_epochs: int = 40


def usable(counts: np.ndarray) -> bool:
    """Return whether a training set with these per-class ``counts`` can train the networks."""
    return int(counts.sum()) >= MIN_EXAMPLES and int(counts.min()) >= MIN_PER_CLASS


class Network:
    """A trained one-hidden-layer ReLU network as arrays; softmax (or logistic) output."""

    def __init__(self, mlp: MLPClassifier, n_classes: int) -> None:
        w1, w2 = mlp.coefs_
        b1, b2 = mlp.intercepts_
        self.w1 = np.ascontiguousarray(w1, dtype=np.float32)
        self.b1 = b1.astype(np.float32)
        self.w2 = w2.astype(np.float32)
        self.b2 = b2.astype(np.float32)
        self.n_classes = n_classes

    def proba(self, x: np.ndarray | sp.spmatrix) -> np.ndarray:
        """Return class probabilities for the rows of ``x`` (dense or sparse)."""
        hidden = np.maximum(np.asarray(x @ self.w1) + self.b1, 0.0)
        return self._output(hidden @ self.w2 + self.b2)

    def proba_row(self, row: Row) -> np.ndarray:
        """Return class probabilities for one sparse ``(indices, values)`` row."""
        idx, values = row
        hidden = np.maximum(values.astype(np.float32) @ self.w1[idx] + self.b1, 0.0)
        return self._output(hidden @ self.w2 + self.b2)

    def _output(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits, dtype=np.float64)
        if self.n_classes == 2 and logits.shape[-1] == 1:  # scikit-learn's binary head
            p = 1.0 / (1.0 + np.exp(-logits[..., 0]))
            return np.stack([1.0 - p, p], axis=-1)
        logits = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=-1, keepdims=True)


class _Member:
    """What both networks share: their size, their training and the trained arrays."""

    name = ""

    def __init__(self, hidden: int, epochs: int) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.net: Network | None = None

    def fit(self, x: np.ndarray | sp.spmatrix, y: np.ndarray, n_classes: int, seed: int) -> None:
        """Train the network on the rows ``features`` returned."""
        mlp = MLPClassifier(
            hidden_layer_sizes=(self.hidden,),
            early_stopping=True,
            max_iter=self.epochs,
            random_state=seed,
        )
        self.net = Network(mlp.fit(x, y), n_classes)


class WordsMember(_Member):
    """A network over plain TF-IDF of the most frequent content words."""

    name = "words network"

    def __init__(self, params: NeuralParams) -> None:
        super().__init__(params.words_hidden, params.max_epochs)
        self.vectorizer = WordTfidf(
            max_features=params.words_features,
            stop_words="english",
            max_df=0.95,
            min_df=2,
            dtype=np.float32,
        )

    def features(self, texts: list[str], seed: int = 0) -> sp.csr_matrix:
        """Learn the vocabulary; return the training matrix."""
        return self.vectorizer.fit_transform(texts)

    def proba(self, texts: list[str]) -> np.ndarray:
        """Return class probabilities for ``texts``."""
        return self.net.proba(self.vectorizer.transform(texts))

    def proba_one(self, text: str) -> np.ndarray:
        """Return class probabilities for one text."""
        return self.net.proba_row(self.vectorizer.transform_one(text))


class LsaMember(_Member):
    """A network over word TF-IDF reduced by truncated SVD."""

    name = "semantic network"

    def __init__(self, params: NeuralParams) -> None:
        super().__init__(params.lsa_hidden, params.max_epochs)
        self.vectorizer = WordTfidf(
            max_features=params.lsa_features, min_df=2, sublinear_tf=True, dtype=np.float32
        )
        self.components = params.lsa_components
        self.basis_t = np.empty((0, 0), dtype=np.float32)  # (n_word_features, k)

    def features(self, texts: list[str], seed: int = 0) -> np.ndarray:
        """Learn the vocabulary and the SVD basis; return the reduced training rows."""
        x = self.vectorizer.fit_transform(texts)
        k = max(1, min(self.components, x.shape[0] - 1, x.shape[1] - 1))
        svd = TruncatedSVD(k, n_iter=2, random_state=seed).fit(x)
        self.basis_t = np.ascontiguousarray(svd.components_.T, dtype=np.float32)
        return self._reduce(x @ self.basis_t)

    def proba(self, texts: list[str]) -> np.ndarray:
        """Return class probabilities for ``texts``."""
        return self.net.proba(self._reduce(self.vectorizer.transform(texts) @ self.basis_t))

    def proba_one(self, text: str) -> np.ndarray:
        """Return class probabilities for one text."""
        idx, values = self.vectorizer.transform_one(text)
        z = values.astype(np.float32) @ self.basis_t[idx]
        return self.net.proba(self._reduce(z[None, :]))[0]

    @staticmethod
    def _reduce(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float32)
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        return z / np.where(norms > 0.0, norms, 1.0) * _LSA_SCALE
