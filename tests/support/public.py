"""A frozen view of the public index for ``network`` tests: the same answer next year.

Tests that touch the public index never ask it directly. They pass :attr:`PublicIndex.url` (a
PEP 691/503 index on 127.0.0.1) to wheelport, pip and uv; it answers a project page from the
public index, but lists only the files the test data declares for that project:

- ``tests/data/public-index/*.toml``: each file has a ``snapshot`` date and a ``[pins]`` table.
  ``name = ["1.2.3", ...]`` exposes exactly those versions (wheels and sdists of them);
  ``name = "snapshot"`` exposes every file uploaded before that file's snapshot date (for
  resolutions that must have real choices to make, and still never change).
- A project no file declares is answered 404 and recorded; the ``public_index`` fixture then
  fails the test, naming every undeclared project and what to add. So a network test cannot
  depend on "the latest": a release next week is not in any pin and not before any snapshot.

File URLs stay the public index's own (absolute ``https://files.pythonhosted.org/…``), hashes
and sizes included, so downloads are verified as usual; only the page is filtered. Pages are
fetched once per session.
"""

from __future__ import annotations

import html
import json
import os
import ssl
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from support.server import serve_on_loopback, stop_serving

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["DECLARATIONS", "UPSTREAM", "Declared", "PublicIndex", "load_declarations"]

#: the public index the view is of (a mirror can be named with WHEELPORT_TEST_PUBLIC_INDEX)
UPSTREAM = os.environ.get("WHEELPORT_TEST_PUBLIC_INDEX", "https://pypi.org/simple").rstrip("/")
DECLARATIONS = Path(__file__).resolve().parent.parent / "data" / "public-index"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass
class Declared:
    """What a test may see of one project: exact versions, or everything before a date."""

    versions: set[Version] = field(default_factory=set)
    #: files uploaded before this instant are visible (None: only ``versions``)
    before: datetime | None = None
    origins: set[str] = field(default_factory=set)

    def admits(self, version: Version, uploaded: datetime | None) -> bool:
        if version in self.versions:
            return True
        return self.before is not None and uploaded is not None and uploaded < self.before


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def load_declarations(directory: Path = DECLARATIONS) -> dict[str, Declared]:
    """Every declared project (canonical name) across the TOML files of ``directory``."""
    out: dict[str, Declared] = {}
    for path in sorted(directory.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        snapshot = _instant(str(data["snapshot"])) if "snapshot" in data else None
        for raw, value in data.get("pins", {}).items():
            entry = out.setdefault(canonicalize_name(raw), Declared())
            entry.origins.add(path.name)
            if value == "snapshot":
                if snapshot is None:
                    raise ValueError(f"{path.name}: {raw} = 'snapshot' needs a snapshot date")
                # two files snapshotting one name: the later date wins (both stay fixed)
                entry.before = max(filter(None, (entry.before, snapshot)))
            elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                entry.versions.update(Version(v) for v in value)
            else:
                raise ValueError(f"{path.name}: {raw} must be a list of versions or 'snapshot'")
    return out


def _file_version(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def _context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))


