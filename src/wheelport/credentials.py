"""The one netrc lookup, shared by the index client and ``publish``.

The file is ``$NETRC`` when set, else ``~/.netrc``. Its ``machine`` entry for a host (else its
``default`` entry) gives a login and a password. What a caller does with an unreadable file is
the caller's choice: ``publish`` stops with the error, the index client goes on without.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wheelport.errors import UsageError


@dataclass(frozen=True)
class NetrcLogin:
    """A netrc entry's login and password, and the file it came from. ``repr`` hides the
    password."""

    login: str
    password: str = field(repr=False)
    path: Path


def netrc_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$NETRC``, else ``.netrc`` in ``$HOME`` (``environ`` defaults to ``os.environ``)."""
    env = os.environ if environ is None else environ
    return Path(env.get("NETRC") or Path(env.get("HOME", "~")).expanduser() / ".netrc")


def netrc_login(
    host: str, *, path: Path | None = None, environ: Mapping[str, str] | None = None
) -> NetrcLogin | None:
    """The login the netrc file (``path``, default :func:`netrc_path`) gives for ``host``.

    None when there is no such file or it has no entry for the host and no ``default`` entry.
    Raises :class:`UsageError` naming the file when it exists but cannot be read or parsed.
    """
    file = path or netrc_path(environ)
    if not file.is_file():
        return None
    try:
        entry = netrc.netrc(str(file)).authenticators(host)
    except (netrc.NetrcParseError, OSError) as exc:
        reason = exc.msg if isinstance(exc, netrc.NetrcParseError) else exc
        raise UsageError(f"cannot read {file}: {reason}", path=str(file)) from None
    if entry is None:
        return None
    return NetrcLogin(entry[0] or "", entry[2] or "", file)
