"""One port for running programs: the :class:`Runner` protocol and its default.

Every stage that starts a program (native and container builds, image builds, the docker
export, provisioning) takes a ``runner`` argument of this one shape, in the spirit of
pypa/build's ``runner=`` hook, so tests and other tools can record, fake or wrap the
commands without patching globals. A runner takes the command line and, as keywords, the
working directory, the environment, an optional log file and a timeout; it returns a
frozen :class:`RunResult` with the exit code and the combined stdout/stderr.

:class:`RunResult` and the default :func:`subprocess_runner` are ``bootstrap.py``'s (the
portable core, stdlib only, cannot import wheelport; wheelport imports it), so there is one
implementation and a :class:`Runner` from here can be handed to bootstrap.py as is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeAlias

from wheelport.bootstrap import RunResult, subprocess_runner

__all__ = ["RunResult", "Runner", "StrPath", "subprocess_runner"]

#: a path given as ``str`` or :class:`os.PathLike`
StrPath: TypeAlias = str | os.PathLike[str]


class Runner(Protocol):
    """Runs ``argv`` to completion and reports a :class:`RunResult`.

    ``env`` replaces the environment when given (the parent's is inherited otherwise);
    ``log`` receives the combined output as it is written (its directory is created);
    ``timeout`` is in seconds. Raises :class:`OSError` when the program cannot be started
    and ``subprocess.TimeoutExpired`` when the timeout passes (the child is killed).
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
