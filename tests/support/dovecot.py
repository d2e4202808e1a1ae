"""A private Dovecot IMAP server on loopback, started and stopped by pytest.

Debian's ``dovecot-imapd`` provides the binaries; :func:`start_dovecot` writes
its own ``dovecot.conf`` into a temporary folder (passwd-file users, Maildir,
no system paths touched) and runs ``dovecot -F -c <conf>``. It listens on two
free ports on 127.0.0.1: plain IMAP (STARTTLS offered) and IMAPS, both with a
throw-away self-signed certificate for 127.0.0.1 (``ca_file``).

Each user's passwd-file password works for LOGIN/PLAIN; a second passwd-file
holds the user's "token": Dovecot 2.3's XOAUTH2 mechanism verifies the bearer
token like a password against the passdb chain, so XOAUTH2 logins are real.

As root, the master stays root, login processes run as ``dovenull``, internal
ones as ``dovecot`` and the mail processes as ``nobody`` (Dovecot refuses
uid 0 for mail); as another user everything runs as that user, unchrooted.
Start-up takes about 0.2 s, so the ``dovecot`` fixture is per test.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from imapclient import IMAPClient

from config.schema import MailboxSettings
from tests.support.ports import free_port, wait_for_port
from tests.support.requires import require_executable
from tests.support.tls import write_self_signed

DOVECOT = ("dovecot", "/usr/sbin/dovecot")
USER, PASSWORD, TOKEN = "support", "s3cret-pw", "good-token-0123456789"
# A capability list without MOVE (and without IDLE when asked): post-login CAPABILITY.
NO_MOVE_CAPABILITIES = "IMAP4rev1 LITERAL+ SASL-IR IDLE UIDPLUS NAMESPACE UNSELECT CHILDREN"


@dataclass
class DovecotServer:
    """A running private Dovecot: where it listens, who may log in, mailbox helpers."""

    host: str
    port: int
    tls_port: int
    user: str
    password: str
    token: str
    base: Path
    conf: Path
    ca_file: str
    doveadm: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    # -- settings and clients -------------------------------------------------
    def settings(self, **overrides: object) -> MailboxSettings:
        """Plain-IMAP :class:`MailboxSettings` for this server's user (password login)."""
        values: dict[str, object] = {
            "backend": "imap",
            "host": self.host,
            "port": self.port,
            "ssl": False,
            "starttls": False,
            "username": self.user,
            "password": self.password,
            "poll_seconds": 1.0,
        }
        return MailboxSettings(**(values | overrides))

    def client(self, user: str | None = None, password: str | None = None) -> IMAPClient:
        """A logged-in IMAPClient (plain connection); the caller logs out."""
        client = IMAPClient(self.host, self.port, ssl=False, timeout=10)
        client.login(user or self.user, password or self.password)
        return client

    def add_user(self, user: str, password: str, token: str | None = None) -> None:
        """Add a passwd-file user (Dovecot re-reads the files when they change)."""
        with open(self.base / "passwd", "a") as fh:
            fh.write(f"{user}:{{PLAIN}}{password}::::::\n")
        if token:
            with open(self.base / "tokens", "a") as fh:
                fh.write(f"{user}:{{PLAIN}}{token}::::::\n")

    # -- mailbox helpers ------------------------------------------------------------
    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        """APPEND ``raw`` to ``folder`` (created when missing); return its UID."""
        with self.client() as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)
            answer = c.append(folder, raw)
        found = re.search(rb"APPENDUID \d+ (\d+)", answer)
        assert found, answer
        return int(found.group(1))

    def uids(self, folder: str = "INBOX") -> list[int]:
        """UIDs of the messages in ``folder`` not flagged deleted ([] when it does not exist)."""
        with self.client() as c:
            if not c.folder_exists(folder):
                return []
            c.select_folder(folder, readonly=True)
            return sorted(c.search(["NOT", "DELETED"]))

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """The exact bytes of the messages in ``folder``, by UID."""
        with self.client() as c:
            if not c.folder_exists(folder):
                return []
            c.select_folder(folder, readonly=True)
            uids = sorted(c.search(["NOT", "DELETED"]))
            if not uids:
                return []
            answer = c.fetch(uids, ["BODY.PEEK[]"])
            return [answer[u][b"BODY[]"] for u in uids]

    def uidvalidity(self, folder: str = "INBOX") -> int:
        """The folder's current UIDVALIDITY."""
        with self.client() as c:
            return int(c.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])

    def reset_uidvalidity(self, folder: str = "INBOX") -> int:
        """Give ``folder`` a new UIDVALIDITY (``doveadm mailbox update``); return it.

        The messages stay; IMAP clients must forget every UID they knew, as after a
        server migration. Dovecot disconnects sessions that have the folder selected.
        """
        new = self.uidvalidity(folder) + 1
        self._doveadm("mailbox", "update", "-u", self.user, "--uid-validity", str(new), folder)
        return new

    def log(self) -> str:
        """Dovecot's log so far (for assertion messages)."""
        path = self.base / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _doveadm(self, *args: str) -> str:
        done = subprocess.run(
            [self.doveadm, "-c", str(self.conf), *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        """Stop the server: SIGKILL to its process group (a clean SIGTERM takes 1-5 s)."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _accounts(base: Path) -> dict[str, str]:
    """Which system users run which Dovecot processes; hands ``mail/`` to the mail user."""
    if os.geteuid() == 0:
        mail = pwd.getpwnam("nobody")
        accounts = {"internal": "dovecot", "login": "dovenull"}
        accounts |= {"uid": str(mail.pw_uid), "gid": str(mail.pw_gid)}
    else:
        me = pwd.getpwuid(os.geteuid()).pw_name
        accounts = {"internal": me, "login": me}
        accounts |= {"uid": str(os.geteuid()), "gid": str(os.getegid())}
    os.chown(base / "mail", int(accounts["uid"]), int(accounts["gid"]))
    return accounts


def _config(base: Path, port: int, tls_port: int, capabilities: str | None) -> str:
    a = _accounts(base)
    rootless = os.geteuid() != 0  # no chroot, no user switching
    login_chroot = "  chroot =\n" if rootless else ""
    anvil_chroot = "  chroot =\n" if rootless else ""
    worker = "service auth-worker {\n  user = $default_internal_user\n}\n" if rootless else ""
    caps = f"  imap_capability = {capabilities}\n" if capabilities else ""
    return f"""# written by tests/support/dovecot.py
protocols = imap
listen = 127.0.0.1
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
ssl = yes
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
auth_failure_delay = 0
default_internal_user = {a["internal"]}
default_login_user = {a["login"]}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {base}/passwd
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {base}/tokens
}}
userdb {{
  driver = static
  args = uid={a["uid"]} gid={a["gid"]} home={base}/mail/%u
}}
service imap-login {{
{login_chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
# A socket nobody may use switches off anvil's auth penalty (up to 15 s per login
# after a failed one from the same IP): tests fail logins on purpose.
service anvil {{
{anvil_chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{worker}protocol imap {{
  mail_max_userip_connections = 100
{caps}}}
"""


def start_dovecot(
    binary: str = "/usr/sbin/dovecot",
    *,
    capabilities: str | None = None,
    base: Path | None = None,
) -> DovecotServer:
    """Start a private Dovecot and return it (call ``stop()``); usable outside pytest too.

    ``capabilities`` replaces the post-login CAPABILITY list (e.g.
    :data:`NO_MOVE_CAPABILITIES`, so clients must copy + delete + expunge).
    """
    base = base or Path(tempfile.mkdtemp(prefix="mt-dovecot-"))
    base.chmod(0o755)  # the login/auth processes (other users) read below it
    for sub in ("run", "state", "mail"):
        (base / sub).mkdir(exist_ok=True)
    write_self_signed(base)
    (base / "key.pem").chmod(0o600)
    port, tls_port = free_port(), free_port()
    conf = base / "dovecot.conf"
    conf.write_text(_config(base, port, tls_port, capabilities))
    (base / "passwd").write_text("")
    (base / "tokens").write_text("")
    server = DovecotServer(
        host="127.0.0.1",
        port=port,
        tls_port=tls_port,
        user=USER,
        password=PASSWORD,
        token=TOKEN,
        base=base,
        conf=conf,
        ca_file=str(base / "cert.pem"),
        doveadm=shutil.which("doveadm") or "/usr/bin/doveadm",
    )
    server.add_user(USER, PASSWORD, TOKEN)
    out = open(base / "stdout.log", "wb")  # noqa: SIM115 - lives as long as the process
    server.process = subprocess.Popen(
        [binary, "-F", "-c", str(conf)], stdout=out, stderr=out, start_new_session=True
    )
    out.close()
    try:
        wait_for_port(port, timeout=15)
        wait_for_port(tls_port, timeout=15)
    except TimeoutError as exc:
        server.stop()
        output = (base / "stdout.log").read_text(errors="replace")
        raise RuntimeError(f"dovecot did not start: {output}\n{server.log()}") from exc
    return server


@contextmanager
def running_dovecot(**kwargs: object) -> Iterator[DovecotServer]:
    """:func:`start_dovecot` as a context manager; removes the folder afterwards."""
    server = start_dovecot(**kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture
def make_dovecot() -> Iterator[Callable[..., DovecotServer]]:
    """Factory: ``make_dovecot(capabilities=...)`` starts a server; all stop at teardown."""
    binary = require_executable(*DOVECOT)
    servers: list[DovecotServer] = []

    def make(**kwargs: object) -> DovecotServer:
        server = start_dovecot(binary, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture
def dovecot(make_dovecot: Callable[..., DovecotServer]) -> DovecotServer:
    """A fresh private Dovecot (IDLE, MOVE, UIDPLUS) with one user and an empty INBOX."""
    return make_dovecot()
