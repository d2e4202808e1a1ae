"""The category model: learns, agrees with itself on both paths, persists, generalises."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest

from classifier.factory import default_model, default_model_path
from classifier.model import ModelError, TextModel, TextModelParams
from classifier.training import DEFAULT_CORPUS, evaluate, load_csv, train
from tests.conftest import ENDAVA_SAMPLE

HOLDOUT = Path(__file__).parent / "data" / "holdout.csv"


@pytest.fixture(scope="module")
def corpus_model(tmp_path_factory) -> TextModel:
    return default_model(tmp_path_factory.mktemp("model-cache"))


def test_single_and_batch_paths_give_the_same_probabilities(corpus_model) -> None:
    texts = load_csv(HOLDOUT).texts[:40]
    batch = corpus_model.predict_proba(texts)
    assert corpus_model.networks, "the default corpus is large enough for the networks"
    for i, text in enumerate(texts):
        # The networks compute in float32, and the two paths sum in different orders.
        np.testing.assert_allclose(corpus_model.proba_one(text), batch[i], atol=1e-6)
    np.testing.assert_allclose(batch.sum(axis=1), 1.0)


def test_default_model_generalises_to_mail_no_one_tuned_for(corpus_model) -> None:
    """The holdout was written apart from the corpus, in another style, never trained on."""
    report = evaluate(corpus_model, load_csv(HOLDOUT))
    assert report.accuracy >= 0.70, report.render()
    assert report.macro_f1 >= 0.70, report.render()


def test_confidence_is_calibrated_enough_to_triage(corpus_model) -> None:
    data = load_csv(HOLDOUT)
    proba = corpus_model.predict_proba(data.texts)
    conf = proba.max(axis=1)
    right = np.array(
        [corpus_model.classes[i] == y for i, y in zip(proba.argmax(1), data.labels, strict=True)]
    )
    # Confident answers are right far more often than unsure ones.
    assert right[conf >= 0.6].mean() > right[conf < 0.35].mean() + 0.2


def test_cache_is_reused_and_keyed_by_corpus(tmp_path) -> None:
    first = default_model(tmp_path)
    path = default_model_path(tmp_path)
    assert path.exists()
    mtime = path.stat().st_mtime_ns
    again = default_model(tmp_path)
    assert path.stat().st_mtime_ns == mtime and again.version == first.version

    other = tmp_path / "other.csv"
    rows = list(csv.DictReader(DEFAULT_CORPUS.open(encoding="utf-8")))[:200]
    with other.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert default_model_path(tmp_path, other) != path


def test_a_corrupt_cache_is_retrained_not_fatal(tmp_path) -> None:
    path = default_model_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a pickle")
    model = default_model(tmp_path)
    assert model.classes and TextModel.load(path).version == model.version


def test_load_refuses_other_formats_in_one_line(tmp_path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        TextModel.load(tmp_path / "missing.pkl")
    bad = tmp_path / "old.pkl"
    bad.write_bytes(pickle.dumps({"format": -1}))
    with pytest.raises(ModelError, match="another mailtriage version"):
        TextModel.load(bad)


def test_rare_classes_and_two_classes_train() -> None:
    texts = ["printer jam tray"] * 5 + ["vpn down office"] * 5 + ["password reset"]
    labels = ["printing"] * 5 + ["network"] * 5 + ["access"]
    model = TextModel(TextModelParams(char_min_df=1, word_min_df=1)).fit(texts, labels)
    assert model.predict(["the printer has a jam"]) == ["printing"]
    two = TextModel(TextModelParams(char_min_df=1, word_min_df=1)).fit(texts[:10], labels[:10])
    assert two.predict(["vpn is down"]) == ["network"]
    assert two.proba_one("vpn is down").shape == (2,)


def test_networks_join_only_when_there_is_enough_to_learn_from() -> None:
    texts = ["printer jam tray"] * 5 + ["vpn down office"] * 5
    labels = ["printing"] * 5 + ["network"] * 5
    small = TextModel(TextModelParams(char_min_df=1, word_min_df=1)).fit(texts, labels)
    assert small.networks == []  # ten mails: the linear stack alone


def test_two_categories_with_networks_agree_on_both_paths() -> None:
    """scikit-learn gives a two-class network one logistic output; both paths expand it."""
    rng = np.random.default_rng(7)
    vocab = {
        "printing": ["printer", "toner", "tray", "jam", "paper", "queue", "driver", "scan"],
        "network": ["vpn", "wifi", "switch", "router", "dns", "latency", "gateway", "cable"],
    }
    filler = ["please", "help", "thanks", "regards", "urgent", "today", "office", "colleague"]
    texts, labels = [], []
    for label, words in vocab.items():
        for _ in range(150):
            picked = list(rng.choice(words, 4)) + list(rng.choice(filler, 4))
            rng.shuffle(picked)
            texts.append(" ".join(picked))
            labels.append(label)
    model = TextModel().fit(texts, labels)
    assert len(model.networks) == 2
    probe = ["the wifi gateway drops thanks", "toner low in the tray please"]
    batch = model.predict_proba(probe)
    assert batch.shape == (2, 2)
    for i, text in enumerate(probe):
        np.testing.assert_allclose(model.proba_one(text), batch[i], atol=1e-6)
    assert model.predict(probe) == ["network", "printing"]


def test_one_class_is_refused() -> None:
    with pytest.raises(ValueError, match="two categories"):
        TextModel().fit(["a", "b"], ["x", "x"])


def test_trains_and_scores_on_a_sample_of_real_tickets() -> None:
    """The training/eval path on a stratified sample of real Endava tickets (the full split is
    the bench's, bench/bench_classifier.py)."""
    sample = load_csv(ENDAVA_SAMPLE / "train_sample.csv")
    held = load_csv(ENDAVA_SAMPLE / "test_sample.csv")
    model = train(sample)
    report = evaluate(model, held, single_sample=100)
    assert len(model.classes) == 8 and set(model.classes) == set(held.labels)
    assert report.accuracy > 0.70, report.render()
    assert report.single_ms_p50 < 2.0
