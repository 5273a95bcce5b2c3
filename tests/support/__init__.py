"""Hermetic test support: generated wheels/sdists, a tiny PEP 517 backend and a local index.

Import as ``from support.dists import make_wheel`` and ``from support.server import IndexServer``
(``tests/`` is put on ``sys.path`` by ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

__all__ = ["bundled_pip_wheel", "can_unshare", "one_error_line", "run_wheelport", "scrubbed_env"]


def scrubbed_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return a copy of *base* (default ``os.environ``) that cannot leak this machine's pip/uv setup.

    Drops every ``PIP_*``/``UV_*`` variable and ``PYTHONPATH``; sets ``PIP_CONFIG_FILE=/dev/null``
    (pip then reads no config file, not even ``/etc/pip.conf``) and ``UV_NO_CONFIG=1``. Callers still
    pass ``--isolated`` (pip) / ``--no-config`` (uv). ``os.environ`` itself is never changed.
    """
    source = dict(os.environ if base is None else base)
    env = {k: v for k, v in source.items() if not k.startswith(("PIP_", "UV_"))}
    env.pop("PYTHONPATH", None)
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["UV_NO_CONFIG"] = "1"
    return env


def can_unshare() -> bool:
    """Whether this machine lets a child drop the network (``unshare -n``)."""
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def bundled_pip_wheel() -> str | None:
    """A real pip wheel that ships with a local CPython (ensurepip), or None."""
    import glob
    import sys

    pyenv = os.environ.get("PYENV_ROOT", "/root/.pyenv")
    found = sorted(glob.glob(f"{sys.base_prefix}/lib/python3*/ensurepip/_bundled/pip-*.whl"))
    found = found or sorted(
        glob.glob(f"{pyenv}/versions/3.11.*/lib/python3.11/ensurepip/_bundled/pip-*.whl")
    )
    return found[-1] if found else None


def run_wheelport(
    *args: str,
    env: Mapping[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    timeout: float = 1800,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (``python -m wheelport``) in a subprocess, optionally under ``prefix``
    (e.g. ``unshare -n``)."""
    import subprocess
    import sys

    return subprocess.run(
        [*prefix, sys.executable, "-m", "wheelport", *args],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else dict(os.environ),
        timeout=timeout,
        cwd=cwd,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one ``error: …`` line a failed wheelport command printed on stderr (asserting there
    is exactly one non-empty line and no traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]
