"""Starting the download process (:mod:`wheelport.index.worker`), early when asked.

The process spends its first ~0.14 s importing (httpx, packaging, wheelport's index client)
before it reads its settings, the first line on its stdin. A ``sync`` started from the command
line starts it at once (:func:`start_early`, from ``wheelport.__main__`` before the command
line itself is imported, and again, a no-op then, from ``cli.main``), so those imports run on
the other core while this process does its own; the run's
:class:`~wheelport.fetch.Prefetcher` then takes it (:func:`take`) and hands it its settings. A
process no run takes (a no-op sync, a usage error) sees the end of its stdin when this one
exits, and ends.

This module imports nothing of wheelport's: the command line calls it before anything else.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

#: a process started early and not yet taken, with where its stderr goes
_early: tuple[subprocess.Popen[str], IO[bytes] | None] | None = None


def spawn() -> tuple[subprocess.Popen[str], IO[bytes] | None]:
    """A new download process waiting for its settings, and the unnamed temporary file its
    stderr goes to (read back only when it fails; None: nowhere). Raises OSError when it
    cannot start."""
    try:
        errors: IO[bytes] | None = tempfile.TemporaryFile()  # noqa: SIM115 - the taker closes it
    except OSError:
        errors = None
    # started in the directory wheelport is imported from: ``-m`` puts the working directory
    # first on sys.path, where a user's own "wheelport" must not shadow it
    here = Path(__file__).resolve().parent.parent.parent
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wheelport.index.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors if errors is not None else subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            cwd=here,
        )
    except OSError:
        if errors is not None:
            errors.close()
        raise
    return proc, errors


def start_early() -> None:
    """Start a download process now, for the run to take (nothing when one cannot start, or
    this Python is embedded: the run then reads without one, as it would)."""
    global _early
    if _early is not None or not sys.executable:
        return
    with contextlib.suppress(OSError):
        _early = spawn()


def take() -> tuple[subprocess.Popen[str], IO[bytes] | None]:
    """The process started early when it still runs, else a new one (:func:`spawn`)."""
    global _early
    early, _early = _early, None
    if early is not None:
        if early[0].poll() is None:
            return early
        if early[1] is not None:
            early[1].close()
    return spawn()
