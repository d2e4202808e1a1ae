"""Config: the starter file is valid, bad keys are named, secrets come from the env."""

from __future__ import annotations

import pytest

from config.loader import ConfigError, database_url, load_settings, starter_toml


def _write(tmp_path, text: str):
    path = tmp_path / "mailtriage.toml"
    path.write_text(text)
    return path


def test_starter_config_is_valid_and_has_the_default_taxonomy(tmp_path) -> None:
    s = load_settings(_write(tmp_path, starter_toml()), environ={})
    assert [c.name for c in s.categories] == [
        "network",
        "hardware",
        "software",
        "access",
        "email",
        "printing",
        "security",
        "general",
    ]
    assert all(s.team(c.team) for c in s.categories)
    assert s.mailbox.backend == "maildir" and s.outbound.transport == "maildir"


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ('[web]\nport = "eighty"\n', "web.port"),
        ('[mailbox]\nbackend = "pop3"\n', "mailbox.backend"),
        ('[mailbox]\nbackend = "imap"\n', "mailbox.host"),
        ('[database]\nurll = "x"\n', "database.urll"),
        ('[[teams]]\nname = "A"\n[[categories]]\nname = "x"\nteam = "B"\n', "categories.0.team"),
        ("[sla]\nhigh_hours = -1\n", "sla.high_hours"),
        ('[sla.calendar]\nhours = {mon = "18:00-08:00"}\n', "sla.calendar.hours"),
        ('[sla.calendar]\nhours = {someday = "08:00-18:00"}\n', "sla.calendar.hours.someday.[key]"),
        ('[sla.calendar]\ntimezone = "Mars/Olympus"\n', "sla.calendar.timezone"),
        ("[[sla.escalation]]\nafter_minutes = 60\nto = []\n", "sla.escalation.0.to"),
        (
            '[[teams]]\nname = "A"\n[[categories]]\nname = "x"\nteam = "A"\napprovers = ["b@x"]\n'
            '[[categories.approval_steps]]\napprovers = ["c@x"]\n',
            "categories.0.approval_steps",
        ),
        (
            '[[teams]]\nname = "A"\n[[categories]]\nname = "x"\nteam = "A"\n'
            "[[categories.approval_steps]]\napprovers = []\n",
            "categories.0.approval_steps.0.approvers",
        ),
    ],
)
def test_bad_key_is_named(tmp_path, snippet: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, snippet), environ={})
    assert str(err.value).startswith(key + ":")
    assert "\n" not in str(err.value)


def test_not_toml_and_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_write(tmp_path, "[web\n"), environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_secrets_from_prefixed_environment(tmp_path) -> None:
    path = _write(tmp_path, '[mailbox]\nbackend = "imap"\nhost = "imap.example.com"\n')
    env = {
        "MAILTRIAGE_MAILBOX_PASSWORD": "s3cret",
        "MAILTRIAGE_DATABASE_URL": "sqlite:///other.db",
        "MAILTRIAGE_CLASSIFIER_OPENAI_API_KEY": "k",
    }
    s = load_settings(path, environ=env)
    assert s.mailbox.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.classifier.openai.api_key.get_secret_value() == "k"
    assert database_url(s) == f"sqlite:///{tmp_path / 'other.db'}"
