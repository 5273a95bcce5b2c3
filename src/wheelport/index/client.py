"""Index client: PEP 691 JSON with PEP 503 HTML fallback, PEP 592/658/700/714, several indexes.

The client answers two questions for the resolver — which files does a project have, and
what is a file's core metadata — and downloads files into the content-addressed cache. It is
made of four parts, each its own module:

- HTTP (:mod:`wheelport.index.http`): an injected or lazily made ``httpx.Client``, retries,
  and index pages through the user cache (fresh pages within their ``max-age`` are not
  requested again; stale ones are revalidated with ``ETag``/``Last-Modified``), each read up
  to the page size limit;
- page parsing (:mod:`wheelport.index.parse`), which checks every link's scheme;
- the metadata-source strategy list (:mod:`wheelport.index.sources`);
- credentials (:mod:`wheelport.credentials`): from the index URL or the netrc file
  (``$NETRC``, else ``~/.netrc``), never printed or written — every URL shown to a user goes
  through :func:`~wheelport.credentials.redact`.

Here: the client that ties them (projects, metadata, downloads) and the verified download.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from wheelport.bootstrap import escape_reason
from wheelport.cache import Cache
from wheelport.credentials import Logins, redact
from wheelport.errors import IndexAccessError, JobError
from wheelport.index.http import JSON_V1, Http, transport_errors, transport_reason
from wheelport.wheelhouse import (
    atomic_write_bytes,
    disk_full,
    is_disk_full,
    partial_file,
    release_partial,
)

if TYPE_CHECKING:
    import httpx

    from wheelport.index.models import DistFile
    from wheelport.index.parse import ProjectStatus, VersionFiles
    from wheelport.index.sources import CoreMetadata, Offload, SdistMetadataBuilder
    from wheelport.index.stream import Body

log = logging.getLogger(__name__)

_E = TypeVar("_E")


class IndexClient:
    """Reads projects and metadata from one or more indexes (first index that has a project wins).

    Thread-safe: the resolver runs one thread per target and prefetches on a pool.
    """

    def __init__(
        self,
        index_urls: Iterable[str],
        *,
        cache: Cache | None = None,
        http: httpx.Client | None = None,
        concurrency: int = 16,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        sdist_metadata: SdistMetadataBuilder | None = None,
        refresh: bool = False,
        exclude_newer: str | None = None,
    ) -> None:
        self.logins = Logins()
        #: the index URLs as given (logins included): what a read-ahead process is handed
        self._given_urls = [raw.rstrip("/") + "/" for raw in index_urls]
        self.index_urls: list[str] = [self.logins.add_index(u) for u in self._given_urls]
        self.cache = cache or Cache.default()
        self.cache.reclaim()
        self.stats = {"requests": 0, "cached": 0, "revalidated": 0}
        #: who reads metadata over the network (PEP 658 files, range requests) when not this
        #: process: a sync's read-ahead download process (:class:`wheelport.fetch.Prefetcher`)
        self.offload: Offload | None = None
        #: HTTP, with retries and the page cache (``refresh``: revalidate every page)
        self.web = Http(self.logins, self.cache, self.stats, http=http, timeout=timeout,
                        concurrency=concurrency, retries=retries, backoff=backoff,
                        refresh=refresh)  # fmt: skip
        self.pool = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="wheelport-index"
        )
        self._lock = threading.Lock()
        self._pages: dict[str, Future[VersionFiles]] = {}
        self._meta: dict[str, Future[CoreMetadata]] = {}
        self._work: dict[tuple[str, ...], Future[bytes | None]] = {}
        self._sdist_metadata = sdist_metadata
        #: ``--exclude-newer`` (RFC 3339, UTC): files uploaded at or after it, or with no upload
        #: time, are left off every project's files, as if the index did not list them
        self.exclude_newer = exclude_newer
        self._cutoff = None
        if exclude_newer is not None:
            from wheelport.index.parse import upload_instant

            self._cutoff = upload_instant(exclude_newer)
        #: how many files of each project the cutoff left out
        self.left_out: dict[NormalizedName, int] = {}

    @property
    def http(self) -> httpx.Client:
        """The HTTP client, made on first use (a run that finds everything in place — a no-op
        sync — never pays for TLS set-up)."""
        return self.web.client

    @property
    def retries(self) -> int:
        return self.web.retries

    @property
    def backoff(self) -> float:
        return self.web.backoff

    @property
    def timeout(self) -> float:
        return self.web.timeout

    def worker_settings(self) -> dict[str, Any] | None:
        """What a read-ahead download process (:mod:`wheelport.index.worker`) needs to download
        as this client does, logins included (None when this client's transport was handed in:
        another process cannot use it)."""
        if not self.web.owns_transport:
            return None
        return {
            "index_urls": list(self._given_urls),
            "cache": str(self.cache.root.absolute()),
            "timeout": self.timeout,
            "retries": self.web.retries,
            "backoff": self.web.backoff,
        }

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.web.close()

    def __enter__(self) -> IndexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------------
    def _auth_for(self, url: str) -> tuple[str, str] | None:
        return self.logins.for_url(url)

    def stream(
        self, url: str, headers: dict[str, str] | None = None, statuses: Iterable[int] = (200,)
    ) -> httpx.Response | Body:
        """A streamed GET, over ``http.client`` when it is plain (:meth:`Http.stream`)."""
        return self.web.stream(url, headers, statuses)

    def get_at_most(self, url: str, most: int) -> tuple[int, bytes | None]:
        """(status, body) of a GET, the body read no further than ``most`` bytes (None: longer;
        ``b""`` unless 200); a body cut short is asked for again (:meth:`Http.get_at_most`)."""
        resp, body = self.web.get_at_most(url, most)
        return resp.status_code, body

    # -- projects ----------------------------------------------------------------------------
    def project_files(self, name: str) -> list[DistFile]:
        """All files of a project on the first index that has it ([] when none has it)."""
        return self.prefetch_project(name).result().files()

    def versions_of(self, name: str) -> VersionFiles:
        """A project's files grouped by version (loaded once, shared by every target)."""
        return self.prefetch_project(name).result()

    def prefetch_project(self, name: str) -> Future[VersionFiles]:
        key = canonicalize_name(name)
        fut = self._pages.get(key)  # asked before (most calls): no lock taken
        if fut is not None:
            return fut
        with self._lock:
            fut = self._pages.get(key)
            if fut is None:
                fut = self.pool.submit(self._load_project, key)
                self._pages[key] = fut
        return fut

    def _in_time(
        self, name: NormalizedName, entries: list[_E], uploaded: Callable[[_E], Any]
    ) -> list[_E]:
        """``entries`` uploaded before the ``--exclude-newer`` cutoff (all of them without one);
        an entry with no upload time, or one that does not parse, is left out (as uv does)."""
        cutoff = self._cutoff
        if cutoff is None:
            return entries
        from wheelport.index.parse import upload_instant

        kept = []
        for entry in entries:
            instant = upload_instant(uploaded(entry))
            if instant is not None and instant < cutoff:
                kept.append(entry)
        if len(kept) < len(entries):
            self.left_out[name] = len(entries) - len(kept)
        return kept

    def _load_project(self, name: NormalizedName) -> VersionFiles:
        from wheelport.index.parse import VersionFiles, parse_html_project, read_json_page

        for index in self.index_urls:
            url = f"{index}{name}/"
            if url.startswith("file://"):
                files = self._load_file_index(index, name)
                if files is None:
                    continue
                return VersionFiles.of(self._in_time(name, files, lambda f: f.upload_time))
            body, ctype, final = self.web.get_page(url)
            if ctype == "404":
                continue
            if ctype == JSON_V1 or ctype.endswith("+json") or ctype == "application/json":
                try:
                    rows, status = read_json_page(body, final)
                except ValueError as exc:
                    raise IndexAccessError(
                        f"{redact(final)} is not a valid PEP 691 page: {exc}",
                        hint="check --index-url",
                        package=name,
                        path=redact(final),
                    ) from None
                del body  # the rows keep what is read of it
                rows = self._in_time(name, rows, lambda row: row[7])
                found = VersionFiles.of_rows(rows, final, name, index)
                found.status = status
                return found
            files, status = parse_html_project(body.decode("utf-8", "replace"), final, name, index)
            found = VersionFiles.of(self._in_time(name, files, lambda f: f.upload_time))
            found.status = status
            return found
        return VersionFiles({}, lambda f: None)

    def project_statuses(self) -> dict[str, ProjectStatus]:
        """The PEP 792 statuses other than ``active`` of every project loaded so far."""
        with self._lock:
            pages = dict(self._pages)
        out = {}
        for name, fut in pages.items():
            # a page queued but never needed is cancelled when the client closes
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                status = fut.result().status
                if status is not None and status.notable:
                    out[name] = status
        return out

    def _load_file_index(self, index: str, name: str) -> list[DistFile] | None:
        simple = Path(unquote(urlsplit(index).path))
        page = simple / name / "index.html"
        if not page.exists():
            return None
        from wheelport.index.parse import parse_html_page

        files = parse_html_page(page.read_text(encoding="utf-8"), page.as_uri(), name, index)
        # a static index names files of its own tree (a wheelhouse: ../../wheels/…); a link
        # out of it (../../../../etc/…, an absolute file URL, a symlink) is refused
        root = simple.parent
        for f in files:
            if not f.url.startswith("file://"):
                continue
            target = Path(unquote(urlsplit(f.url).path))
            rel = os.path.relpath(target, root)
            why = escape_reason(str(root), rel.replace(os.sep, "/"))
            if why is not None:
                raise IndexAccessError(
                    f"{page}: link to {f.filename} leaves the index's tree {root} ({why})",
                    hint="the index page was edited by hand or is hostile; rebuild it with "
                    "'wheelport index'",
                    path=str(page),
                )
        return files

    # -- metadata ----------------------------------------------------------------------------
    def metadata(
        self, file: DistFile, *, on_build: Callable[[str], None] | None = None
    ) -> CoreMetadata:
        """Core metadata of a candidate (the version ``file`` belongs to), from the cheapest
        source that has it (:data:`wheelport.index.sources.SOURCES` gives the order).
        ``on_build`` is told when an sdist's metadata has to be built (PEP 517)."""
        return self.prefetch_metadata(file, on_build=on_build).result()

    def prefetch_metadata(
        self, file: DistFile, *, on_build: Callable[[str], None] | None = None
    ) -> Future[CoreMetadata]:
        fut = self._meta.get(file.url)  # asked before (most calls): no lock taken
        if fut is not None:
            return fut
        with self._lock:
            fut = self._meta.get(file.url)
            if fut is None:
                from wheelport.index.sources import read_metadata

                fut = self.pool.submit(
                    read_metadata, self, file, build=self._sdist_metadata, on_build=on_build
                )
                self._meta[file.url] = fut
        return fut

    def once(self, key: tuple[str, ...], work: Callable[[], bytes | None]) -> bytes | None:
        """Run ``work`` once per key for the whole client; concurrent callers wait for the first
        (whose result, or exception, they share). Runs in the caller's thread: no pool slot is
        held while waiting, so nested use cannot deadlock."""
        with self._lock:
            fut = self._work.get(key)
            owner = fut is None
            if fut is None:
                fut = Future()
                self._work[key] = fut
        if owner:
            try:
                fut.set_result(work())
            except BaseException as exc:
                fut.set_exception(exc)
        return fut.result()

    # -- files -------------------------------------------------------------------------------
    def download(self, file: DistFile, *, progress: Callable[[int], None] | None = None) -> Path:
        """The file in the content-addressed cache, downloaded and verified when missing."""
        if file.sha256:
            dest = self.cache.verified(file.sha256)  # re-hashed; a corrupt entry is evicted
            if dest is not None:
                return dest
        return download_verified(
            self,
            file.url,
            file.sha256,
            file.size,
            self.cache,
            progress=progress,
            label=file.filename,
        )


