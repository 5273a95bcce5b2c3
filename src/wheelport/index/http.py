"""HTTP for the index client: GETs with retries, and index pages through the user's cache.

:class:`Http` sends every request with the login :class:`~wheelport.credentials.Logins` gives
for its URL, retries connection errors, 429 and 5xx with exponential backoff, and reads index
pages through the HTTP cache in the user cache directory: a page fresh within its ``max-age`` is
not requested again, a stale one is revalidated with ``ETag``/``Last-Modified``. A page is read
up to :func:`max_page_bytes` (a hostile index could send gigabytes). httpx is imported when the
first request is made: a run that needs no network never loads it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Container, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelport.cache import Cache
from wheelport.credentials import Logins, redact
from wheelport.errors import IndexAccessError, UsageError, WheelportError
from wheelport.wheelhouse import atomic_target, human_size

if TYPE_CHECKING:
    import ssl

    import httpx

    from wheelport.index.stream import Body, Streams


log = logging.getLogger(__name__)

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
ACCEPT = f"{JSON_V1}, {HTML_V1};q=0.2, text/html;q=0.01"
RETRY_STATUS = {429, 500, 502, 503, 504}
#: statuses a GET of a page or metadata file reads itself (others go to httpx: redirects,
#: retries and the messages of refusals stay its)
_READ_HERE = frozenset({200, 304, 404})
MAX_PAGE_AGE = 600


def leave_out_httpx_cli() -> None:
    """Keep httpx from importing its command-line client in this process.

    ``import httpx`` imports ``httpx._main`` when its imports are installed, as they are beside
    wheelport: click, rich's console, progress, syntax and table, pygments' lexers. That is
    ~40 ms of a core, before the first request, in both of a sync's processes, for a ``main``
    they never call. A program of wheelport's own (the CLI, the download process) calls this
    first: the module is marked absent, and httpx's ``__init__`` takes its ``ImportError``
    path (a stub ``main``). Nothing is done once httpx is imported, nor for a program that
    imports wheelport as a library."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def tls_context() -> ssl.SSLContext:
    """The TLS settings of httpx's default (``verify=True``, ``trust_env``), made without
    importing httpx (~35 ms of a core in each of a sync's processes, which read pages,
    metadata and files over ``http.client``): the CA bundle ``SSL_CERT_FILE`` names, else the
    directory ``SSL_CERT_DIR`` names, else certifi's (httpx's own dependency). The httpx
    client is handed this context too: one rule for every connection."""
    import ssl

    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def httpx_errors(name: str) -> tuple[type[BaseException], ...]:
    """httpx's exception class ``name`` (e.g. ``TransportError``) once httpx is loaded, for an
    ``except`` clause; none before: a request that never went through httpx raises none of
    its errors, and a run that needs no httpx does not import it to name them."""
    httpx = sys.modules.get("httpx")
    found = getattr(httpx, name, None) if httpx is not None else None
    return (found,) if isinstance(found, type) and issubclass(found, BaseException) else ()


def transport_errors() -> tuple[type[BaseException], ...]:
    """The errors of a connection that failed while a response was read: a body cut short on
    an ``http.client`` connection (:class:`~wheelport.index.stream.BodyError`), httpx's
    ``TransportError`` (once loaded: :func:`httpx_errors`). Called in the ``except`` clause,
    after the request, which may have loaded httpx."""
    from wheelport.index.stream import BodyError

    return (BodyError, *httpx_errors("TransportError"))


#: the biggest project page read (PyPI's largest are a few MB); the environment can raise it
MAX_PAGE_BYTES = 32 << 20
MAX_PAGE_ENV = "WHEELPORT_MAX_PAGE_SIZE"


def max_page_bytes() -> int:
    """The page size limit: ``$WHEELPORT_MAX_PAGE_SIZE`` (bytes) when set, else 32 MiB."""
    raw = os.environ.get(MAX_PAGE_ENV, "")
    try:
        return int(raw) if raw else MAX_PAGE_BYTES
    except ValueError:
        raise UsageError(
            f"{MAX_PAGE_ENV}={raw!r} is not a number of bytes", hint=f"unset {MAX_PAGE_ENV}"
        ) from None