class PublicIndex:
    """The 127.0.0.1 view (see the module docstring). ``allow`` declares more for one test."""

    def __init__(self, declared: Mapping[str, Declared] | None = None) -> None:
        self._declared = dict(load_declarations() if declared is None else declared)
        self._extra: dict[str, Declared] = {}
        self._pages: dict[str, dict[str, Any] | None] = {}
        self._lock = threading.Lock()
        #: projects asked for that nothing declares (canonical name -> versions upstream has)
        self.undeclared: dict[str, list[str]] = {}
        #: declared projects whose declared versions matched no upstream file
        self.empty: dict[str, str] = {}
        self.asked: set[str] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> PublicIndex:
        view = self

        class Handler(_Handler):
            index = view

        self._httpd, self._thread = serve_on_loopback(Handler, _QuietServer)
        return self

    def stop(self) -> None:
        stop_serving(self._httpd, self._thread)
        self._httpd, self._thread = None, None

    def __enter__(self) -> PublicIndex:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "PublicIndex is not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/simple/"

    # -- declarations ------------------------------------------------------------------------
    def allow(self, pins: Iterable[str], origin: str = "the test") -> None:
        """Declare ``name==version`` pins for the current test only (e.g. a venv's freeze)."""
        for line in pins:
            name, sep, version = line.strip().partition("==")
            if not sep:
                raise ValueError(f"{line!r}: only exact pins (name==version) can be allowed")
            entry = self._extra.setdefault(canonicalize_name(name), Declared())
            entry.versions.add(Version(version))
            entry.origins.add(origin)

    def reset(self) -> None:
        """Forget one test's extra declarations and findings (the pages stay cached)."""
        with self._lock:
            self._extra.clear()
            self.undeclared.clear()
            self.empty.clear()
            self.asked.clear()

    def declared(self, name: str) -> Declared | None:
        base, extra = self._declared.get(name), self._extra.get(name)
        if base is None or extra is None:
            return base or extra
        return Declared(base.versions | extra.versions, base.before, base.origins | extra.origins)

    def problems(self) -> str | None:
        """What a test asked for that is not pinned, as a failure message (None: nothing)."""
        lines = []
        if self.undeclared:
            lines.append("a network test asked the public index for projects no pin declares:")
            for name, versions in sorted(self.undeclared.items()):
                tail = f" (upstream has {', '.join(versions[-3:])})" if versions else ""
                lines.append(f"  {name}{tail}")
            lines.append(
                f'declare each in a file of {DECLARATIONS} as name = ["VERSION"] (or '
                '"snapshot"), so the test gives the same answer next year'
            )
        for name, why in sorted(self.empty.items()):
            lines.append(f"  {name}: {why}")
        return "\n".join(lines) or None

    # -- pages -------------------------------------------------------------------------------
    def upstream_page(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            if name in self._pages:
                return self._pages[name]
        req = urllib.request.Request(f"{UPSTREAM}/{name}/", headers={"Accept": JSON_TYPE})
        try:
            with urllib.request.urlopen(req, context=_context(), timeout=120) as resp:
                page: dict[str, Any] | None = json.load(resp)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            page = None
        with self._lock:
            self._pages[name] = page
        return page

    def page(self, name: str) -> dict[str, Any] | None:
        """The filtered PEP 691 page of ``name`` (None: 404)."""
        with self._lock:
            self.asked.add(name)
        declared = self.declared(name)
        upstream = self.upstream_page(name)
        if declared is None:
            with self._lock:
                self.undeclared[name] = list((upstream or {}).get("versions", []))
            return None
        if upstream is None:
            self.empty[name] = "declared, but the public index has no such project"
            return None
        files = []
        for item in upstream.get("files", []):
            version = _file_version(str(item.get("filename", "")))
            uploaded = item.get("upload-time")
            when = _instant(uploaded) if isinstance(uploaded, str) else None
            if version is not None and declared.admits(version, when):
                files.append(item)
        missing = sorted(
            str(v) for v in declared.versions
            if not any(_file_version(f["filename"]) == v for f in files)
        )  # fmt: skip
        if missing:
            with self._lock:
                self.empty[name] = f"declared version(s) {', '.join(missing)} have no file upstream"
        kept = {str(v) for f in files if (v := _file_version(f["filename"])) is not None}
        return {
            "meta": {"api-version": "1.1"},
            "name": name,
            "versions": [v for v in upstream.get("versions", []) if v in kept],
            "files": files,
        }


def _html(page: Mapping[str, Any]) -> str:
    links = []
    for f in page["files"]:
        attrs = [f'href="{html.escape(f["url"])}#sha256={f["hashes"].get("sha256", "")}"']
        if f.get("requires-python"):
            attrs.append(f'data-requires-python="{html.escape(f["requires-python"])}"')
        if f.get("yanked"):
            reason = f["yanked"] if isinstance(f["yanked"], str) else ""
            attrs.append(f'data-yanked="{html.escape(reason)}"')
        meta = f.get("core-metadata")
        if isinstance(meta, dict) and meta.get("sha256"):
            attrs.append(f'data-core-metadata="sha256={meta["sha256"]}"')
        links.append(f"<a {' '.join(attrs)}>{html.escape(f['filename'])}</a><br/>")
    body = "\n".join(links)
    return f"<!DOCTYPE html><html><body><h1>{page['name']}</h1>\n{body}\n</body></html>\n"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-answer (uv does, once it has what it needs) is normal."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    index: PublicIndex
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if not path.startswith("/simple/") or path == "/simple/":
            self._send(HTTPStatus.NOT_FOUND, b"only project pages are served\n", "text/plain")
            return
        raw = unquote(path[len("/simple/") :]).strip("/")
        name = canonicalize_name(raw)
        if raw != name:
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", f"/simple/{name}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            page = self.index.page(name)
        except Exception as exc:  # the public index failed: the test sees a 502, not a hang
            self._send(HTTPStatus.BAD_GATEWAY, f"upstream: {exc}\n".encode(), "text/plain")
            return
        if page is None:
            self._send(
                HTTPStatus.NOT_FOUND, b"not declared in tests/data/public-index\n", "text/plain"
            )
            return
        if "json" in self.headers.get("Accept", ""):
            self._send(HTTPStatus.OK, json.dumps(page).encode(), JSON_TYPE)
        else:
            self._send(HTTPStatus.OK, _html(page).encode(), "text/html; charset=utf-8")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
