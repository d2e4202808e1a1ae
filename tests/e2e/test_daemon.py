"""The long-running daemon as a user runs it: mail arrives, page shows it, SIGTERM stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.e2e.helpers import BIN, mailtriage, tickets
from tests.support.mail import make_mail
from tests.support.ports import free_port, wait_for_port


@pytest.mark.slow
def test_daemon_processes_new_mail_serves_page_and_stops_on_sigterm(site, inbox) -> None:
    port = free_port()
    config = site / "mailtriage.toml"
    text = config.read_text().replace("port = 8025", f"port = {port}")
    config.write_text(text.replace("[mailbox]\n", "[mailbox]\npoll_seconds = 1\n", 1))
    proc = subprocess.Popen(
        [str(BIN), "--config", str(config), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "MAILTRIAGE_CRASH_AT"},
    )
    try:
        wait_for_port(port, timeout=120)
        inbox(make_mail(subject="Laptop will not boot", message_id="<d-1@mail.example.com>"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not tickets(site):
            time.sleep(0.3)
        [ticket] = tickets(site)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/tickets/{ticket['id']}") as resp:
            assert resp.status == 200 and ticket["id"] in resp.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as resp:
            health = json.loads(resp.read())
        assert health["ok"] is True
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped cleanly" in err
    assert "Traceback" not in err


def test_run_no_web_does_not_listen(site, inbox) -> None:
    port = free_port()
    config = site / "mailtriage.toml"
    config.write_text(config.read_text().replace("port = 8025", f"port = {port}"))
    proc = subprocess.Popen(
        [str(BIN), "--config", str(config), "run", "--no-web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_demo_turns_samples_into_tickets(tmp_path) -> None:
    done = mailtriage(tmp_path, "demo", "--dir", str(tmp_path / "demo"), "--no-serve")
    assert done.returncode == 0, done.stderr
    assert "10 mails -> 9 tickets" in done.stdout
    assert len(list((tmp_path / "demo/var/mail/sent/new").iterdir())) >= 8
