"""Host names looked up once, shared by every connection a run opens.

A cold sync opens dozens of connections to one index at once (pages, metadata ranges,
downloads), and each connection would ask the system resolver on its own. Many resolvers
answer such a burst badly: glibc sends the A and AAAA queries of each lookup together, and a
NAT's connection tracking drops one of a simultaneous pair now and then, so a lookup waits out
the resolver's 5 s timeout or fails outright ("Temporary failure in name resolution"). Measured
on the machine this was written on: of 32 simultaneous lookups of the same name, 8–27 took 5 s
or more, some failed; one lookup at a time never did.

So a host and port are looked up once (concurrent callers wait for that one lookup) and the
addresses are kept for :data:`KEEP_SECONDS`. A failed lookup is not kept: the next connection
asks again (a temporary failure is asked again once at once). Connections try the addresses in
the order the resolver gave, as :func:`socket.create_connection` does, until one connects: that
one is tried first from then on (:meth:`Addresses.worked`), so an address that cannot be reached
(an IPv6 one on a network without IPv6, whose every attempt waits out the timeout) costs the
first connection, not every one.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

#: how long looked-up addresses are used before the resolver is asked again
KEEP_SECONDS = 300.0

AddrInfo = tuple[Any, ...]


class _Lookup:
    """One lookup in flight or done: its addresses, or the error it raised."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.addresses: list[AddrInfo] = []
        self.error: Exception | None = None
        self.at = 0.0


class Addresses:
    """Looked-up addresses by (host, port), each looked up once at a time."""

    def __init__(
        self,
        getaddrinfo: Callable[..., list[AddrInfo]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._getaddrinfo = getaddrinfo
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[tuple[str, int], _Lookup] = {}

    def lookup(self, host: str, port: int) -> list[AddrInfo]:
        """The addresses of ``host``:``port`` for a TCP connection (raises what
        :func:`socket.getaddrinfo` raises)."""
        key = (host, port)
        with self._lock:
            entry = self._known.get(key)
            if (
                entry is not None
                and entry.done.is_set()
                and (entry.error is not None or self._clock() - entry.at > KEEP_SECONDS)
            ):
                entry = None  # a failure is asked again; old addresses are refreshed
            mine = entry is None
            if entry is None:
                entry = self._known[key] = _Lookup()
        if mine:
            try:
                entry.addresses = self._ask(host, port)
            except Exception as exc:  # e.g. UnicodeError for a name IDNA refuses: waiters get it
                entry.error = exc
            finally:  # whatever happens, nobody waits forever
                entry.at = self._clock()
                entry.done.set()
        else:
            entry.done.wait()
        if entry.error is not None:
            raise entry.error
        return entry.addresses

    def worked(self, host: str, port: int, sockaddr: Any) -> None:
        """A connection to ``sockaddr`` (an address of ``host``:``port``) was made: later
        connections try it first."""
        with self._lock:
            entry = self._known.get((host, port))
            if entry is None or not entry.done.is_set() or not entry.addresses:
                return
            found = entry.addresses
            if found[0][4] == sockaddr:
                return
            first = [a for a in found if a[4] == sockaddr]
            if first:  # a new list: a connection going through the old one is not disturbed
                entry.addresses = first + [a for a in found if a[4] != sockaddr]

    def _ask(self, host: str, port: int) -> list[AddrInfo]:
        ask = self._getaddrinfo or socket.getaddrinfo
        try:
            return ask(host, port, 0, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno != socket.EAI_AGAIN:
                raise
            return ask(host, port, 0, socket.SOCK_STREAM)  # temporary: once more, at once

    def create_connection(
        self,
        address: tuple[str, int],
        timeout: float | None = None,
        source_address: tuple[str, int] | None = None,
        **_: Any,
    ) -> socket.socket:
        """:func:`socket.create_connection` with the addresses of :meth:`lookup`."""
        host, port = address
        last: OSError | None = None
        for family, kind, proto, _name, sockaddr in self.lookup(host, port):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                if source_address is not None:
                    sock.bind(source_address)
                sock.connect(sockaddr)
            except OSError as exc:
                last = exc
                sock.close()
                continue
            if last is not None:
                self.worked(host, port, sockaddr)
            return sock
        raise last or OSError(f"no address for {host}")


#: the process's addresses: every connection of every client shares them
ADDRESSES = Addresses()


def shared_backend(backend: Any) -> Any:
    """An httpcore network backend that connects with :data:`ADDRESSES` (``backend`` as it is
    when it is not httpcore's standard synchronous one). It hands httpcore the address, not the
    name: TLS still checks the name (httpcore gives the origin's host as the server name)."""
    import httpcore

    if type(backend) is not httpcore.SyncBackend:
        return backend

    class _Backend(httpcore.SyncBackend):
        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore.NetworkStream:
            try:
                found = ADDRESSES.lookup(host, port)
            except OSError as exc:
                raise httpcore.ConnectError(str(exc)) from exc
            last: Exception | None = None
            for *_, sockaddr in found:
                try:
                    stream = super().connect_tcp(
                        sockaddr[0], port, timeout, local_address, socket_options
                    )
                except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                    last = exc
                    continue
                if last is not None:
                    ADDRESSES.worked(host, port, sockaddr)
                return stream
            raise last or httpcore.ConnectError(f"no address for {host}")

    return _Backend()
