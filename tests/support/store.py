"""The database as another program or the disk can leave it: locked by another process, read-only."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "all":  # no reading either: the lock a writer in exclusive locking mode keeps
    db.execute("PRAGMA locking_mode = EXCLUSIVE")
    db.execute("BEGIN EXCLUSIVE")
else:
    db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


@contextlib.contextmanager
def lock_held(db: Path, how: str = "writes"):
    """Another process holds the database's lock until the callable this yields is called."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), how], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def release() -> None:
        if holder.poll() is None:
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(timeout=10) == 0, holder.stderr.read()

    try:
        assert holder.stdout.readline() == "locked\n", holder.stderr.read()
        yield release
    finally:
        release()


@contextlib.contextmanager
def read_only(path: Path):
    """Make the file really unwritable, or skip.

    chmod 0400 is enough for an ordinary user. Tests here may run as root,
    which ignores file modes (and a 0500 directory), and an sqlite URI with
    mode=ro cannot be passed through Journal.open(path). What does stop root
    is the immutable attribute (chattr +i, on ext4/xfs with
    CAP_LINUX_IMMUTABLE); if that is not available the test is skipped.
    """
    if os.geteuid() != 0:
        path.chmod(0o400)
        try:
            yield
        finally:
            path.chmod(0o600)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root, which ignores chmod, and chattr is not installed")
    done = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root, which ignores chmod, and chattr +i failed: {done.stderr.strip()}")
    try:
        with pytest.raises(PermissionError):
            open(path, "r+b").close()
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)