def download_verified(
    client: IndexClient,
    url: str,
    sha256: str | None,
    size: int | None,
    cache: Cache,
    *,
    progress: Callable[[int], None] | None = None,
    label: str = "",
) -> Path:
    """Download ``url`` to a temporary file, check size and sha256, then move it into the cache."""
    from wheelport.errors import FetchError

    label = label or url.rsplit("/", 1)[-1]
    if url.startswith("file://"):
        src = Path(unquote(urlsplit(url).path))
        resp_bytes = src.read_bytes()
        digest = hashlib.sha256(resp_bytes).hexdigest()
        if sha256 and digest != sha256:
            raise FetchError(
                f"{label}: sha256 mismatch for {url}: expected {sha256}, got {digest}",
                path=label,
            )
        dest = cache.artifact_path(digest)
        if not dest.exists():
            atomic_write_bytes(dest, resp_bytes)
        return dest
    if sha256:  # one download per file in this process: a second caller waits and shares it
        with inflight(sha256):
            done = cache.verified(sha256)
            if done is not None:
                return done
            known = known_corrupt(url, sha256)
            if known is not None:  # this index serves other bytes: asked twice already
                raise known
            try:
                return _download_retried(client, url, sha256, size, cache, progress, label)
            except _Corrupt as exc:
                _corrupt[url, sha256] = exc.error
                raise exc.error from None
    try:
        return _download_retried(client, url, sha256, size, cache, progress, label)
    except _Corrupt as exc:
        raise exc.error from None


