"""``wheelport serve``: the wheelhouse over HTTP, read-only.

Static files are served from the wheelhouse root (never outside it; dot-files such as the
index state and temporary files are hidden). ``/simple/`` and ``/simple/<name>/`` negotiate
PEP 691 content types on ``Accept`` (q-values honoured, 406 when nothing fits) and redirect
``/simple/<name>`` and non-normalized names to ``/simple/<normalized>/``. Responses carry
``ETag`` and ``Last-Modified``; conditional GETs get 304. Only GET and HEAD are allowed.

The pages themselves come from :func:`wheelport.site.writer.write_index`; the server does
not build anything. A directory with an ``index.html`` (the wheelhouse root: its page) is
answered with it, as nginx's ``index`` directive does; others get a listing.
"""

from __future__ import annotations

import email.utils
import html
import logging
import os
import posixpath
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import canonicalize_name

from wheelport.bootstrap import escape_reason
from wheelport.errors import UsageError

log = logging.getLogger("wheelport.serve")

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
#: PEP 691 names for "the newest version" of each format
_LATEST = {
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
}

_CONTENT_TYPES = {
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".tar.gz": "application/gzip",
    ".tgz": "application/gzip",
    ".metadata": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".toml": "application/toml",
    ".py": "text/x-python; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
}


# --------------------------------------------------------------------------- pure decisions


@dataclass(frozen=True)
class MediaRange:
    """One entry of an ``Accept`` header."""

    type: str
    subtype: str
    q: float

    def specificity(self, media_type: str) -> int:
        """2 exact match, 1 ``type/*``, 0 ``*/*``, -1 no match."""
        mtype, _, msub = media_type.partition("/")
        if self.type == "*" and self.subtype == "*":
            return 0
        if self.type != mtype:
            return -1
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == msub else -1


def parse_accept(header: str | None) -> list[MediaRange]:
    """Parse an ``Accept`` header; a missing or empty header accepts anything."""
    if not header or not header.strip():
        return [MediaRange("*", "*", 1.0)]
    ranges: list[MediaRange] = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if "/" not in media:
            continue
        mtype, _, msub = media.partition("/")
        media = _LATEST.get(media, media)
        mtype, _, msub = media.partition("/")
        q = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value.strip())))
                except ValueError:
                    q = 0.0
        ranges.append(MediaRange(mtype, msub, q))
    return ranges


def negotiate(header: str | None) -> str | None:
    """The simple-API content type to answer with, or None (406) when none is acceptable.

    The most specific media range decides each candidate's q-value (RFC 9110). Among equal
    q-values, matches by type beat ``*/*``; ties there prefer JSON (PEP 691 clients list it
    first), while ``*/*``-only ties get ``text/html`` (browsers, curl).
    """
    ranges = parse_accept(header)
    explicit_order = (JSON_V1, HTML_V1, TEXT_HTML)
    wildcard_order = (TEXT_HTML, HTML_V1, JSON_V1)
    best: tuple[float, int, int] | None = None
    choice: str | None = None
    for candidate in explicit_order:
        matches = [(r.specificity(candidate), r.q) for r in ranges]
        matches = [m for m in matches if m[0] >= 0]
        if not matches:
            continue
        spec, q = max(matches, key=lambda m: m[0])
        if q <= 0:
            continue
        order = explicit_order if spec >= 1 else wildcard_order
        score = (q, min(spec, 1), -order.index(candidate))
        if best is None or score > best:
            best, choice = score, candidate
    return choice


def content_type_for(name: str) -> str:
    """The Content-Type of a static file by its name."""
    lower = name.lower()
    for suffix in sorted(_CONTENT_TYPES, key=len, reverse=True):
        if lower.endswith(suffix):
            return _CONTENT_TYPES[suffix]
    return "application/octet-stream"


@dataclass(frozen=True)
class Route:
    """What a request path maps to."""

    kind: str  # "file", "simple", "redirect", "dir", "notfound"
    #: path segments relative to the root (file, simple, dir) or the Location (redirect)
    target: str


def route(raw_path: str) -> Route:
    """Map a request path to a file, a simple page, a redirect or not-found (no I/O)."""
    path = unquote(urlsplit(raw_path).path)
    if "\x00" in path or "\\" in path:
        return Route("notfound", "")
    segments = [s for s in path.split("/") if s]
    if any(s in (".", "..") or s.startswith(".") for s in segments):
        return Route("notfound", "")
    trailing = path.endswith("/")
    rel = posixpath.join(*segments) if segments else ""
    if not segments:
        return Route("dir", "")
    if segments[0] == "simple":
        if len(segments) == 1:
            return Route("simple", "simple") if trailing else Route("redirect", "/simple/")
        if len(segments) == 2:
            name = canonicalize_name(segments[1])
            if name != segments[1] or not trailing:
                return Route("redirect", f"/simple/{quote(name)}/")
            return Route("simple", rel)
    return Route("dir" if trailing else "file", rel)


# --------------------------------------------------------------------------- the server


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'


