"""What the configuration gets: default model, a trained model file, keywords, remote layer."""

from __future__ import annotations

import pytest

from classifier.factory import IdentityCorrector, build_classifier, build_corrector
from classifier.llm import OpenAIClassifier
from classifier.local import KeywordFallback, ModelClassifier
from config.loader import ConfigError
from config.schema import DEFAULT_CATEGORIES, ClassifierSettings


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_default_taxonomy_gets_the_default_model(cache) -> None:
    clf = build_classifier(ClassifierSettings(), list(DEFAULT_CATEGORIES), cache)
    assert isinstance(clf, ModelClassifier)
    result = clf.classify("Printer jam", "The HP printer on floor 2 keeps jamming", "a@x.com")
    assert result.category == "printing" and result.source == "model"
    assert 0 < result.confidence <= 1 and result.model_version
    assert set(result.scores) == set(DEFAULT_CATEGORIES)


def test_a_subset_taxonomy_never_gets_an_unconfigured_category(cache) -> None:
    clf = build_classifier(ClassifierSettings(), ["network", "general"], cache)
    result = clf.classify("Printer jam", "The printer keeps jamming")
    assert result.category in {"network", "general"}
    assert set(result.scores) == {"network", "general"}


def test_unknown_categories_fall_back_to_keywords_and_say_so(cache) -> None:
    clf = build_classifier(
        ClassifierSettings(), ["facilities", "general"], cache, keywords={"facilities": ["desk"]}
    )
    assert isinstance(clf, KeywordFallback)
    result = clf.classify("Broken desk", "my desk wobbles")
    assert (result.category, result.source) == ("facilities", "keywords")


def test_a_broken_model_path_is_a_config_error_naming_the_key(tmp_path, cache) -> None:
    bad = tmp_path / "model.pkl"
    bad.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match=r"^classifier\.model_path: .*cannot be read"):
        build_classifier(ClassifierSettings(), list(DEFAULT_CATEGORIES), cache, model_path=bad)


def test_openai_layer_wraps_the_local_model_when_enabled(cache) -> None:
    cfg = ClassifierSettings.model_validate(
        {"openai": {"enabled": True, "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}}
    )
    clf = build_classifier(cfg, list(DEFAULT_CATEGORIES), cache)
    assert isinstance(clf, OpenAIClassifier) and isinstance(clf.local, ModelClassifier)


def test_spelling_off_keeps_text_as_written(cache) -> None:
    corrector = build_corrector(ClassifierSettings(spelling=False), cache)
    assert isinstance(corrector, IdentityCorrector)
    assert corrector.correct("netwrok").text == "netwrok"
    assert build_corrector(ClassifierSettings(), cache).correct("netwrok down").text == (
        "network down"
    )
