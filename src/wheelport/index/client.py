"""Index client: PEP 691 JSON with PEP 503 HTML fallback, PEP 592/658/700/714, several indexes.

The client answers two questions for the resolver — which files does a project have, and
what is a file's core metadata — and downloads files into the content-addressed cache.
HTTP is an injected ``httpx.Client``; responses are cached in the user cache directory
(fresh pages within their ``max-age`` are not requested again; stale ones are revalidated
with ``ETag``/``Last-Modified``). Credentials come from the index URL or the netrc file
(``$NETRC``, else ``~/.netrc``) and are never printed or written: every URL shown to a user
goes through :func:`redact`.
"""

from __future__ import annotations

import contextlib
import email.parser
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelport.bootstrap import escape_reason
from wheelport.cache import Cache
from wheelport.credentials import NetrcLogin, netrc_login
from wheelport.errors import IndexAccessError, JobError, UsageError, WheelportError
from wheelport.index.metadata import (
    TAIL_BYTES,
    RangesUnsupported,
    metadata_from_sdist,
    parse_content_range,
    read_metadata_by_ranges,
    same_version,
    wheel_metadata_member,
)
from wheelport.index.models import DistFile, filename_version, make_file
from wheelport.wheelhouse import (
    atomic_write_bytes,
    disk_full,
    human_size,
    is_disk_full,
    partial_file,
    release_partial,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

#: where metadata came from, as a message names it
_SOURCE = {
    "cache": "the metadata cache",
    "pep658": "the index's PEP 658 file",
    "ranges": "the wheel",
    "wheel": "the wheel",
    "build": "a PEP 517 metadata build",
}

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
ACCEPT = f"{JSON_V1}, {HTML_V1};q=0.2, text/html;q=0.01"
RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_PAGE_AGE = 600


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
    """(the URL without ``user:password@``, the (user, password) it carried or None)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    clean = urlunsplit(parts._replace(netloc=host))
    return clean, (parts.username or "", parts.password or "")


def _origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname}:{p.port or (443 if p.scheme == 'https' else 80)}"


@dataclass(frozen=True)
class CoreMetadata:
    """The parts of a distribution's core metadata the resolver needs."""

    name: str
    version: str
    requires_dist: tuple[Requirement, ...]
    requires_python: str | None
    provides_extra: tuple[NormalizedName, ...]
    dynamic: tuple[str, ...]
    metadata_version: str

    @classmethod
    def parse(cls, data: bytes, source: str = "") -> CoreMetadata:
        msg = email.parser.BytesHeaderParser().parsebytes(data)
        reqs = []
        for text in msg.get_all("Requires-Dist") or []:
            try:
                reqs.append(Requirement(str(text)))
            except InvalidRequirement:
                log.warning("%s: ignoring invalid Requires-Dist %r", source, text)
        return cls(
            name=str(msg.get("Name", "")),
            version=str(msg.get("Version", "")),
            requires_dist=tuple(reqs),
            requires_python=(str(msg["Requires-Python"]) if msg.get("Requires-Python") else None),
            provides_extra=tuple(
                canonicalize_name(str(e)) for e in msg.get_all("Provides-Extra") or []
            ),
            dynamic=tuple(str(d).lower() for d in msg.get_all("Dynamic") or []),
            metadata_version=str(msg.get("Metadata-Version", "1.0")),
        )


#: PEP 792 project statuses; a page that names none means "active"
PROJECT_STATUSES = ("active", "archived", "quarantined", "deprecated")


@dataclass(frozen=True)
class ProjectStatus:
    """A project's PEP 792 status marker (``active`` when the index gives none)."""

    status: str
    reason: str | None = None

    @property
    def notable(self) -> bool:
        """Whether a report should show it (anything but ``active``)."""
        return self.status != "active"

    def to_json(self) -> dict[str, str]:
        return {"status": self.status, **({"reason": self.reason} if self.reason else {})}


def _status(value: object, reason: object) -> ProjectStatus | None:
    if not isinstance(value, str) or not value.strip():
        return None
    status = value.strip().lower()
    if status not in PROJECT_STATUSES:
        log.warning("ignoring unknown project status %r", value)
        return None
    return ProjectStatus(status, str(reason) if isinstance(reason, str) and reason else None)


def parse_json_status(data: Mapping[str, Any]) -> ProjectStatus | None:
    """The PEP 792 ``project-status`` of a PEP 691 (v1.4) project page, None when absent."""
    raw = data.get("project-status")
    if not isinstance(raw, Mapping):
        return None
    return _status(raw.get("status"), raw.get("reason"))


def parse_html_status(text: str) -> ProjectStatus | None:
    """The PEP 792 ``pypi:project-status`` meta tag of a PEP 503 project page, None when absent."""
    parser = _LinkParser()
    parser.feed(text)
    return parser.status()


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[dict[str, str | None]] = []
        self.meta: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if tag == "base" and d.get("href") and self.base is None:
            self.base = d["href"]
        elif tag == "a" and d.get("href"):
            self.links.append(d)
        elif tag == "meta" and d.get("name") and d.get("content") is not None:
            self.meta.setdefault(str(d["name"]).lower(), str(d["content"]))

    def status(self) -> ProjectStatus | None:
        return _status(
            self.meta.get("pypi:project-status"), self.meta.get("pypi:project-status-reason")
        )


def parse_html_page(text: str, page_url: str, project: str, index_url: str) -> list[DistFile]:
    """Files of a PEP 503 project page (anchors with hash fragments and data- attributes)."""
    return parse_html_project(text, page_url, project, index_url)[0]


#: a URL that names its scheme (``https:``, ``file:``, ``data:``…); others are relative
_SCHEMED = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def _kind(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    return "http(s)" if scheme in ("http", "https") else scheme


class _Refused:
    """The links of one page whose scheme is not the page's own kind: an http(s) page may link
    http(s) files only, a ``file://`` index ``file://`` files only (a remote index must never
    make wheelport read local files). Dropped, with one warning naming the page."""

    def __init__(self, page_url: str) -> None:
        self.page_url = page_url
        self.kind = _kind(page_url)
        self.links: list[str] = []

    def allows(self, url: str) -> bool:
        if _kind(url) == self.kind:
            return True
        self.links.append(url)
        return False

    def warn(self) -> None:
        if self.links:
            first = self.links[0].split("#", 1)[0][:200]
            more = f" and {len(self.links) - 1} more" if len(self.links) > 1 else ""
            log.warning(
                "ignoring %d link(s) on %s that are not %s like the page (%s%s)",
                len(self.links), redact(self.page_url), self.kind, first, more,
            )  # fmt: skip


def parse_html_project(
    text: str, page_url: str, project: str, index_url: str
) -> tuple[list[DistFile], ProjectStatus | None]:
    """Files and PEP 792 status of a PEP 503 project page (the page is parsed once)."""
    parser = _LinkParser()
    parser.feed(text)
    base = urljoin(page_url, parser.base) if parser.base else page_url
    refused = _Refused(page_url)
    out = []
    for a in parser.links:
        href = str(a["href"])
        url = urljoin(base, href)
        if not refused.allows(url):
            continue
        path, _, frag = url.partition("#")
        filename = path.rsplit("/", 1)[-1].split("?", 1)[0]
        from urllib.parse import unquote

        filename = unquote(filename)
        sha256 = None
        m = re.match(r"sha256=([0-9a-fA-F]{64})", frag)
        if m:
            sha256 = m[1].lower()
        meta = a.get("data-core-metadata", a.get("data-dist-info-metadata"))
        core: str | bool = False
        if meta is not None:
            mm = re.match(r"sha256=([0-9a-fA-F]{64})", meta or "")
            core = mm[1].lower() if mm else meta.lower() != "false"
        yanked = a.get("data-yanked")
        f = make_file(
            filename=filename,
            url=path,
            project=project,
            index_url=index_url,
            sha256=sha256,
            requires_python=a.get("data-requires-python") or None,
            yanked=(yanked or "") if "data-yanked" in a else None,
            core_metadata=core,
            page=redact(page_url),
        )
        if f is not None:
            out.append(f)
    refused.warn()
    return out, parser.status()


def parse_json_page(
    data: dict[str, Any], page_url: str, project: str, index_url: str
) -> list[DistFile]:
    """Files of a PEP 691 project page."""
    return VersionFiles.of_json(data, page_url, project, index_url).files()


def json_items(data: Mapping[str, Any], page_url: str) -> Iterator[Mapping[str, Any]]:
    """The file entries of a PEP 691 page that name a file (``filename`` and ``url`` strings)
    of the page's own kind (see :class:`_Refused`); others are dropped, with one warning."""
    files = data.get("files") if isinstance(data, Mapping) else None
    if not isinstance(files, list):
        return
    refused = _Refused(page_url)
    for item in files:
        if not isinstance(item, Mapping):
            continue
        raw = item.get("url")
        if not isinstance(raw, str) or not isinstance(item.get("filename"), str):
            continue
        # a relative URL takes the page's scheme; only one that names a scheme can differ
        if _SCHEMED.match(raw) and not raw.startswith(("https://", "http://")):
            if not refused.allows(urljoin(page_url, raw)):
                continue
        elif raw.startswith(("https://", "http://")) and not refused.allows(raw):
            continue
        yield item
    refused.warn()


def json_file(
    item: Mapping[str, Any], page_url: str, project: str, index_url: str
) -> DistFile | None:
    """One file entry of a PEP 691 page (None for a file wheelport ignores)."""
    raw = item["url"]
    url = raw if raw.startswith(("https://", "http://")) else urljoin(page_url, raw)
    hashes = item.get("hashes")
    hashes = hashes if isinstance(hashes, Mapping) else {}
    meta = item.get("core-metadata", item.get("dist-info-metadata", False))
    core: str | bool = False
    if isinstance(meta, dict):
        core = str(meta.get("sha256", True)) if meta else True
    elif meta:
        core = True
    yanked = item.get("yanked", False)
    return make_file(
        filename=item["filename"],
        url=url.split("#", 1)[0],
        project=project,
        index_url=index_url,
        sha256=hashes.get("sha256"),
        requires_python=item.get("requires-python") or None,
        yanked=(yanked if isinstance(yanked, str) else "") if yanked else None,
        core_metadata=core,
        size=item.get("size"),
        upload_time=item.get("upload-time"),
        page=redact(page_url),
    )


class VersionFiles(Mapping[Version, list[DistFile]]):
    """A project's files grouped by version. A big page lists thousands of files of hundreds of
    versions while a resolution looks at a few: a version's files are made on first access."""

    def __init__(
        self,
        groups: dict[Version, list[Any]],
        make: Callable[[Any], DistFile | None],
        *,
        status: ProjectStatus | None = None,
    ) -> None:
        self._groups = groups
        self._make = make
        self._built: dict[Version, list[DistFile]] = {}
        #: the page's PEP 792 project status (None: the index gave none, i.e. active)
        self.status = status

    @classmethod
    def of(cls, files: Iterable[DistFile]) -> VersionFiles:
        groups: dict[Version, list[Any]] = {}
        for f in files:
            groups.setdefault(f.version, []).append(f)
        return cls(groups, lambda f: f)

    @classmethod
    def of_json(
        cls, data: dict[str, Any], page_url: str, project: str, index_url: str
    ) -> VersionFiles:
        groups: dict[Version, list[Any]] = {}
        for item in json_items(data, page_url):
            version = filename_version(item["filename"])
            if version is not None:
                groups.setdefault(version, []).append(item)
        return cls(groups, lambda item: json_file(item, page_url, project, index_url))

    def __getitem__(self, version: Version) -> list[DistFile]:
        built = self._built.get(version)
        if built is None:
            built = [f for f in map(self._make, self._groups[version]) if f is not None]
            self._built[version] = built  # a race builds equal lists twice: harmless
        return built

    def __iter__(self) -> Iterator[Version]:
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)

    def files(self) -> list[DistFile]:
        return [f for v in self._groups for f in self[v]]


SdistMetadataBuilder = Callable[[Path, str], bytes]


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
    ) -> None:
        self.index_urls: list[str] = []
        self._auth: dict[str, tuple[str, str]] = {}
        for raw in index_urls:
            clean, creds = split_credentials(raw.rstrip("/") + "/")
            self.index_urls.append(clean)
            if creds:
                self._auth[_origin(clean)] = creds
        self.cache = cache or Cache.default()
        self._own_http = http is None
        self._http = http
        self._http_options = (timeout, concurrency)
        self.retries = retries
        self.backoff = backoff
        self.pool = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="wheelport-index"
        )
        self._lock = threading.Lock()
        self._pages: dict[str, Future[VersionFiles]] = {}
        self._meta: dict[str, Future[CoreMetadata]] = {}
        self._work: dict[tuple[str, ...], Future[bytes | None]] = {}
        self._sdist_metadata = sdist_metadata
        self._netrc_logins: dict[str, NetrcLogin | None] = {}
        #: revalidate every page even when the cache says it is fresh
        self.refresh = refresh
        self.stats = {"requests": 0, "cached": 0, "revalidated": 0}

    @property
    def http(self) -> httpx.Client:
        """The HTTP client, made on first use (a run that finds everything in place — a no-op
        sync — never pays for TLS set-up)."""
        if self._http is None:
            with self._lock:
                if self._http is None:
                    import httpx  # here: a run that needs no network never imports it

                    timeout, concurrency = self._http_options
                    self._http = httpx.Client(
                        timeout=timeout,
                        follow_redirects=True,
                        limits=httpx.Limits(
                            max_connections=concurrency, max_keepalive_connections=concurrency
                        ),
                        headers={"User-Agent": "wheelport"},
                    )
        return self._http

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self._own_http and self._http is not None:
            self._http.close()

    def __enter__(self) -> IndexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------------
    def _auth_for(self, url: str) -> tuple[str, str] | None:
        origin = _origin(url)
        if origin in self._auth:
            return self._auth[origin]
        if not any(_origin(ix) == origin for ix in self.index_urls):
            return None
        entry = self._netrc_login(urlsplit(url).hostname or "")
        return (entry.login, entry.password) if entry else None

    def _netrc_login(self, host: str) -> NetrcLogin | None:
        """The netrc login for an index host, looked up once per host. An unreadable netrc
        gives none (as pip): a public index needs none, and a refusal names the index URL."""
        if host not in self._netrc_logins:
            try:
                self._netrc_logins[host] = netrc_login(host)
            except UsageError:
                self._netrc_logins[host] = None
        return self._netrc_logins[host]

    def request(
        self, url: str, headers: dict[str, str] | None = None, *, stream: bool = False
    ) -> httpx.Response:
        """GET with retries on connection errors, 429 and 5xx (exponential backoff)."""
        import httpx

        auth = self._auth_for(url)
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                self.stats["requests"] += 1
                req = self.http.build_request("GET", url, headers=headers)
                resp = self.http.send(
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
        reason = _reason(last) if last else "server error"
        raise IndexAccessError(
            f"cannot reach {redact(url)}: {reason}",
            hint="check --index-url and the network",
            path=redact(url),
        )

    def _get_page(self, url: str) -> tuple[bytes, str, str]:
        """(body, content type, final URL) of an index page, through the HTTP cache."""
        cache_file = self.cache.http_path(f"page:{url}")
        cached: dict[str, Any] | None = None
        if cache_file.exists():
            try:
                cached = json.loads(cache_file.read_text())
            except (ValueError, OSError):
                cached = None
        now = time.time()
        if cached and not self.refresh and now - cached["fetched"] < cached.get("max_age", 0):
            self.stats["cached"] += 1
            return cached["body"].encode(), cached["content_type"], cached["url"]
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
            atomic_write_bytes(cache_file, json.dumps(cached).encode(), durable=False)
            return cached["body"].encode(), cached["content_type"], cached["url"]
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
        entry = {
            "url": final,
            "content_type": ctype,
            "etag": resp.headers.get("etag"),
            "last_modified": resp.headers.get("last-modified"),
            "fetched": now,
            "max_age": _max_age(resp.headers),
            "body": body.decode("utf-8", "replace"),
        }
        atomic_write_bytes(cache_file, json.dumps(entry).encode(), durable=False)
        return body, ctype, final

    def _fetch_page(self, url: str, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
        """The response and body of a page; a body cut short is asked for again (as a failed
        request is, :meth:`request`)."""
        import httpx

        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            resp = self.request(url, headers, stream=True)
            try:
                return resp, self._page_body(resp, url)
            except httpx.TransportError as exc:
                last = exc
            finally:
                resp.close()
        raise IndexAccessError(
            f"cannot read {redact(url)}: {_reason(last)}",
            hint="check --index-url and the network",
            path=redact(url),
        )

    def _page_body(self, resp: httpx.Response, url: str) -> bytes:
        """The body of a page response, read up to :func:`max_page_bytes` (a bigger page is
        refused before it is held in memory: a hostile index could send gigabytes)."""
        if resp.status_code != 200:
            return b""
        limit = max_page_bytes()
        declared = resp.headers.get("content-length", "")
        chunks: list[bytes] = []
        total = int(declared) if declared.isdigit() else 0
        if total <= limit:
            total = 0
            for chunk in resp.iter_bytes(1 << 20):
                total += len(chunk)
                if total > limit:
                    break
                chunks.append(chunk)
        if total > limit:
            raise IndexAccessError(
                f"{redact(url)} is larger than {human_size(limit)}, the limit for one project page",
                hint=f"raise it with {MAX_PAGE_ENV}=BYTES if this index is trusted",
                path=redact(url),
            )
        return b"".join(chunks)

    # -- projects ----------------------------------------------------------------------------
    def project_files(self, name: str) -> list[DistFile]:
        """All files of a project on the first index that has it ([] when none has it)."""
        return self.prefetch_project(name).result().files()

    def versions_of(self, name: str) -> Mapping[Version, list[DistFile]]:
        """A project's files grouped by version (loaded once, shared by every target)."""
        return self.prefetch_project(name).result()

    def prefetch_project(self, name: str) -> Future[VersionFiles]:
        key = canonicalize_name(name)
        with self._lock:
            fut = self._pages.get(key)
            if fut is None:
                fut = self.pool.submit(self._load_project, key)
                self._pages[key] = fut
        return fut

    def _load_project(self, name: NormalizedName) -> VersionFiles:
        for index in self.index_urls:
            url = f"{index}{name}/"
            if url.startswith("file://"):
                files = self._load_file_index(index, name)
                if files is None:
                    continue
                return VersionFiles.of(files)
            body, ctype, final = self._get_page(url)
            if ctype == "404":
                continue
            if ctype == JSON_V1 or ctype.endswith("+json") or ctype == "application/json":
                try:
                    data = json.loads(body)
                except ValueError as exc:
                    raise IndexAccessError(
                        f"{redact(final)} is not a valid PEP 691 page: {exc}",
                        hint="check --index-url",
                        package=name,
                        path=redact(final),
                    ) from None
                if not isinstance(data, dict):
                    data = {}
                found = VersionFiles.of_json(data, final, name, index)
                found.status = parse_json_status(data)
                return found
            files, status = parse_html_project(body.decode("utf-8", "replace"), final, name, index)
            found = VersionFiles.of(files)
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
        from urllib.parse import unquote

        simple = Path(unquote(urlsplit(index).path))
        page = simple / name / "index.html"
        if not page.exists():
            return None
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
        source that has it (:mod:`wheelport.index.metadata` gives the order). ``on_build`` is
        told when an sdist's metadata has to be built (PEP 517)."""
        return self.prefetch_metadata(file, on_build=on_build).result()

    def prefetch_metadata(
        self, file: DistFile, *, on_build: Callable[[str], None] | None = None
    ) -> Future[CoreMetadata]:
        with self._lock:
            fut = self._meta.get(file.url)
            if fut is None:
                fut = self.pool.submit(self._load_metadata, file, on_build)
                self._meta[file.url] = fut
        return fut

    def _once(self, key: tuple[str, ...], work: Callable[[], bytes | None]) -> bytes | None:
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

    def _cached_metadata(self, sha256: str | None) -> bytes | None:
        if not sha256:
            return None
        path = self.cache.metadata_path(f"meta:{sha256}")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def _remember_metadata(self, sha256: str | None, data: bytes) -> None:
        if sha256:
            atomic_write_bytes(self.cache.metadata_path(f"meta:{sha256}"), data, durable=False)

    def _load_metadata(
        self, file: DistFile, on_build: Callable[[str], None] | None
    ) -> CoreMetadata:
        siblings = self.versions_of(file.project).get(file.version) or [file]
        wheels = sorted((f for f in siblings if f.is_wheel), key=lambda f: f.filename)
        if file.is_wheel:  # the target's own wheel first
            wheels = [file] + [w for w in wheels if w.url != file.url]
        sdists = [f for f in siblings if not f.is_wheel]
        if not file.is_wheel:
            sdists = [file] + [s for s in sdists if s.url != file.url]
        sources: list[Callable[[], tuple[bytes, str] | None]] = [
            lambda: self._metadata_from_cache(wheels, sdists),
            lambda: self._metadata_pep658(wheels),
            lambda: self._metadata_by_ranges(wheels),
            lambda: self._metadata_static_sdist(sdists),
            lambda: self._metadata_whole_wheel(wheels),
            lambda: self._metadata_build(sdists, on_build),
        ]
        for source in sources:
            try:
                found = source()
            except WheelportError as exc:
                exc.package = exc.package or file.project
                raise
            if found is not None:
                data, how = found
                self.stats[f"metadata_{how}"] = self.stats.get(f"metadata_{how}", 0) + 1
                meta = CoreMetadata.parse(data, file.filename)
                if canonicalize_name(meta.name) != file.project or not same_version(
                    meta.version, str(file.version)
                ):  # pip refuses such a file too ("inconsistent name/version")
                    raise IndexAccessError(
                        f"{file.project}: the metadata of {file.filename} (from "
                        f"{_SOURCE.get(how, how)}) says Name: {meta.name[:100] or '(none)'}, "
                        f"Version: {meta.version[:100] or '(none)'}; the file is named "
                        f"{file.project} {file.version}",
                        hint="the index serves an impostor or a broken upload; nothing was locked",
                        package=file.project,
                        path=file.filename,
                    )
                return meta
        raise IndexAccessError(f"{file.filename}: no metadata could be read", package=file.project)

    def _metadata_from_cache(
        self, wheels: list[DistFile], sdists: list[DistFile]
    ) -> tuple[bytes, str] | None:
        for f in [*wheels, *sdists]:
            data = self._cached_metadata(f.sha256)
            if data is not None:
                return data, "cache"
        return None

    def _metadata_pep658(self, wheels: list[DistFile]) -> tuple[bytes, str] | None:
        for wheel in wheels:
            if not wheel.core_metadata:
                continue
            data = self._once(("pep658", wheel.url), functools.partial(self._fetch_pep658, wheel))
            if data is not None:
                return data, "pep658"
        return None

    def _fetch_pep658(self, wheel: DistFile) -> bytes | None:
        resp = self.request(wheel.metadata_url)
        if resp.status_code != 200:
            return None
        data = resp.content
        expected = wheel.core_metadata if isinstance(wheel.core_metadata, str) else None
        if expected and hashlib.sha256(data).hexdigest() != expected:
            log.warning("%s: PEP 658 metadata does not match its sha256; ignored", wheel.filename)
            return None
        self._remember_metadata(wheel.sha256, data)
        return data

    def _metadata_by_ranges(self, wheels: list[DistFile]) -> tuple[bytes, str] | None:
        """One wheel of the version, read with range requests (shared by every target: the
        wheels of a version carry the same metadata)."""
        if not wheels or wheels[0].url.startswith("file://"):
            return None
        wheel = wheels[0]
        key = ("ranges", wheel.project, str(wheel.version))
        data = self._once(key, lambda: self._fetch_by_ranges(wheel))
        return (data, "ranges") if data is not None else None

    def _fetch_by_ranges(self, wheel: DistFile) -> bytes | None:
        import httpx

        try:
            resp = self.request(wheel.url, {"Range": f"bytes=-{TAIL_BYTES}"}, stream=True)
            try:
                span = parse_content_range(resp.headers.get("content-range"))
                if resp.status_code != 206 or span is None:
                    raise RangesUnsupported(f"HTTP {resp.status_code}")
                tail = resp.read()
            finally:
                resp.close()

            def fetch(start: int, end: int) -> bytes:
                r = self.request(wheel.url, {"Range": f"bytes={start}-{end}"})
                if r.status_code != 206:
                    raise RangesUnsupported(f"HTTP {r.status_code}")
                return r.content

            data, more = read_metadata_by_ranges(wheel.filename, span[2], tail, fetch)
        except (RangesUnsupported, httpx.HTTPError, zipfile.BadZipFile, OSError, EOFError) as exc:
            log.info("%s: metadata by range requests failed (%s)", wheel.filename, exc)
            return None
        self.stats["range_requests"] = self.stats.get("range_requests", 0) + 1 + more
        self._remember_metadata(wheel.sha256, data)
        return data

    def _metadata_static_sdist(self, sdists: list[DistFile]) -> tuple[bytes, str] | None:
        for sdist in sdists[:1]:
            local = self.download(sdist)
            found = metadata_from_sdist(local, sdist.project, str(sdist.version))
            if found is not None:
                self._remember_metadata(sdist.sha256, found[0])
                return found[0], "sdist_" + found[1].split(".")[0].lower().replace("-", "_")
        return None

    def _metadata_whole_wheel(self, wheels: list[DistFile]) -> tuple[bytes, str] | None:
        """The last resort before a build: download one wheel of the version (it was not
        readable by ranges) and read its METADATA."""
        for wheel in wheels[:1]:
            local = self.download(wheel)
            try:
                with zipfile.ZipFile(local) as zf:
                    member = wheel_metadata_member(zf, wheel.filename)
                    if member is None:
                        raise IndexAccessError(
                            f"{wheel.filename}: wheel has no .dist-info/METADATA",
                            path=wheel.filename,
                        )
                    data = zf.read(member)
            except zipfile.BadZipFile as exc:
                raise IndexAccessError(
                    f"{wheel.filename}: not a readable wheel: {exc}", path=wheel.filename
                ) from None
            self._remember_metadata(wheel.sha256, data)
            return data, "wheel"
        return None

    def _metadata_build(
        self, sdists: list[DistFile], on_build: Callable[[str], None] | None
    ) -> tuple[bytes, str] | None:
        if not sdists:
            return None
        sdist = sdists[0]
        builder = self._sdist_metadata
        if builder is None:
            raise IndexAccessError(
                f"{sdist.filename}: dependencies are dynamic and no builder is set",
                package=sdist.project,
            )

        def build() -> bytes:
            local = self.download(sdist)
            if on_build is not None:
                on_build(sdist.filename)
            self.stats["metadata_builds"] = self.stats.get("metadata_builds", 0) + 1
            data = builder(local, sdist.filename)
            self._remember_metadata(sdist.sha256, data)
            return data

        data = self._once(("build", sdist.sha256 or sdist.url), build)
        return (data, "build") if data is not None else None

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
        from urllib.parse import unquote

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
        with _inflight_lock:
            one_at_a_time = _inflight.setdefault(sha256, threading.Lock())
        with one_at_a_time:
            done = cache.verified(sha256)
            if done is not None:
                return done
            known = _corrupt.get((url, sha256))
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
#: (URL, sha256) -> the error of a file that came back with other bytes twice in this process
_corrupt: dict[tuple[str, str], JobError] = {}


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
    import httpx

    from wheelport.errors import FetchError

    tmp_dir = cache.partial_dir()
    h = hashlib.sha256()
    total = 0
    fd, tmp_name = partial_file(tmp_dir)
    sink = os.fdopen(fd, "wb")  # owns fd from here on: never close the number twice
    try:
        resp = client.request(url, stream=True)
        try:
            if resp.status_code != 200:
                raise FetchError(
                    f"{label}: download failed with HTTP {resp.status_code} from {redact(url)}",
                    path=label,
                )
            with sink as f:
                for chunk in resp.iter_bytes(1 << 20):
                    f.write(chunk)
                    h.update(chunk)
                    total += len(chunk)
                    if progress:
                        progress(len(chunk))
        finally:
            resp.close()
        if size is not None and total != size:
            raise _Retryable(
                FetchError(
                    f"{label}: size mismatch for {redact(url)}: expected {size} bytes, got {total}",
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
        return dest
    except httpx.TransportError as exc:
        raise _Retryable(
            FetchError(f"{label}: download from {redact(url)} failed: {_reason(exc)}", path=label)
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


def _reason(exc: BaseException) -> str:
    import httpx

    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    if "reset by peer" in text.lower():
        return "connection reset by the server"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({text.splitlines()[0]})" if "timed out" not in text else text
    return text.splitlines()[0]


def _max_age(headers: httpx.Headers) -> int:
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


__all__ = ["CoreMetadata", "IndexClient", "download_verified", "redact"]
