"""Credentials: the one netrc lookup, logins carried by index URLs, and URLs as they are shown.

The netrc file is ``$NETRC`` when set, else ``~/.netrc``. Its ``machine`` entry for a host (else
its ``default`` entry) gives a login and a password. What a caller does with an unreadable file
is the caller's choice: ``publish`` stops with the error, the index client goes on without
(:class:`Logins`). Credentials are never printed or written: every URL shown to a user goes
through :func:`redact`.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

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


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (user names are kept)."""
    parts = urlsplit(url)
    if parts.password is None and "@" not in parts.netloc:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    # a user name alone is often a token (https://<token>@host/): hide it as pip does
    netloc = (
        f"{parts.username}:***@{host}"
        if parts.password is not None and parts.username
        else f"***@{host}"
    )
    return urlunsplit(parts._replace(netloc=netloc))


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without ``user:password@``, the (user, password) it carried or None), the
    login percent-decoded as pip does (a password with ``@`` or ``:`` must be written encoded)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    clean = urlunsplit(parts._replace(netloc=host))
    return clean, (unquote(parts.username or ""), unquote(parts.password or ""))


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL (the port made explicit): where a login may be sent."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname}:{p.port or (443 if p.scheme == 'https' else 80)}"


class Logins:
    """The logins an index client sends: the one an index URL carries, for that index's origin;
    else the netrc login for an index's host (looked up once per host; an unreadable netrc gives
    none, as pip: a public index needs none, and a refusal names the index URL). A host that is
    no index's gets none."""

    def __init__(self) -> None:
        self._given: dict[str, tuple[str, str]] = {}
        self._indexes: set[str] = set()
        self._netrc: dict[str, NetrcLogin | None] = {}

    def add_index(self, url: str) -> str:
        """Take an index URL: remember its origin and the login it carries; return the URL
        without the login."""
        clean, login = split_credentials(url)
        self._indexes.add(origin(clean))
        if login:
            self._given[origin(clean)] = login
        return clean

    def for_url(self, url: str) -> tuple[str, str] | None:
        """(login, password) to send with a request for ``url``, or None."""
        where = origin(url)
        if where in self._given:
            return self._given[where]
        if where not in self._indexes:
            return None
        host = urlsplit(url).hostname or ""
        if host not in self._netrc:
            try:
                self._netrc[host] = netrc_login(host)
            except UsageError:
                self._netrc[host] = None
        entry = self._netrc[host]
        return (entry.login, entry.password) if entry else None
