"""A private PostgreSQL server on loopback for the test session.

Debian's ``postgresql`` package provides the binaries; the fixture runs
``initdb`` in a temporary folder and starts its own ``postgres`` on a free
port. PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` system user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.ports import free_port, wait_for_port
from tests.support.requires import missing


def _bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


@dataclass
class PostgresServer:
    """A running server; ``new_database()`` gives each test its own database."""

    port: int
    bindir: str
    run_as: list[str]
    data: str = ""
    opts: str = ""
    log: str = ""

    def url(self, db: str = "postgres") -> str:
        """SQLAlchemy URL for database ``db``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        subprocess.run(
            [
                *self.run_as,
                f"{self.bindir}/createdb",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                name,
            ],
            check=True,
            capture_output=True,
        )
        return self.url(name)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server (fast: clients are cut off), wait, start it again."""
        self._ctl("-m", "fast", "stop")
        time.sleep(down_seconds)
        self._ctl("-o", self.opts, "-l", self.log, "start")
        wait_for_port(self.port)

    def _ctl(self, *args: str) -> None:
        cmd = [*self.run_as, f"{self.bindir}/pg_ctl", "-D", self.data, "-w", *args]
        subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start PostgreSQL for the session (skips locally, fails in CI, when not installed)."""
    bindir = _bin_dir()
    if bindir is None:
        missing("PostgreSQL is not installed (scripts/install-system.sh installs it)")
    run_as: list[str] = []
    base = tempfile.mkdtemp(prefix="mt-pg-")
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(base, "data")
    subprocess.run(
        [*run_as, f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*run_as, f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", f"{base}/log", "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        wait_for_port(port)
        yield PostgresServer(port, bindir, run_as, data, opts, f"{base}/log")
    finally:
        subprocess.run(
            [*run_as, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)
