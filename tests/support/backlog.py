"""A realistic backlog: varied IT requests from many people, arriving over days.

Shared by the backlog test, ``bench/bench_pipeline.py`` and ``bench/bench_backlog.py``.
:class:`DaemonWatch` runs the real ``mailtriage run`` over a backlog and samples,
twice a second, how much is left in the inbox, how much mail has gone out and
the daemon's resident memory, so a test can say *when* requesters heard back.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon.backends.maildir import deliver
from tests.support.mail import make_mail

REQUESTS = [
    ("VPN conection drops", "My VPN disconnects every few minutes, netwrok otherwise fine."),
    ("Pritner offline", "The printer on floor {n} shows offline and the queue is stuck."),
    ("Pasword expired", "My password expired and I am locked out of my account. MFA fails too."),
    ("Suspicious email", "I got a phishing mail asking for my credentials and clicked the link."),
    ("Outlok calendar", "Outlook does not sync my calendar with Teams since yesterday."),
    ("Laptop screen", "Laptop LT-{n:05d} screen flickers and the keybaord is dead."),
    ("Install Visio", "Please install Visio on my PC, the sofware center does not list it."),
    ("Question about expenses", "Where do I find the expense policy? Thanks."),
]
QUOTE = "\n\nOn Mon, Jan 5, 2026 at 9:00 AM Support <support@example.com> wrote:\n> earlier text\n> more"


def generate(n: int, seed: int = 7, senders: int = 400) -> list[bytes]:
    """Return ``n`` varied request mails from ``senders`` people."""
    rng = random.Random(seed)
    mails = []
    for i in range(n):
        subject, body = rng.choice(REQUESTS)
        body = (
            body.format(n=rng.randint(1, 99999))
            + "\n\n"
            + "Some more detail. " * rng.randint(3, 30)
        )
        if rng.random() < 0.2:
            body += QUOTE
        html = f"<p>{body}</p>" if rng.random() < 0.3 else None
        mails.append(
            make_mail(
                subject=f"{subject} #{i}",
                body=body,
                sender=f"user{rng.randint(1, senders)}@example.com",
                html=html,
                message_id=f"<bench-{i}@mail.example.com>",
            )
        )
    return mails


def deliver_backlog(inbox: Path, n: int, hours: float = 60.0, seed: int = 7) -> None:
    """Deliver ``n`` mails that arrived over ``hours`` (a weekend's outage), oldest first.

    About three mails per person, so nobody comes near a sender rate limit when
    mail is judged by when it arrived.
    """
    start = time.time() - hours * 3600
    step = hours * 3600 / max(n, 1)
    for i, raw in enumerate(generate(n, seed, senders=max(1, n // 3))):
        when = start + i * step
        os.utime(deliver(inbox, raw, f"{int(when)}.{i:06d}.backlog"), (when, when))


def warm_up(site: Path) -> None:
    """Process one mail so the one-off caches (model, spelling dictionary) exist.

    Building the dictionary cache happens once per install and costs more memory
    than running; a measurement of the daemon at work starts after it.
    """
    deliver(site / "var/mail/inbox", make_mail(subject="warm-up"), "0.warm-up")
    config = str(site / "mailtriage.toml")
    binary = Path(sys.executable).parent / "mailtriage"
    subprocess.run([str(binary), "--config", config, "run", "--once"], check=True, timeout=600)


@dataclass
class Sample:
    """One look at the daemon: seconds since start, mails waiting, mails sent, RSS."""

    at: float
    waiting: int
    sent: int
    rss_mib: float


@dataclass
class DaemonWatch:
    """Run ``mailtriage run --no-web`` on ``site`` until its inbox and outbox are empty."""

    site: Path
    binary: Path
    samples: list[Sample] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    # Called with each sample while the daemon runs (a benchmark's probes); None: nothing.
    on_sample: Callable[[Sample], None] | None = None
    web: bool = False  # serve the status page too (its port is the site's [web] port)

    def run(self, expected_sent: int, timeout: float = 1800) -> float:
        """Return the seconds until ``expected_sent`` mails went out; stops the daemon."""
        config = str(self.site / "mailtriage.toml")
        cmd = [str(self.binary), "--config", config, "--log-level", "WARNING", "run"]
        cmd += [] if self.web else ["--no-web"]
        began = time.monotonic()
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        try:
            return self._until_sent(proc, began, expected_sent, timeout)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            if proc.returncode != 0:
                sys.stderr.write(err)

    def _until_sent(self, proc, began: float, expected: int, timeout: float) -> float:
        while time.monotonic() - began < timeout:
            sample = self._look(proc.pid, time.monotonic() - began)
            self.samples.append(sample)
            if self.on_sample is not None:
                self.on_sample(sample)
            if sample.sent >= expected and sample.waiting == 0:
                return sample.at
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {proc.returncode}")
            time.sleep(0.5)
        raise TimeoutError(f"backlog not drained in {timeout}s")

    def _look(self, pid: int, at: float) -> Sample:
        waiting = sum(1 for _ in os.scandir(self.site / "var/mail/inbox/new"))
        sent = sum(1 for _ in os.scandir(self.site / "var/mail/sent/new"))
        hwm = _status_kib(pid, "VmHWM") / 1024
        self.peak_rss_mib = max(self.peak_rss_mib, hwm)
        return Sample(at, waiting, sent, _status_kib(pid, "VmRSS") / 1024)

    def sent_while_waiting(self) -> int:
        """Mails sent while at least half the backlog still waited."""
        first = self.samples[0].waiting if self.samples else 0
        return max((s.sent for s in self.samples if s.waiting >= first / 2), default=0)


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass  # the process just ended
    return 0
