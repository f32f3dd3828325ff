"""One run per output folder: a lock file that refuses a second run writing to the same place.

Two runs into one folder would interleave their logs and overwrite each other's checkpoints and
results while both exit 0. `RunLock(folder)` creates ``folder/run.lock`` (atomically, with the
owner's pid, host and command) and removes it on exit. A lock whose process is gone (a killed
run: the lock file outlives it) is taken over with a warning, so rerunning a killed run to
resume it just works.
"""

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)
LOCK_NAME = "run.lock"


class FolderInUseError(RuntimeError):
    """Another live run holds the folder's lock."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunLock:
    """Context manager holding ``<folder>/run.lock`` for the duration of a run."""

    def __init__(self, folder: str | Path, what: str = "run"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = what
        self.held = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                 "command": " ".join(sys.argv)}
        for _ in range(2):  # the second try follows the removal of a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._refuse_or_clear_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(owner, f)
            self.held = True
            return
        raise FolderInUseError(f"{self.path}: could not take the lock (another run took it "
                               "at the same moment?)")

    def _refuse_or_clear_stale(self) -> None:
        """Raise if the lock's owner is alive; remove the lock (with a warning) if it is not."""
        try:
            owner = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            owner = {}  # half-written by a run killed at that instant: stale
        pid, host = owner.get("pid"), owner.get("host")
        if isinstance(pid, int) and host == socket.gethostname() and pid_alive(pid):
            raise FolderInUseError(
                f"{self.folder} is in use by another {self.what} (pid {pid}, started "
                f"{time.ctime(owner.get('started', 0))}: {owner.get('command', '?')}). Two runs "
                "into one folder overwrite each other's checkpoints and results: wait for it to "
                "finish, or give this run another output folder (--output_folder). If that "
                f"process is not a run of this folder, delete {self.path}.")
        if isinstance(pid, int) and host not in (None, socket.gethostname()):
            raise FolderInUseError(
                f"{self.folder} is locked by pid {pid} on host {host}, which cannot be checked "
                f"from here: if no run is writing to it, delete {self.path}")
        logger.warning("%s: taking over the lock of a run that is no longer running (pid %s; "
                       "killed?)", self.path, pid)
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