def make_handler(root: Path) -> type[BaseHTTPRequestHandler]:
    """A request handler class serving ``root`` (read-only)."""
    base = root.resolve()

    class Handler(BaseHTTPRequestHandler):
        server_version = "wheelport"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def do_GET(self) -> None:
            self._respond(body=True)

        def do_HEAD(self) -> None:
            self._respond(body=False)

        def _not_allowed(self) -> None:
            self._simple_error(HTTPStatus.METHOD_NOT_ALLOWED, "read-only: GET and HEAD only")

        do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

        def _simple_error(self, status: HTTPStatus, text: str, body: bool = True) -> None:
            data = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if status == HTTPStatus.METHOD_NOT_ALLOWED:
                self.send_header("Allow", "GET, HEAD")
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _respond(self, *, body: bool) -> None:
            r = route(self.path)
            if r.kind == "notfound":
                self._simple_error(HTTPStatus.NOT_FOUND, "not found", body)
            elif r.kind == "redirect":
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", r.target)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif r.kind == "simple":
                self._simple_page(r.target, body)
            elif r.kind == "dir":
                self._directory(r.target, body)
            else:
                path = base / r.target
                if path.is_dir():
                    self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                    self.send_header("Location", "/" + quote(r.target) + "/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._file(path, content_type_for(path.name), body)

        def _simple_page(self, rel: str, body: bool) -> None:
            accept = self.headers.get("Accept")
            chosen = negotiate(accept)
            log.debug("negotiated %s for /%s/ (Accept: %s)", chosen, rel, accept)
            if chosen is None:
                self._simple_error(
                    HTTPStatus.NOT_ACCEPTABLE,
                    f"acceptable: {JSON_V1}, {HTML_V1}, {TEXT_HTML}",
                    body,
                )
                return
            page = "index.json" if chosen == JSON_V1 else "index.html"
            ctype = chosen if chosen != TEXT_HTML else "text/html; charset=utf-8"
            self._file(base / rel / page, ctype, body, vary=True)

        def _directory(self, rel: str, body: bool) -> None:
            folder = base / rel
            if not folder.is_dir():
                self._simple_error(HTTPStatus.NOT_FOUND, "not found", body)
                return
            if (folder / "index.html").is_file():  # the wheelhouse page, as nginx's `index`
                self._file(folder / "index.html", content_type_for("index.html"), body)
                return
            names = sorted(
                e.name + ("/" if e.is_dir() else "")
                for e in os.scandir(folder)
                if not e.name.startswith(".")
            )
            title = html.escape("/" + rel)
            links = "".join(f'<a href="{quote(n)}">{html.escape(n)}</a><br>\n' for n in names)
            data = (
                f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>"
                f"<body><h1>{title}</h1>\n{links}</body></html>\n"
            ).encode()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _file(self, path: Path, ctype: str, body: bool, vary: bool = False) -> None:
            if escape_reason(str(base), path.relative_to(base).as_posix()) is not None:
                # a symlink inside the wheelhouse that points out of it is never followed
                self._simple_error(HTTPStatus.NOT_FOUND, "not found", body)
                return
            try:
                f = path.open("rb")
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                hint = " (run `wheelport index`)" if "simple" in path.parts else ""
                self._simple_error(HTTPStatus.NOT_FOUND, f"not found{hint}", body)
                return
            # No lock needed while a sync runs: wheelport writes every file under a temporary
            # name and renames it into place, and repairs replace rather than edit, so this
            # descriptor names one complete inode whose bytes never change; headers come from
            # fstat of that same descriptor. A page and the wheels it names may be from two
            # moments of a sync, but pip checks each wheel against the page's sha256.
            with f:
                st = os.fstat(f.fileno())
                etag = _etag(st)
                if vary:  # one URL, several representations: tag each
                    etag = etag[:-1] + "-" + ("json" if "json" in ctype else "html") + '"'
                if self._not_modified(etag, st.st_mtime):
                    self.send_response(HTTPStatus.NOT_MODIFIED)
                    self.send_header("ETag", etag)
                    if vary:
                        self.send_header("Vary", "Accept")
                    self.end_headers()
                    return
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(st.st_size))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
                if vary:
                    self.send_header("Vary", "Accept")
                self.end_headers()
                if body:
                    shutil.copyfileobj(f, self.wfile)

        def _not_modified(self, etag: str, mtime: float) -> bool:
            inm = self.headers.get("If-None-Match")
            if inm is not None:
                tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
                return "*" in tags or etag in tags
            ims = self.headers.get("If-Modified-Since")
            if ims:
                try:
                    since = email.utils.parsedate_to_datetime(ims).timestamp()
                except (TypeError, ValueError, IndexError, OverflowError):
                    return False
                return int(mtime) <= since
            return False

    return Handler


class _ThreadingHTTPServerV6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def make_server(root: Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A (not yet running) threaded HTTP server for the wheelhouse at ``root``.

    ``port=0`` picks a free port (read it from ``server.server_address``). Raises
    :class:`~wheelport.errors.UsageError` when ``root`` is not a directory or the address
    cannot be bound.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(
            f"wheelhouse {root} does not exist",
            hint="run `wheelport sync` first or pass the right directory",
            path=str(root),
        )
    if not (root / "simple" / "index.html").is_file():
        log.warning("%s has no simple/ index yet; run `wheelport index`", root)
    server_class = _ThreadingHTTPServerV6 if ":" in host else ThreadingHTTPServer
    try:
        server = server_class((host, port), make_handler(root))
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --host/--port",
        ) from exc
    server.daemon_threads = True
    return server


def serve(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``root`` until interrupted (Ctrl-C returns cleanly).

    ``on_ready`` receives the index URL (``http://host:port/simple/``) once listening.
    """
    server = make_server(root, host, port)
    bound_host, bound_port = server.server_address[:2]
    if on_ready is not None:
        shown = f"[{bound_host!s}]" if ":" in str(bound_host) else str(bound_host)
        on_ready(f"http://{shown}:{bound_port}/simple/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
