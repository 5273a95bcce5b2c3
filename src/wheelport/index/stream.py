"""Downloads and index pages over the standard library's ``http.client``.

httpx hands a body up through h11, httpcore and its own chunker, several Python calls and a copy
for every TLS record (16 KiB): on a fast link a download costs about three times the CPU of
``http.client``'s ``readinto``, which reads each record straight into one reused buffer, and the
interpreter lock changes hands that much more often. So a file's body is read here, when the
request is plain: ``http``/``https``, no proxy for its host (the same environment variables
httpx reads), no login in the URL, and the client is :class:`~wheelport.index.http.Http`'s own.

Only a ``200`` with an identity body is served here (and the statuses a caller says it reads
itself: a page's ``304``, ``404``, a range request's ``206``). A redirect, another status, any other encoding, or a
connection that cannot be made returns ``None``, and the caller asks again through httpx, whose
handling (redirects, retries, messages) stays the one rule for everything else. Errors while
the body is read are :class:`BodyError` (the caller asks again). Index pages are read here too:
the 18 MB of a 4-target sync's 31 pages took half the CPU they took through httpx.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import threading
import urllib.request
from collections.abc import Container, Iterator, Mapping
from urllib.parse import urlsplit

from wheelport.index import dns

#: bytes read per chunk (the buffered reader fills them from as many TLS records as it takes)
READ_BYTES = 256 << 10
#: idle connections kept per origin
KEEP_IDLE = 16


class BodyError(Exception):
    """The connection failed while the body was read (reset, cut short, timed out): a
    message, or the socket's error in ``cause`` for the caller's ``transport_reason``."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class Body:
    """A response whose body is read in chunks: memoryviews of one reused buffer, each valid
    until the next is read. ``status_code``, ``headers`` (case-insensitive ``get``) and ``url``
    as httpx's response has them. ``close()`` gives a fully read connection back to the pool."""

    def __init__(
        self, pool: Streams, key: tuple[str, str, int], conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse, url: str,
    ) -> None:  # fmt: skip
        self._pool, self._key, self._resp = pool, key, resp
        self._conn: http.client.HTTPConnection | None = conn
        self._done = False
        self.status_code = resp.status
        self.headers = resp.msg
        self.url = url

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[memoryview]:
        """The body in chunks of up to :data:`READ_BYTES` (``chunk_size``, httpx's, is not used)."""
        buf = memoryview(bytearray(READ_BYTES))
        read = self._resp.readinto
        while True:
            try:
                n = read(buf)
            except http.client.IncompleteRead as exc:
                raise BodyError(
                    f"peer closed connection after {len(exc.partial)} bytes of a chunk"
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                raise BodyError(str(exc), exc) from None
            if not n:
                missing = self._resp.length
                if missing:  # http.client ends a body cut short quietly: say it
                    raise BodyError(
                        f"peer closed connection with {missing} bytes of the body unsent"
                    )
                self._done = True
                return
            yield buf[:n]

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and not self._resp.will_close:
            self._resp.close()
            self._pool.put(self._key, conn)
        else:
            conn.close()


class Streams:
    """Kept-alive ``http.client`` connections by origin, shared by the download threads."""

    def __init__(self, context: ssl.SSLContext, timeout: float, user_agent: str) -> None:
        self.context, self.timeout, self.user_agent = context, timeout, user_agent
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._proxies = urllib.request.getproxies()

    def open(
        self,
        url: str,
        login: tuple[str, str] | None,
        headers: Mapping[str, str] | None = None,
        statuses: Container[int] = (200,),
    ) -> Body | None:
        """The response of a plain GET of ``url`` (``headers`` added) when its status is one
        of ``statuses``; None when httpx must handle it."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.username or parts.password:
            return None
        host = parts.hostname or ""
        if not host or self._proxied(parts.scheme, host):
            return None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        key = (parts.scheme, host, port)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        sent = {**(headers or {}), "User-Agent": self.user_agent, "Accept-Encoding": "identity"}
        if login:
            token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode("ascii")
            sent["Authorization"] = f"Basic {token}"
        conn = self._get(key)
        reused = conn is not None
        while True:
            if conn is None:
                conn = self._connect(key)
            try:
                conn.request("GET", target, headers=sent)
                resp = conn.getresponse()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                if not reused:  # a new connection failed: httpx tries, retries and says why
                    return None
                conn, reused = None, False  # a kept-alive one the server closed: one new try
        encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
        if resp.status not in statuses or encoding != "identity":
            conn.close()
            return None
        return Body(self, key, conn, resp, url)

    def put(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < KEEP_IDLE:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()

    def _get(self, key: tuple[str, str, int]) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def _connect(self, key: tuple[str, str, int]) -> http.client.HTTPConnection:
        """A new connection (made on its first request) to the run's looked-up addresses
        (:mod:`.dns`); TLS checks the host name."""
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=self.context
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        conn._create_connection = dns.ADDRESSES.create_connection  # type: ignore[attr-defined]
        return conn

    def _proxied(self, scheme: str, host: str) -> bool:
        if not (self._proxies.get(scheme) or self._proxies.get("all")):
            return False
        return not urllib.request.proxy_bypass(host)
