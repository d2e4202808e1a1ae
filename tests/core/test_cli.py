"""The CLI's promises: init, check-config, one-line errors and exit codes."""

from __future__ import annotations

from tests.e2e.helpers import mailtriage


def test_init_writes_config_and_folders_and_refuses_to_overwrite(tmp_path) -> None:
    done = mailtriage(tmp_path, "init", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mailtriage.toml").exists()
    for sub in ("var/mail/inbox/new", "var/mail/sent/new"):
        assert (tmp_path / sub).is_dir()
    again = mailtriage(tmp_path, "init", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_check_config_ok_and_bad_key(site) -> None:
    ok = mailtriage(site, "check-config")
    assert ok.returncode == 0 and "config ok" in ok.stdout
    config = site / "mailtriage.toml"
    config.write_text(config.read_text().replace("port = 8025", 'port = "x"'))
    bad = mailtriage(site, "check-config")
    assert bad.returncode == 2
    first = bad.stderr.splitlines()[0]
    assert first.startswith("mailtriage: error: web.port:")
    assert "Traceback" not in bad.stderr


def test_missing_config_is_exit_2_with_hint(tmp_path) -> None:
    done = mailtriage(tmp_path, "tickets")
    assert done.returncode == 2
    assert "config file not found" in done.stderr and "hint: run 'mailtriage init'" in done.stderr
    assert "key named above" not in done.stderr


def test_a_misspelt_key_gets_a_did_you_mean(site) -> None:
    config = site / "mailtriage.toml"
    config.write_text(config.read_text().replace("max_attempts = 3", "max_atempts = 3"))
    bad = mailtriage(site, "check-config")
    assert bad.returncode == 2
    assert 'guards.max_atempts: Extra inputs are not permitted; did you mean "max_attempts"?' in (
        bad.stderr
    )


def test_database_commands_print_no_alembic_chatter(site) -> None:
    done = mailtriage(site, "tickets")
    assert done.returncode == 0 and "alembic" not in done.stderr and done.stderr == ""


def test_init_says_how_mail_becomes_tickets(tmp_path) -> None:
    done = mailtriage(tmp_path, "init", str(tmp_path))
    assert "while 'mailtriage run' is running" in done.stdout


def test_bad_usage_is_exit_2(tmp_path) -> None:
    done = mailtriage(tmp_path, "tickets", "--format", "xml")
    assert done.returncode == 2


def test_check_config_connect_reports_maildir(site) -> None:
    done = mailtriage(site, "check-config", "--connect")
    assert done.returncode == 0
    assert "mailbox connect: ok: maildir" in done.stdout


def test_read_only_commands_need_no_mailbox_secret(site) -> None:
    """An admin reading tickets on another host has no IMAP password: only run/check need it."""
    config = site / "mailtriage.toml"
    config.write_text(
        config.read_text().replace(
            'backend = "maildir"', 'backend = "imap"\nhost = "imap.example.com"\nusername = "s"', 1
        )
    )
    listed = mailtriage(site, "tickets", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "[]"
    checked = mailtriage(site, "check-config")
    assert checked.returncode == 2
    assert checked.stderr.splitlines()[0].startswith("mailtriage: error: mailbox")
    assert "password" in checked.stderr.splitlines()[0]
