"""``HUB_DATA_DIR`` is private to the account the hub runs as.

It holds the city's telemetry, alerts, the registry with device locations, API key
hashes, the audit log and the embedded broker's queue: nothing another local
account should read. So the folder is ``0700`` and everything in it ``0600``:

* ``hub`` sets the process umask to :data:`PRIVATE_UMASK` when it starts
  (:func:`private_umask`), which covers every file and folder the hub, its
  children (the store writer, the embedded Mosquitto) and the libraries it drives
  create, whoever opens them;
* the files the hub owns are private whatever the umask, for a hub embedded in
  another program: journal segments and checkpoints are created 0600, and
  :func:`hub.sqlite.connect` makes a database and its ``-wal`` and ``-shm`` files
  0600;
* :func:`make_private` creates the folder ``0700``, and takes group and other
  access away from an existing one (a data dir made by an older version, or by
  hand), saying so in the log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hub.logging import get_logger

log = get_logger(__name__)

#: No access for group and others on anything created from here on.
PRIVATE_UMASK = 0o077
#: Modes of the data dir (and the folders in it) and of its files.
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> int:
    """Set the process umask to :data:`PRIVATE_UMASK`; return the previous one."""
    return os.umask(PRIVATE_UMASK)


def make_private(path: Path) -> None:
    """Create the folder ``path`` with mode 0700, or make an existing one 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, mode & ~0o077)
        log.warning(
            "data dir was open to other accounts; made it private",
            path=str(path),
            mode_was=f"{mode:04o}",
            mode=f"{mode & ~0o077:04o}",
        )