#: sha256 -> the lock held while this process downloads that file (prefetch and fetch share it)
_inflight: dict[str, threading.Lock] = {}
_inflight_lock = threading.Lock()


def inflight(sha256: str) -> threading.Lock:
    """The lock held while this process downloads the file ``sha256`` names (a read-ahead
    process's download holds it too: a fetch of that file waits and then finds it cached)."""
    with _inflight_lock:
        return _inflight.setdefault(sha256, threading.Lock())


#: (URL, sha256) -> the error of a file that came back with other bytes twice in this process
_corrupt: dict[tuple[str, str], JobError] = {}


def known_corrupt(url: str, sha256: str) -> JobError | None:
    """The error of a file this process found served with other bytes twice (else None)."""
    return _corrupt.get((url, sha256))


def found_corrupt(url: str, sha256: str, error: JobError) -> None:
    """Take another process's word (the read-ahead one's) that the index serves other bytes
    than it lists for this file: a download here fails at once with ``error``."""
    _corrupt.setdefault((url, sha256), error)


class _Corrupt(Exception):
    """The index served other bytes than it lists, twice: asking again will not help."""

    def __init__(self, error: JobError) -> None:
        super().__init__(str(error))
        self.error = error


def _download_retried(
    client: IndexClient,
    url: str,
    sha256: str | None,
    size: int | None,
    cache: Cache,
    progress: Callable[[int], None] | None,
    label: str,
) -> Path:
    # A body cut short (reset, truncated, timed out) is retried like a failed request; bytes
    # that do not match the advertised sha256 once more (a proxy may have mangled them), then
    # the index is taken at its word: it serves different bytes than it advertises.
    attempts = client.retries + 1
    corrupt = 0
    for attempt in range(attempts):
        if attempt:
            time.sleep(client.backoff * (2 ** (attempt - 1)))
        try:
            return _download_once(client, url, sha256, size, cache, progress, label)
        except _Retryable as exc:
            corrupt += exc.corrupt
            if corrupt > 1:
                raise _Corrupt(exc.error) from None
            if attempt + 1 >= attempts:
                raise exc.error from None
            log.info("%s: %s; retrying", label, exc.error.message)
    raise AssertionError("unreachable")  # pragma: no cover


