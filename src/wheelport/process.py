"""One port for running programs: the :class:`Runner` protocol and its default.

Every stage that starts a program (native and container builds, image builds, the docker
export, provisioning) takes a ``runner`` argument of this one shape, in the spirit of
pypa/build's ``runner=`` hook, so tests and other tools can record, fake or wrap the
commands without patching globals. A runner takes the command line and, as keywords, the
working directory, the environment, an optional log file and a timeout; it returns a
frozen :class:`RunResult` with the exit code and the combined stdout/stderr.

``bootstrap.py`` (stdlib only, Python 3.8+) cannot import this module; its own runner has
the same shape, so a :class:`Runner` from here can be handed to it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeAlias

#: a path given as ``str`` or :class:`os.PathLike`
StrPath: TypeAlias = str | os.PathLike[str]


@dataclass(frozen=True)
class RunResult:
    """What a runner reports: the exit code and the combined stdout/stderr (text)."""

    returncode: int
    output: str

    @property
    def last_line(self) -> str:
        """The last non-blank line of the output ("" when there is none)."""
        lines = [line for line in self.output.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


class Runner(Protocol):
    """Runs ``argv`` to completion and reports a :class:`RunResult`.

    ``env`` replaces the environment when given (the parent's is inherited otherwise);
    ``log`` receives the combined output as it is written (its directory is created);
    ``timeout`` is in seconds. Raises :class:`OSError` when the program cannot be started
    and :class:`subprocess.TimeoutExpired` when the timeout passes (the child is killed).
    """

    def __call__(
        self,
        argv: Sequence[str],
        *,
        cwd: StrPath | None = None,
        env: Mapping[str, str] | None = None,
        log: StrPath | None = None,
        timeout: float | None = None,
    ) -> RunResult: ...


def subprocess_runner(
    argv: Sequence[str],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    log: StrPath | None = None,
    timeout: float | None = None,
) -> RunResult:
    """The default :class:`Runner`: a real subprocess, stdin closed, output captured."""
    env_dict = dict(env) if env is not None else None
    if log is None:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env=env_dict,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        return RunResult(proc.returncode, _text(proc.stdout))
    path = Path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        logged = subprocess.run(
            list(argv),
            cwd=cwd,
            env=env_dict,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    return RunResult(logged.returncode, _text(path.read_bytes()))


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")
