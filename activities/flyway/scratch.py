"""A Flyway CLI run's scratch folder: private, locked while its run lives, swept once its owner is gone.

A run's folder holds its ``HOME`` and the TOML of its placeholders. A worker killed mid-run cannot
remove it (a kill loop of 21 kills left 116 behind), so each run holds an ``flock`` on a file inside
its folder for as long as it lives; the kernel releases it when the process dies. A worker starting
up (every CLI engine) removes the folders whose lock it can take: runs of processes that are gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

__all__ = ["PREFIX", "scratch_folder", "sweep_scratch"]

_log = logging.getLogger(__name__)

PREFIX: Final = "fleetway-flyway-"
_OWNER: Final = ".owner"
# A folder without its lock file is a run between creating the folder and locking it, or one
# from a build before the locks: left alone until it is this old.
_UNLOCKED_GRACE_S: Final = 600


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A new private folder, locked as this run's until the block ends, then removed."""
    with tempfile.TemporaryDirectory(prefix=PREFIX) as folder:
        fd = os.open(Path(folder) / _OWNER, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield Path(folder)
        finally:
            os.close(fd)


def _owner_gone(folder: Path, created: float) -> int | None:
    """The locked owner file's descriptor when no live run holds it (None: leave the folder)."""
    try:
        fd = os.open(folder / _OWNER, os.O_WRONLY)
    except FileNotFoundError:
        return -1 if time.time() - created > _UNLOCKED_GRACE_S else None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a live run (of this process or another) holds it
        os.close(fd)
        return None
    return fd


def sweep_scratch(root: Path | None = None) -> int:
    """Remove the scratch folders of runs whose process is gone; return how many.

    Only this user's folders, only those whose owner lock is free. Never raises.
    """
    removed = 0
    for folder in Path(root or tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            info = folder.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        fd = _owner_gone(folder, info.st_mtime)
        if fd is None:
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        finally:
            if fd >= 0:
                os.close(fd)
    if removed:
        _log.info("removed the scratch folders of runs whose worker is gone", extra={"folders": removed})
    return removed
