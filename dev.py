#!/usr/bin/env python3
"""One command to run the hub, one to run the tests, on a machine with only Python.

    python3 dev.py serve   # .venv + requirements, schema, demo login, gunicorn on :8000
    python3 dev.py test    # .venv + dev requirements, the whole pytest suite

Uses only the standard library until the virtualenv exists. Requirements are
installed again only when their files change (a hash is kept in .venv).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_env(requirements: str) -> None:
    """Create .venv and install ``requirements`` unless already done for these exact files."""
    if not (BIN / "python").exists():
        print(f"creating virtualenv in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{requirements}"
    digest = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in ("requirements.txt", requirements))).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"installing {requirements} ...", flush=True)
    run([str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-r", requirements])
    stamp.write_text(digest)


def run(command: list[str], **kwargs) -> None:
    result = subprocess.run(command, cwd=ROOT, **kwargs)
    if result.returncode:
        sys.exit(result.returncode)


def serve(args: list[str]) -> None:
    ensure_env("requirements.txt")
    flask = [str(BIN / "flask"), "--app", "app"]
    run(flask + ["init-db"])
    run(flask + ["demo"])
    port = os.environ.get("PORT", "8000")
    print(f"serving on http://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
    os.execv(str(BIN / "gunicorn"), [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app", *args])


def test(args: list[str]) -> None:
    ensure_env("requirements-dev.txt")
    os.execv(str(BIN / "python"), [str(BIN / "python"), "-m", "pytest", *args])


if __name__ == "__main__":
    commands = {"serve": serve, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    os.chdir(ROOT)
    commands[sys.argv[1]](sys.argv[2:])
