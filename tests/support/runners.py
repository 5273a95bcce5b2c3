"""One recording :class:`wheelport.process.Runner` for the tests that watch commands.

Each call's argv and environment are recorded; :meth:`RecordingRunner.answer` decides the
result — by default the command runs for real. Tests subclass it to answer from a table or
with a fixed result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from wheelport.process import RunResult, StrPath, subprocess_runner


class RecordingRunner:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.envs: list[dict[str, str]] = []

    def __call__(
        self,
        argv: Sequence[str],
        *,
        cwd: StrPath | None = None,
        env: Mapping[str, str] | None = None,
        log: StrPath | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        self.calls.append(list(argv))
        self.envs.append(dict(env or {}))
        return self.answer(list(argv), cwd=cwd, env=env, log=log, timeout=timeout)

    def answer(
        self,
        argv: list[str],
        *,
        cwd: StrPath | None,
        env: Mapping[str, str] | None,
        log: StrPath | None,
        timeout: float | None,
    ) -> RunResult:
        return subprocess_runner(argv, cwd=cwd, env=env, log=log, timeout=timeout)