class Http:
    """The index client's HTTP: one lazily made ``httpx.Client`` (or the one handed in),
    retries, logins and the page cache. ``stats`` counts requests, pages served from the
    cache and pages revalidated (the client's own counts, shared)."""

    def __init__(
        self,
        logins: Logins,
        cache: Cache,
        stats: dict[str, int],
        *,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
        concurrency: int = 16,
        retries: int = 3,
        backoff: float = 0.5,
        refresh: bool = False,
    ) -> None:
        self.logins = logins
        self.cache = cache
        self.stats = stats
        self._own = http is None
        self._client = http
        self._options = (timeout, concurrency)
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        #: the file downloads' own connections, made on the first download
        self._streams: Streams | None = None
        self.retries = retries
        self.backoff = backoff
        #: revalidate every page even when the cache says it is fresh
        self.refresh = refresh
        #: the threads writing this object's page cache entries (:meth:`_keep_page`)
        self._writers: list[threading.Thread] = []

    @property
    def timeout(self) -> float:
        return self._options[0]

    @property
    def owns_transport(self) -> bool:
        """Whether the HTTP client is this object's own (not one handed in, e.g. a test's)."""
        return self._own

    @property
    def client(self) -> httpx.Client:
        """The HTTP client, made on first use (a run that finds everything in place — a no-op
        sync — never pays for TLS set-up)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import httpx  # here: a run that needs no network never imports it

                    timeout, concurrency = self._options
                    client = httpx.Client(
                        verify=self._context(),
                        timeout=timeout,
                        follow_redirects=True,
                        limits=httpx.Limits(
                            max_connections=concurrency, max_keepalive_connections=concurrency
                        ),
                        headers={"User-Agent": "wheelport"},
                    )
                    _share_addresses(client)
                    self._client = client
        return self._client

    def _context(self) -> ssl.SSLContext:
        """The TLS settings (:func:`tls_context`), made once and shared by httpx and the
        ``http.client`` connections."""
        if self._ssl is None:
            self._ssl = tls_context()
        return self._ssl

    def close(self) -> None:
        """Close the HTTP client when it is this object's own (and was made), once every page
        cache entry being written is on disk."""
        with self._lock:
            writers, self._writers = self._writers, []
        for t in writers:
            t.join()
        if self._own and self._client is not None:
            self._client.close()
        if self._streams is not None:
            self._streams.close()

    def download(self, url: str) -> httpx.Response | Body:
        """A file's response, its body to be streamed: read with ``http.client`` when the
        request is plain (see :mod:`wheelport.index.stream`), else through httpx."""
        return self.stream(url)

    def stream(
        self, url: str, headers: dict[str, str] | None = None, statuses: Iterable[int] = (200,)
    ) -> httpx.Response | Body:
        """A streamed GET: over this object's ``http.client`` connections when the request is
        plain and answered with one of ``statuses`` (:meth:`_plain`), else through httpx
        (:meth:`request`: redirects, retries, messages). A retryable status (429, 5xx) from
        the first counts as httpx's first attempt: a failing index is asked as often either
        way."""
        resp = self._plain(url, headers, {*statuses, *RETRY_STATUS})
        if resp is None:
            return self.request(url, headers, stream=True)
        if resp.status_code in RETRY_STATUS and self.retries:
            resp.close()
            return self.request(url, headers, stream=True, tried=1)
        return resp

    def _plain(
        self, url: str, headers: dict[str, str] | None = None, statuses: Container[int] = (200,)
    ) -> Body | None:
        """The response of a GET over this object's own ``http.client`` connections when the
        request is plain and answered with one of ``statuses`` (see
        :mod:`wheelport.index.stream`); None: ask httpx."""
        if not self._own:
            return None
        if self._streams is None:
            from wheelport.index.stream import Streams

            with self._lock:
                if self._streams is None:
                    self._streams = Streams(self._context(), self._options[0], "wheelport")
        body = self._streams.open(url, self.logins.for_url(url), headers, statuses)
        if body is not None:
            self.stats["requests"] += 1
        return body

    def request(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        stream: bool = False,
        tried: int = 0,
    ) -> httpx.Response:
        """GET with retries on connection errors, 429 and 5xx (exponential backoff; ``tried``:
        attempts already made another way)."""
        import httpx

        auth = self.logins.for_url(url)
        last: Exception | None = None
        for attempt in range(tried, self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                self.stats["requests"] += 1
                req = self.client.build_request("GET", url, headers=headers)
                resp = self.client.send(
                    req, auth=auth if auth else httpx.USE_CLIENT_DEFAULT, stream=stream
                )
            except httpx.TransportError as exc:
                last = exc
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.retries:
                resp.close()
                last = None
                continue
            return resp
        reason = transport_reason(last) if last else "server error"
        raise IndexAccessError(
            f"cannot reach {redact(url)}: {reason}",
            hint="check --index-url and the network",
            path=redact(url),
        )

    def get_page(self, url: str) -> tuple[bytes, str, str]:
        """(body, content type, final URL) of an index page, through the HTTP cache."""
        cache_file = self.cache.http_path(f"page:{url}")
        cached: dict[str, Any] | None = None
        cached_body = b""
        with _pending_lock:
            entry = _pending.get(cache_file)
        entry = entry or _read_page_entry(cache_file)
        if entry is not None:
            cached, cached_body = dict(entry[0]), entry[1]  # (a pending one is being written)
        now = time.time()
        if cached and not self.refresh and now - cached["fetched"] < cached.get("max_age", 0):
            self.stats["cached"] += 1
            return cached_body, cached["content_type"], cached["url"]
        headers = {"Accept": ACCEPT}
        if cached:
            if cached.get("etag"):
                headers["If-None-Match"] = cached["etag"]
            if cached.get("last_modified"):
                headers["If-Modified-Since"] = cached["last_modified"]
        resp, body = self._fetch_page(url, headers)
        if resp.status_code == 304 and cached:
            self.stats["revalidated"] += 1
            cached["fetched"] = now
            cached["max_age"] = _max_age(resp.headers)
            self._keep_page(cache_file, cached, cached_body)
            return cached_body, cached["content_type"], cached["url"]
        if resp.status_code == 404:
            return b"", "404", url
        if resp.status_code in (401, 403):
            raise IndexAccessError(
                f"{redact(url)} refused access ({resp.status_code})",
                hint="give credentials in the index URL or ~/.netrc",
                path=redact(url),
            )
        if resp.status_code >= 400:
            raise IndexAccessError(
                f"{redact(url)} answered HTTP {resp.status_code}", path=redact(url)
            )
        ctype = resp.headers.get("content-type", "text/html").split(";")[0].strip()
        final = str(resp.url)
        facts = {
            "url": final,
            "content_type": ctype,
            "etag": resp.headers.get("etag"),
            "last_modified": resp.headers.get("last-modified"),
            "fetched": now,
            "max_age": _max_age(resp.headers),
        }
        self._keep_page(cache_file, facts, body)
        return body, ctype, final

    def _keep_page(self, path: Path, facts: dict[str, Any], body: bytes) -> None:
        """Write a page's cache entry on a thread of its own, while the page is decoded: the
        write of a page of megabytes is mostly kernel time (up to 50 ms of a 4-target sync's
        pages, each before its page could be decoded, on the resolution's path). The entries
        are on disk when the client closes (:meth:`close` waits) or the interpreter exits
        (the threads are not daemons). One that cannot be written is left out with a warning:
        the page is asked again next time."""
        with _pending_lock:
            _pending[path] = (facts, body)
        with self._lock:  # started before it is listed: close() may join it at once
            writer = threading.Thread(target=self._write_page, args=(path, facts, body),
                                      name="wheelport-page-cache")  # fmt: skip
            writer.start()
            self._writers.append(writer)

    def _write_page(self, path: Path, facts: dict[str, Any], body: bytes) -> None:
        try:
            _write_page_entry(path, facts, body)
        except (OSError, WheelportError) as exc:
            log.warning("the page %s was not kept in the cache: %s", redact(facts["url"]), exc)
        finally:
            with _pending_lock:
                if _pending.get(path, (None,))[0] is facts:
                    del _pending[path]

    def _fetch_page(self, url: str, headers: dict[str, str]) -> tuple[httpx.Response | Body, bytes]:
        """The response and body of a page, read up to :func:`max_page_bytes` (a bigger page is
        refused before it is held in memory: a hostile index could send gigabytes)."""
        limit = max_page_bytes()
        resp, body = self.get_at_most(url, limit, headers)
        if body is None:
            raise IndexAccessError(
                f"{redact(url)} is larger than {human_size(limit)}, the limit for one project page",
                hint=f"raise it with {MAX_PAGE_ENV}=BYTES if this index is trusted",
                path=redact(url),
            )
        return resp, body

    def get_at_most(
        self, url: str, most: int, headers: dict[str, str] | None = None
    ) -> tuple[httpx.Response | Body, bytes | None]:
        """The (closed) response of a GET and its body, read no further than ``most`` bytes
        (None: it says or turns out to be longer; ``b""`` for a status other than 200). Read
        with ``http.client`` when the request is plain (a ``200``, ``304`` or ``404``: half
        the CPU of httpx for a page), else through httpx. A body cut short is asked for
        again, as a failed request is (:meth:`request`); when every attempt was,
        :class:`~wheelport.errors.IndexAccessError` says so."""
        from wheelport.index.stream import BodyError

        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            resp = self.stream(url, headers, _READ_HERE)
            try:
                if resp.status_code != 200:
                    with contextlib.suppress(*transport_errors()):
                        read_at_most(resp, 1 << 16)  # a short body: the connection is kept
                    return resp, b""  # (one cut short is no reason to ask again)
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > most:
                    return resp, None
                return resp, read_at_most(resp, most)
            except BodyError as exc:
                last = exc.cause or exc
            except httpx_errors("TransportError") as exc:
                last = exc
            finally:
                resp.close()
        raise IndexAccessError(
            f"cannot read {redact(url)}: {transport_reason(last) if last else 'cut short'}",
            hint="check --index-url and the network",
            path=redact(url),
        )


def read_at_most(resp: Any, most: int) -> bytes | None:
    """The body of a streamed response, read no further than ``most`` bytes (None: it has
    more; a hostile server could send gigabytes)."""
    chunks: list[bytes] = []
    got = 0
    for chunk in resp.iter_bytes(1 << 20):
        got += len(chunk)
        if got > most:
            return None
        chunks.append(bytes(chunk))  # (http.client's chunks are views of one reused buffer)
    return b"".join(chunks)


#: a cached page is one line of JSON (URL, validators, freshness) then the body's bytes as
#: served: no escaping of a multi-megabyte page into a JSON string and back
_PAGE_ENTRY_FORMAT = 2


def _share_addresses(client: httpx.Client) -> None:
    """Direct connections of ``client`` use the run's looked-up addresses (:mod:`.dns`): each
    host is asked of the resolver once, not once per connection. httpx has no option for it
    (and a transport handed to it would turn off the proxies of the environment), so the
    network backend of its default connection pool is replaced — left as it is if httpx's
    insides change; a proxy's connections are httpx's own."""
    from wheelport.index.dns import shared_backend

    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if pool is not None and hasattr(pool, "_network_backend"):
        pool._network_backend = shared_backend(pool._network_backend)


#: page cache entries being written (:meth:`Http._keep_page`), by path: a page asked again in
#: this process before its entry is on disk (by any client) is answered from here
_pending: dict[Path, tuple[dict[str, Any], bytes]] = {}
_pending_lock = threading.Lock()


def _read_page_entry(path: Path) -> tuple[dict[str, Any], bytes] | None:
    """(the facts, the body) of a cached page; None when there is none or it is unreadable
    (another format included: it is fetched again and rewritten)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head, sep, body = data.partition(b"\n")
    try:
        facts = json.loads(head)
    except ValueError:
        return None
    if not sep or not isinstance(facts, dict) or facts.get("format") != _PAGE_ENTRY_FORMAT:
        return None
    if not isinstance(facts.get("fetched"), int | float) or not isinstance(facts.get("url"), str):
        return None
    if not isinstance(facts.get("content_type"), str):
        return None
    return facts, body


def _write_page_entry(path: Path, facts: dict[str, Any], body: bytes) -> None:
    head = json.dumps({**facts, "format": _PAGE_ENTRY_FORMAT}).encode() + b"\n"
    with atomic_target(path, "wb", durable=False, needed=len(head) + len(body)) as f:
        f.write(head)  # two writes: no copy of a page of megabytes joined to its line
        f.write(body)


def transport_reason(exc: BaseException) -> str:
    """A transport error as one short phrase (``connection refused``, ``timed out (…)``)."""
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    if "reset by peer" in text.lower():
        return "connection reset by the server"
    if isinstance(exc, (TimeoutError, *httpx_errors("TimeoutException"))):  # a socket's, httpx's
        return f"timed out ({text.splitlines()[0]})" if "timed out" not in text else text
    return text.splitlines()[0]


def _max_age(headers: Any) -> int:
    """How long a page stays fresh: its ``max-age`` (capped), or — for a response with no caching
    headers at all — PyPI's own 600 s, as HTTP allows heuristic freshness (RFC 9111 §4.2.2)."""
    cc = headers.get("cache-control", "")
    if "no-store" in cc or "no-cache" in cc:
        return 0
    m = re.search(r"max-age=(\d+)", cc)
    if m:
        return min(int(m[1]), MAX_PAGE_AGE)
    if (
        not cc
        and "etag" not in headers
        and "last-modified" not in headers
        and "expires" not in headers
    ):
        return MAX_PAGE_AGE
    return 0
