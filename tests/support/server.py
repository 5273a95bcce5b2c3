"""A real PEP 503 / 691 / 658 / 700 package index on 127.0.0.1 for tests (stdlib http.server).

    with IndexServer() as index:
        index.add(make_wheel(tmp, "foo", "1.0"))
        subprocess.run([..., "pip", "install", "--isolated", "--index-url", index.url, "foo"])

Knobs: ``html_only`` / ``json_only`` (content negotiation), ``fail_next`` (transient errors),
``auth`` (HTTP Basic), ``delay`` (slow responses), ``absolute_urls``; ``requests`` records every
request seen as ``(method, path, headers)``. ``inject`` adds per-path :class:`Fault` rules (HTTP
status, connection reset, truncated body, slow first byte / trickle, corrupted bytes) and
``serve_metadata`` makes PEP 658 ``.metadata`` differ from the wheel's own METADATA.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import io
import json
import socket
import struct
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import (
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

__all__ = [
    "FAULT_KINDS",
    "HTML_TYPE",
    "JSON_TYPE",
    "TEXT_HTML",
    "Fault",
    "IndexFile",
    "IndexServer",
    "RecordedRequest",
    "negotiate",
    "serve_on_loopback",
    "stop_serving",
]

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
_API_VERSION = "1.1"

RecordedRequest = tuple[str, str, dict[str, str]]


@dataclass(frozen=True)
class RawLink:
    """An entry listed on a project page as given (``IndexServer.link``), not a served file."""

    project: str
    url: str
    filename: str
    sha256: str | None
    metadata_sha256: str | None


@dataclass(frozen=True)
class IndexFile:
    """One registered file as the index describes it."""

    filename: str
    path: Path
    project: str
    version: str
    sha256: str
    size: int
    requires_python: str | None
    yanked: str | bool
    upload_time: str | None
    metadata: bytes | None

    @property
    def metadata_sha256(self) -> str | None:
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()


FAULT_KINDS = ("status", "reset", "truncate", "slow", "corrupt", "overlong")


@dataclass
class Fault:
    """One fault rule: the next *count* requests whose path starts with *prefix* (None: all).

    ``status``: answer *status* with a short body. ``reset``: send the headers and *after* bytes
    of the body, then reset the connection (RST). ``truncate``: advertise the full Content-Length,
    send *after* bytes (default half), then close. ``slow``: wait *delay* seconds before the first
    byte, then send the body in *chunk*-byte pieces *delay* apart when *trickle*. ``corrupt``: the
    same number of bytes with one byte flipped (the page still advertises the true sha256).
    ``overlong``: a ``Range`` request is answered ``206`` with the whole file (and a
    ``Content-Range`` that says so).
    """

    prefix: str
    kind: str = "status"
    count: int | None = 1
    #: the path must equal *prefix* (``/files/x.whl`` then does not match ``x.whl.metadata``)
    exact: bool = False
    #: None: every request; False: only whole-file GETs; True: only ``Range`` requests
    ranged: bool | None = None
    status: int = 500
    after: int | None = None
    delay: float = 0.0
    trickle: bool = False
    chunk: int = 16384
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


def _parse_filename(filename: str) -> tuple[str, str]:
    """Return (normalized project, version) from a wheel or sdist file name."""
    if filename.endswith(".whl"):
        name, version, _, _ = parse_wheel_filename(filename)
    else:
        name, version = parse_sdist_filename(filename)
    return canonicalize_name(name), str(version)


def _core_metadata(path: Path) -> bytes | None:
    """Return METADATA of a wheel, PKG-INFO of an sdist, or None when absent."""
    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as archive:
            for arcname in archive.namelist():
                parts = arcname.split("/")
                if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                    return archive.read(arcname)
        return None
    if path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                if member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                    extracted = tar.extractfile(member)
                    return extracted.read() if extracted is not None else None
    return None


_ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON_TYPE,
    "application/vnd.pypi.simple.latest+html": HTML_TYPE,
    "*/*": TEXT_HTML,
    "text/*": TEXT_HTML,
}


def negotiate(accept: str | None, *, html_only: bool = False, json_only: bool = False) -> str:
    """Pick the response type for an ``Accept`` header (PEP 691 negotiation, q-values honoured).

    Returns JSON_TYPE, HTML_TYPE or ``text/html``. ``json_only`` always answers JSON; ``html_only``
    never does (it picks the HTML flavour the client prefers). No usable Accept means ``text/html``.
    """
    if json_only:
        return JSON_TYPE
    allowed = (HTML_TYPE, TEXT_HTML) if html_only else (JSON_TYPE, HTML_TYPE, TEXT_HTML)
    best, best_q = TEXT_HTML, 0.0
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        media = _ALIASES.get(media.lower(), media.lower())
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media in allowed and q > best_q:
            best, best_q = media, q
    return best


def serve_on_loopback(
    handler: type[BaseHTTPRequestHandler], server: type[ThreadingHTTPServer] = ThreadingHTTPServer
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """An HTTP server for ``handler`` on 127.0.0.1 (a free port), serving from a daemon thread."""
    httpd = server(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return httpd, thread


def stop_serving(httpd: ThreadingHTTPServer | None, thread: threading.Thread | None) -> None:
    """Stop a server :func:`serve_on_loopback` started and close its socket."""
    if httpd is not None:
        httpd.shutdown()
        httpd.server_close()
    if thread is not None:
        thread.join(timeout=5)


class IndexServer:
    """A PEP 503/691/658 simple index over registered files, served on 127.0.0.1:<free port>."""

    def __init__(
        self,
        *,
        html_only: bool = False,
        json_only: bool = False,
        auth: tuple[str, str] | None = None,
        delay: float = 0.0,
        absolute_urls: bool = False,
    ) -> None:
        self.html_only = html_only
        self.json_only = json_only
        self.auth = auth
        self.delay = delay
        self.absolute_urls = absolute_urls
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._files: dict[str, IndexFile] = {}
        self._faults: list[Fault] = []
        self._metadata_override: dict[str, bytes] = {}
        self._links: list[RawLink] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> IndexServer:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        server = self

        class Handler(_Handler):
            index = server

        self._httpd, self._thread = serve_on_loopback(Handler)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        stop_serving(self._httpd, self._thread)
        self._httpd, self._thread = None, None

    def __enter__(self) -> IndexServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (server must be started)."""
        if self._httpd is None:
            raise RuntimeError("IndexServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The simple index URL, ``http://127.0.0.1:PORT/simple/``."""
        return f"{self.base}/simple/"

    def url_with_auth(self) -> str:
        """The index URL with ``user:password@`` embedded (needs ``auth``)."""
        if self.auth is None:
            raise RuntimeError("IndexServer has no auth configured")
        user, password = (quote(part, safe="") for part in self.auth)
        return f"http://{user}:{password}@127.0.0.1:{self.port}/simple/"

    # -- content ---------------------------------------------------------------------------------

    def add(
        self,
        path: Path,
        *,
        yanked: str | bool = False,
        upload_time: str | None = None,
        metadata: bool = True,
    ) -> str:
        """Register a wheel or sdist; return its file URL path (``/files/<name>``).

        *yanked* is ``True`` or a reason string (PEP 592); *upload_time* an ISO 8601 UTC string
        (PEP 700, omitted when None); *metadata* serves ``<file>.metadata`` (PEP 658, wheels only).
        """
        project, version = _parse_filename(path.name)
        data = path.read_bytes()
        core = _core_metadata(path)
        requires_python = None
        if core is not None:
            requires_python = BytesHeaderParser().parsebytes(core).get("Requires-Python")
        entry = IndexFile(
            filename=path.name,
            path=path,
            project=project,
            version=version,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            requires_python=requires_python,
            yanked=yanked,
            upload_time=upload_time,
            metadata=core if metadata and path.name.endswith(".whl") else None,
        )
        with self._lock:
            self._files[path.name] = entry
        return f"/files/{quote(path.name)}"

    def link(
        self,
        project: str,
        url: str,
        *,
        filename: str | None = None,
        sha256: str | None = None,
        metadata_sha256: str | None = None,
    ) -> None:
        """List a raw entry on *project*'s page, as a hostile index would: any *url* (``file:``,
        another host…), any *filename* (default: the URL's last part), optional hashes."""
        name = filename if filename is not None else unquote(url.rsplit("/", 1)[-1].split("#")[0])
        with self._lock:
            self._links.append(
                RawLink(canonicalize_name(project), url, name, sha256, metadata_sha256)
            )

    def fail_next(self, path_prefix: str, count: int, status: int = 500) -> None:
        """Answer the next *count* requests whose path starts with *path_prefix* with *status*."""
        self.inject(Fault(path_prefix, "status", count, status=status))

    def inject(self, *faults: Fault) -> None:
        """Add fault rules; the first rule that matches a request and has count left applies."""
        with self._lock:
            self._faults.extend(faults)

    def serve_metadata(self, filename: str, metadata: bytes | None) -> None:
        """Serve *metadata* as the PEP 658 ``.metadata`` of *filename* (its hash on the pages too);
        None goes back to the wheel's own METADATA."""
        with self._lock:
            if metadata is None:
                self._metadata_override.pop(filename, None)
            else:
                self._metadata_override[filename] = metadata

    def heal(self) -> None:
        """Drop every fault rule and metadata override: a healthy index again."""
        with self._lock:
            self._faults.clear()
            self._metadata_override.clear()

    def count(self, path: str, method: str = "GET") -> int:
        """How many *method* requests for exactly *path* were seen."""
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method and p == path)

    def projects(self) -> list[str]:
        """Normalized names of registered projects (files and raw links), sorted."""
        with self._lock:
            return sorted(
                {f.project for f in self._files.values()} | {r.project for r in self._links}
            )

    def links_of(self, project: str) -> list[RawLink]:
        with self._lock:
            return [r for r in self._links if r.project == project]

    def files_of(self, project: str) -> list[IndexFile]:
        """Registered files of a normalized project, sorted by file name."""
        with self._lock:
            return sorted(
                (self._served(f) for f in self._files.values() if f.project == project),
                key=lambda f: f.filename,
            )

    def file(self, filename: str) -> IndexFile | None:
        """The registered file called *filename*, if any."""
        with self._lock:
            f = self._files.get(filename)
            return None if f is None else self._served(f)

    def _served(self, f: IndexFile) -> IndexFile:
        meta = self._metadata_override.get(f.filename)
        return f if meta is None else dataclasses.replace(f, metadata=meta)

    # -- used by the handler -----------------------------------------------------------------------

    def _record(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((method, path, headers))

    def _take_fault(self, path: str, ranged: bool) -> Fault | None:
        with self._lock:
            for rule in self._faults:
                if (
                    (path == rule.prefix if rule.exact else path.startswith(rule.prefix))
                    and (rule.ranged is None or rule.ranged == ranged)
                    and (rule.count is None or rule.hits < rule.count)
                ):
                    rule.hits += 1
                    return rule
        return None

    def file_url(self, filename: str) -> str:
        """The absolute download URL of a registered file (``<base>/files/<filename>``)."""
        return f"{self.base}/files/{quote(filename)}"

    def _file_url(self, filename: str) -> str:
        if self.absolute_urls:
            return self.file_url(filename)
        return f"../../files/{quote(filename)}"

    def project_json(self, project: str) -> dict[str, object]:
        """The PEP 691 (v1.1, with PEP 700 fields) JSON page of *project*."""
        files = []
        for f in self.files_of(project):
            meta: dict[str, str] | bool = (
                {"sha256": f.metadata_sha256} if f.metadata_sha256 is not None else False
            )
            item: dict[str, object] = {
                "filename": f.filename,
                "url": self._file_url(f.filename),
                "hashes": {"sha256": f.sha256},
                "yanked": f.yanked,
                "core-metadata": meta,
                "dist-info-metadata": meta,
                "size": f.size,
            }
            if f.requires_python is not None:
                item["requires-python"] = f.requires_python
            if f.upload_time is not None:
                item["upload-time"] = f.upload_time
            files.append(item)
        for raw in self.links_of(project):
            meta = {"sha256": raw.metadata_sha256} if raw.metadata_sha256 else False
            files.append({
                "filename": raw.filename,
                "url": raw.url,
                "hashes": {"sha256": raw.sha256} if raw.sha256 else {},
                "core-metadata": meta,
            })  # fmt: skip
        versions = sorted({f.version for f in self.files_of(project)})
        return {
            "meta": {"api-version": _API_VERSION},
            "name": project,
            "files": files,
            "versions": versions,
        }

    def project_html(self, project: str) -> str:
        """The PEP 503 HTML page of *project* (with PEP 592/658 data attributes)."""
        links = []
        for f in self.files_of(project):
            attrs = [f'href="{html.escape(self._file_url(f.filename))}#sha256={f.sha256}"']
            if f.requires_python:
                attrs.append(f'data-requires-python="{html.escape(f.requires_python)}"')
            if f.metadata_sha256 is not None:
                attrs.append(f'data-core-metadata="sha256={f.metadata_sha256}"')
                attrs.append(f'data-dist-info-metadata="sha256={f.metadata_sha256}"')
            if f.yanked is not False:
                reason = "" if f.yanked is True else str(f.yanked)
                attrs.append(f'data-yanked="{html.escape(reason)}"')
            links.append(f"    <a {' '.join(attrs)}>{html.escape(f.filename)}</a><br/>")
        for raw in self.links_of(project):
            href = raw.url + (f"#sha256={raw.sha256}" if raw.sha256 else "")
            attrs = [f'href="{html.escape(href)}"']
            if raw.metadata_sha256:
                attrs.append(f'data-core-metadata="sha256={raw.metadata_sha256}"')
            links.append(f"    <a {' '.join(attrs)}>{html.escape(raw.filename)}</a><br/>")
        return _html_page(f"Links for {project}", links)

    def root_json(self) -> dict[str, object]:
        """The PEP 691 JSON project list."""
        return {
            "meta": {"api-version": _API_VERSION},
            "projects": [{"name": p} for p in self.projects()],
        }

    def root_html(self) -> str:
        """The PEP 503 HTML project list."""
        links = [f'    <a href="{p}/">{p}</a><br/>' for p in self.projects()]
        return _html_page("Simple index", links)


def _html_page(title: str, links: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{_API_VERSION}">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n" + "\n".join(links) + "\n  </body>\n</html>\n"
    )


class _Handler(BaseHTTPRequestHandler):
    index: IndexServer
    protocol_version = "HTTP/1.1"
    server_version = "wheelport-test-index/1.0"
    fault: Fault | None = None

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet; requests are recorded in ``IndexServer.requests``."""

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    # -- plumbing --------------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
        *,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self._write_body(body)

    def _write_body(self, body: bytes) -> None:
        fault, self.fault = self.fault, None
        if fault is None:
            self.wfile.write(body)
        elif fault.kind == "corrupt":
            if body:
                i = len(body) // 2
                body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1 :]
            self.wfile.write(body)
        elif fault.kind == "slow":
            if not fault.trickle:
                self.wfile.write(body)
                return
            for start in range(0, len(body), fault.chunk):
                self.wfile.write(body[start : start + fault.chunk])
                time.sleep(fault.delay)
        else:  # reset / truncate: part of the body, then the connection goes away
            sent = len(body) // 2 if fault.after is None else min(fault.after, len(body))
            self.wfile.write(body[:sent])
            self.close_connection = True
            if fault.kind == "reset":
                # SO_LINGER 0 + close: the kernel answers with RST instead of FIN
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.rfile.close()  # drops makefile()'s reference, so close() really closes
                self.connection.close()
                self.rfile = self.wfile = io.BytesIO()  # what the server's cleanup then flushes

    def _serve(self, *, head: bool) -> None:
        index = self.index
        path = urlsplit(self.path).path
        index._record(self.command, self.path, dict(self.headers.items()))
        if index.delay:
            time.sleep(index.delay)
        if index.auth is not None and not self._authorized(index.auth):
            self._send(
                HTTPStatus.UNAUTHORIZED,
                b"authentication required\n",
                headers={"WWW-Authenticate": 'Basic realm="wheelport-test"'},
                head=head,
            )
            return
        fault = index._take_fault(path, "Range" in self.headers)
        if fault is not None and fault.kind == "status":
            self._send(fault.status, b"injected failure\n", head=head)
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        self.fault = fault
        if path == "/simple":
            self._redirect("/simple/", head)
        elif path == "/simple/":
            self._page(index.root_json, index.root_html, head)
        elif path.startswith("/simple/"):
            raw = unquote(path[len("/simple/") :]).rstrip("/")
            project = canonicalize_name(raw)
            if "/" in raw or project not in index.projects():
                self._send(HTTPStatus.NOT_FOUND, b"no such project\n", head=head)
            elif raw != project or not path.endswith("/"):
                self._redirect(f"/simple/{project}/", head)
            else:
                self._page(
                    lambda: index.project_json(project), lambda: index.project_html(project), head
                )
        elif path.startswith("/files/"):
            self._file(unquote(path[len("/files/") :]), head)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", head=head)

    def _authorized(self, auth: tuple[str, str]) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        return decoded == f"{auth[0]}:{auth[1]}"

    def _redirect(self, location: str, head: bool) -> None:
        self._send(HTTPStatus.MOVED_PERMANENTLY, b"", headers={"Location": location}, head=head)

    def _page(self, as_json: object, as_html: object, head: bool) -> None:
        assert callable(as_json) and callable(as_html)
        chosen = negotiate(
            self.headers.get("Accept"),
            html_only=self.index.html_only,
            json_only=self.index.json_only,
        )
        if chosen == JSON_TYPE:
            body = json.dumps(as_json(), indent=1).encode("utf-8")
            content_type = JSON_TYPE
        else:
            body = str(as_html()).encode("utf-8")
            content_type = f"{chosen}; charset=utf-8" if chosen == TEXT_HTML else chosen
        self._send(HTTPStatus.OK, body, content_type, headers={"Vary": "Accept"}, head=head)

    def _file(self, name: str, head: bool) -> None:
        want_metadata = name.endswith(".metadata")
        entry = self.index.file(name[: -len(".metadata")] if want_metadata else name)
        if entry is None or (want_metadata and entry.metadata is None):
            self._send(HTTPStatus.NOT_FOUND, b"no such file\n", head=head)
            return
        if want_metadata:
            assert entry.metadata is not None
            self._send(HTTPStatus.OK, entry.metadata, "application/octet-stream", head=head)
            return
        data = entry.path.read_bytes()
        content_type = "application/octet-stream"
        byte_range = self.headers.get("Range")
        if byte_range is None:
            self._send(HTTPStatus.OK, data, content_type, {"Accept-Ranges": "bytes"}, head=head)
            return
        span = _parse_range(byte_range, len(data))
        if span is None:
            self._send(
                HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                b"",
                headers={"Content-Range": f"bytes */{len(data)}"},
                head=head,
            )
            return
        start, end = span
        if self.fault is not None and self.fault.kind == "overlong":
            self.fault, start, end = None, 0, len(data) - 1
        self._send(
            HTTPStatus.PARTIAL_CONTENT,
            data[start : end + 1],
            content_type,
            {"Content-Range": f"bytes {start}-{end}/{len(data)}", "Accept-Ranges": "bytes"},
            head=head,
        )


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range into inclusive (start, end); None when unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            length = int(last)
            if length <= 0:
                return None
            return max(0, size - length), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)