class _Retryable(Exception):
    """A download attempt that failed in a way another attempt may not."""

    def __init__(self, error: JobError, *, corrupt: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.corrupt = corrupt


def _download_once(
    client: IndexClient,
    url: str,
    sha256: str | None,
    size: int | None,
    cache: Cache,
    progress: Callable[[int], None] | None,
    label: str,
) -> Path:
    from wheelport.errors import FetchError
    from wheelport.index.stream import BodyError

    tmp_dir = cache.partial_dir()
    h = hashlib.sha256()
    total = 0
    fd, tmp_name = partial_file(tmp_dir)
    sink = os.fdopen(fd, "wb")  # owns fd from here on: never close the number twice
    try:
        resp = client.web.download(url)
        try:
            if resp.status_code != 200:
                raise FetchError(
                    f"{label}: download failed with HTTP {resp.status_code} from {redact(url)}",
                    path=label,
                )
            over = False
            with sink as f:
                for chunk in resp.iter_bytes(1 << 20):
                    if size is not None and total + len(chunk) > size:
                        over = True  # more than the index lists: nothing more is written
                        break
                    f.write(chunk)
                    h.update(chunk)
                    total += len(chunk)
                    if progress:
                        progress(len(chunk))
        finally:
            resp.close()
        if size is not None and (over or total != size):
            got = f"more than {size}" if over else str(total)
            raise _Retryable(
                FetchError(
                    f"{label}: size mismatch for {redact(url)}: expected {size} bytes, got {got}",
                    path=label,
                )
            )
        digest = h.hexdigest()
        if sha256 and digest != sha256:
            raise _Retryable(
                FetchError(
                    f"{label}: sha256 mismatch for {redact(url)}: expected {sha256}, got {digest}",
                    hint="the index served different bytes than it advertises; nothing was kept",
                    path=label,
                ),
                corrupt=True,
            )
        dest = cache.artifact_path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_name, dest)
        cache.remember(dest, digest, downloaded=True)  # hashed as it was written: not read again
        return dest
    except transport_errors() as exc:
        cause = exc.cause if isinstance(exc, BodyError) else exc
        reason = transport_reason(cause) if cause is not None else str(exc)
        raise _Retryable(
            FetchError(f"{label}: download from {redact(url)} failed: {reason}", path=label)
        ) from None
    except _Retryable:
        if progress and total:
            progress(-total)  # the next attempt starts from zero
        raise
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(tmp_name, size) from None
        raise
    finally:
        sink.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        release_partial(tmp_name)


__all__ = ["IndexClient", "download_verified", "redact"]
