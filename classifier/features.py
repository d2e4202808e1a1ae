"""Text -> sparse TF-IDF rows: the word and char_wb blocks of :class:`classifier.model.TextModel`.

Both blocks are scikit-learn transformers (they sit in a ``FeatureUnion``) and both
can also turn *one* text into ``(indices, values)`` without building a sparse matrix:
the single-ticket path of the model uses that to stay well under a millisecond.

:class:`CharWbVectorizer` computes the same kind of features as
``TfidfVectorizer(analyzer="char_wb")`` but counts words first and expands each
distinct word into its character n-grams once (``doc x word @ word x ngram``):
the n-grams of a text are the n-grams of its words, and words repeat a lot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import chain

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

Row = tuple[np.ndarray, np.ndarray]  # (feature indices, float64 values)

# Bound the per-word memo so a daemon that sees endless new words keeps flat memory.
_MEMO_LIMIT = 200_000


def char_wb_grams(word: str, low: int, high: int) -> list[str]:
    """Return the n-grams (``low``..``high``) of ``word`` padded with one space each side.

    Like scikit-learn's ``char_wb``: a padded word shorter than ``n`` counts once, whole.
    """
    padded = f" {word} "
    grams: list[str] = []
    for n in range(low, high + 1):
        if len(padded) <= n:
            grams.append(padded)
            break
        grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


def tfidf_row(idx: np.ndarray, counts: np.ndarray, tfidf: TfidfTransformer) -> Row:
    """Apply a fitted ``TfidfTransformer`` (sublinear tf, idf, l2 norm) to one count row."""
    values = counts.astype(np.float64)
    if tfidf.sublinear_tf:
        values = np.log(values) + 1.0
    if tfidf.use_idf:
        values *= tfidf.idf_[idx]
    norm = float(np.sqrt(values @ values))
    if norm > 0.0:
        values /= norm
    return idx, values


class WordTfidf(TfidfVectorizer):
    """``TfidfVectorizer`` on words with a single-text path (:meth:`transform_one`)."""

    def transform_one(self, text: str) -> Row:
        """Return ``(indices, values)`` of ``text``, equal to ``transform([text])``'s row."""
        analyze = self.__dict__.get("_analyze_memo")
        if analyze is None:
            analyze = self.__dict__["_analyze_memo"] = self.build_analyzer()
        vocab = self.vocabulary_
        counted = Counter(vocab[t] for t in analyze(text) if t in vocab)
        idx = np.fromiter(counted.keys(), dtype=np.int64, count=len(counted))
        counts = np.fromiter(counted.values(), dtype=np.float64, count=len(counted))
        return tfidf_row(idx, counts, self._tfidf)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_analyze_memo", None)
        return state


class CharWbVectorizer(TransformerMixin, BaseEstimator):
    """TF-IDF of within-word character n-grams, computed through word counts.

    Parameters mirror ``TfidfVectorizer``: ``ngram_range``, ``min_df`` (documents),
    ``max_features`` (most frequent kept), ``sublinear_tf``. Text is lower-cased and
    split on whitespace.
    """

    def __init__(
        self,
        ngram_range: tuple[int, int] = (2, 6),
        min_df: int = 3,
        max_features: int | None = None,
        sublinear_tf: bool = True,
    ) -> None:
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf

    def fit(self, texts: Sequence[str], y: object = None) -> CharWbVectorizer:
        """Learn the n-gram vocabulary and idf from ``texts``."""
        self.fit_transform(texts)
        return self

    def fit_transform(self, texts: Sequence[str], y: object = None) -> sp.csr_matrix:
        """Learn the vocabulary and idf, and return the TF-IDF matrix of ``texts``."""
        words, docs_words = self._word_counts(texts)
        gram_index: dict[str, int] = {}
        rows, cols = [], []
        for w, word in enumerate(words):
            for gram in char_wb_grams(word, *self.ngram_range):
                rows.append(w)
                cols.append(gram_index.setdefault(gram, len(gram_index)))
        expand = sp.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(words), len(gram_index))
        )
        counts = (docs_words @ expand).tocsr()
        keep = self._kept_columns(counts)
        grams = np.array(list(gram_index), dtype=object)[keep]
        self.vocabulary_ = {g: i for i, g in enumerate(grams)}
        self._memo: dict[str, tuple[int, ...]] = {}
        counts = counts[:, keep]
        self.tfidf_ = TfidfTransformer(sublinear_tf=self.sublinear_tf)
        return self.tfidf_.fit_transform(counts).tocsr()

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Return the TF-IDF matrix of ``texts`` (unknown n-grams are ignored)."""
        check_is_fitted(self, "vocabulary_")
        words, docs_words = self._word_counts(texts)
        indptr, cols = [0], []
        for word in words:
            cols.extend(self._word_features(word))
            indptr.append(len(cols))
        expand = sp.csr_matrix(
            (np.ones(len(cols)), cols, indptr), shape=(len(words), len(self.vocabulary_))
        )
        counts = (docs_words @ expand).tocsr()
        counts.sum_duplicates()
        return self.tfidf_.transform(counts).tocsr()

    def transform_one(self, text: str) -> Row:
        """Return ``(indices, values)`` of ``text``, equal to ``transform([text])``'s row."""
        check_is_fitted(self, "vocabulary_")
        parts: list[tuple[int, ...]] = []
        repeats: list[int] = []
        for word, n in Counter(text.lower().split()).items():
            found = self._word_features(word)
            if found:
                parts.append(found)
                repeats.append(n)
        # One array of every n-gram occurrence, then numpy counts them: several
        # times faster than a Counter on long mails.
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        flat = np.fromiter(chain.from_iterable(parts), dtype=np.int64, count=int(lengths.sum()))
        idx, where = np.unique(flat, return_inverse=True)
        counts = np.bincount(where, weights=np.repeat(np.asarray(repeats, float), lengths))
        return tfidf_row(idx, counts, self.tfidf_)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """Return the n-grams in column order."""
        names = sorted(self.vocabulary_, key=self.vocabulary_.__getitem__)
        return np.array(names, dtype=object)

    def _word_features(self, word: str) -> tuple[int, ...]:
        memo = self.__dict__.setdefault("_memo", {})
        found = memo.get(word)
        if found is None:
            vocab = self.vocabulary_
            grams = char_wb_grams(word, *self.ngram_range)
            found = tuple(vocab[g] for g in grams if g in vocab)
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            memo[word] = found
        return found

    @staticmethod
    def _word_counts(texts: Sequence[str]) -> tuple[list[str], sp.csr_matrix]:
        index: dict[str, int] = {}
        indptr, cols, vals = [0], [], []
        for text in texts:
            for word, n in Counter(text.lower().split()).items():
                cols.append(index.setdefault(word, len(index)))
                vals.append(n)
            indptr.append(len(cols))
        matrix = sp.csr_matrix(
            (np.array(vals, dtype=np.float64), cols, indptr), shape=(len(texts), len(index))
        )
        return list(index), matrix

    def _kept_columns(self, counts: sp.csr_matrix) -> np.ndarray:
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        keep = np.flatnonzero(df >= self.min_df)
        if self.max_features is not None and keep.size > self.max_features:
            totals = np.asarray(counts.sum(axis=0)).ravel()[keep]
            keep = np.sort(keep[np.argsort(-totals, kind="stable")[: self.max_features]])
        if keep.size == 0:
            raise ValueError("no character n-gram occurs in min_df documents")
        return keep

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_memo", None)
        return state
