"""Hermetic test support: generated wheels/sdists, a tiny PEP 517 backend and a local index.

Import as ``from support.dists import make_wheel`` and ``from support.server import IndexServer``
(``tests/`` is put on ``sys.path`` by ``tests/conftest.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["scrubbed_env"]


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
