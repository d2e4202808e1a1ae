"""Helpers for end-to-end tests: run the real ``mailtriage`` CLI, read what it wrote."""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

BIN = Path(sys.executable).parent / "mailtriage"


def mailtriage(site: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180):
    """Run the installed console script against ``site``'s config; return the CompletedProcess."""
    cmd = [str(BIN), "--config", str(site / "mailtriage.toml"), *args]
    full_env = {k: v for k, v in os.environ.items() if k != "MAILTRIAGE_CRASH_AT"}
    full_env.update(env or {})
    return subprocess.run(
        cmd, capture_output=True, text=True, env=full_env, timeout=timeout, check=False
    )


def tickets(site: Path) -> list[dict]:
    """Return ``mailtriage tickets --format json`` as Python objects."""
    done = mailtriage(site, "tickets", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def sent_mail(site: Path) -> list[EmailMessage]:
    """Every message the maildir transport wrote, parsed."""
    folder = site / "var/mail/sent/new"
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(folder.iterdir())
    ]


def acks(site: Path) -> list[EmailMessage]:
    """The acknowledgements among the sent mail."""
    return [m for m in sent_mail(site) if "] Received:" in str(m["Subject"])]
