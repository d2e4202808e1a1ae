"""``pip install .`` ships every package, template, migration and data file."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_contains_packages_and_data(tmp_path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    # setuptools warns of a deprecated licence table and of data folders it was not told of
    assert "deprecated" not in built.stderr and "is absent from" not in built.stderr
    [wheel] = tmp_path.glob("mailtriage-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "mailtriage/cli.py",
        "daemon/store/migrations/env.py",
        "daemon/store/migrations/versions/0001_initial_schema.py",
        "mailtriage/samples/01-vpn.eml",
        "templates/ack.txt.j2",
        "web_status/templates/dashboard.html",
        "config/defaults.toml",
        "classifier/data/it_lexicon.txt",
        "routing/replies.py",
    ):
        assert required in names, required
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mailtriage = mailtriage.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    assert not any(n.startswith("tests/") for n in names)
