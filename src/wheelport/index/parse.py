"""Index pages read into files: PEP 691 JSON and PEP 503 HTML project pages, PEP 792 status.

Every link a page gives is checked before it becomes a :class:`~wheelport.index.models.DistFile`
(:func:`~wheelport.index.models.make_file`): an http(s) page may link http(s) files only, a
``file://`` index ``file://`` files only (:class:`_Refused`: a remote index must never make
wheelport read local files). A project's files are grouped by version, each version's made on
first use (:class:`VersionFiles`). Pure: the pages are handed in as text or data.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import marshal
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from wheelport.credentials import redact
from wheelport.index.models import DistFile, filename_version, make_file

#: the index client's logger: its warnings are named as they always were
log = logging.getLogger("wheelport.index.client")


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
        if self.kind == "http(s)" and url.startswith(("https://", "http://")):
            return True  # the common case, without splitting each of a page's thousands of URLs
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
        filename = unquote(path.rsplit("/", 1)[-1].split("?", 1)[0])
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
    body: bytes | str, page_url: str, project: str, index_url: str
) -> list[DistFile]:
    """Files of a PEP 691 project page (raises ValueError for a body that is not JSON)."""
    rows, _ = read_json_page(body, page_url)
    return VersionFiles.of_rows(rows, page_url, project, index_url).files()


def read_json_page(body: bytes | str, page_url: str) -> tuple[list[Row], ProjectStatus | None]:
    """The file entries (as :data:`Row`) and the PEP 792 status of a PEP 691 page.

    Each entry that names a file (``filename`` and ``url`` strings) becomes its row as soon as
    the decoder has read it, so a page of thousands of files is never held as thousands of
    dicts. Entries of ``files`` that do not name a file, or link outside the page's own kind
    (see :class:`_Refused`), are dropped, with one warning. Raises ValueError for a body that is
    not JSON.
    """
    data = json.loads(body, object_hook=_entry_row)
    if not isinstance(data, dict):
        return [], None
    files = data.get("files")
    rows: list[Row] = []
    if isinstance(files, list):
        refused = _Refused(page_url)
        for row in files:
            if type(row) is not tuple:  # only the hook makes tuples: JSON arrays are lists
                continue
            raw = row[1]
            if raw.startswith(("https://", "http://")):
                if not refused.allows(raw):
                    continue
            # a relative URL takes the page's scheme; only one that names a scheme can differ
            elif _SCHEMED.match(raw) and not refused.allows(urljoin(page_url, raw)):
                continue
            rows.append(row)
        refused.warn()
    return rows, parse_json_status(data)


def _entry_row(obj: dict[str, Any]) -> Any:
    """``json`` object hook: an object that names a file becomes its :data:`Row`."""
    # called for every object of the page (each file's ``hashes`` too): most have no "url"
    if "url" in obj and isinstance(obj["url"], str) and isinstance(obj.get("filename"), str):
        return json_row(obj)
    return obj


#: what wheelport reads of one PEP 691 file entry: (filename, url, sha256, requires-python,
#: yanked, core-metadata, size, upload-time). A page's entries are kept as these tuples, not as
#: the parsed dicts: a big project lists thousands of files, held for the whole run.
Row = tuple["str | None", str, Any, Any, Any, "str | bool", Any, Any]


def json_row(item: Mapping[str, Any]) -> Row:
    """The fields of a PEP 691 file entry wheelport reads (``filename`` and ``url`` are str)."""
    hashes = item.get("hashes")
    meta = item.get("core-metadata", item.get("dist-info-metadata", False))
    core: str | bool = False
    if isinstance(meta, dict):
        core = str(meta.get("sha256", True)) if meta else True
    elif meta:
        core = True
    requires = item.get("requires-python")
    filename, url = item["filename"], item["url"]
    sha = hashes.get("sha256") if isinstance(hashes, Mapping) else None
    if isinstance(sha, str) and len(sha) == 64:
        # 64 hex digits: half the memory as bytes; spelled out again when used. (fromhex takes
        # hex digits and skips whitespace: 64 characters give 32 bytes only when all are digits)
        try:
            raw = bytes.fromhex(sha)
        except ValueError:
            pass
        else:
            if len(raw) == 32:
                sha = raw
    return (
        None if url.endswith("/" + filename) else filename,  # (most URLs end in the name)
        url,
        sha,
        sys.intern(requires) if isinstance(requires, str) else requires,  # a few distinct values
        item.get("yanked", False),
        core,
        item.get("size"),
        item.get("upload-time"),
    )


def upload_instant(value: object) -> dt.datetime | None:
    """A PEP 700 ``upload-time`` (ISO 8601 with its offset, e.g. ``2026-12-01T09:30:00.123456Z``)
    as an aware datetime; None for anything else (absent, not a string, no offset, garbage)."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        instant = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else None


def row_filename(row: Row) -> str:
    """A row's file name (kept only when its URL does not end in it)."""
    return row[0] if row[0] is not None else row[1].rsplit("/", 1)[1]


def json_file(row: Row, page_url: str, project: str, index_url: str) -> DistFile | None:
    """One file entry of a PEP 691 page, from its :func:`json_row` (None for a file wheelport
    ignores)."""
    _, raw, sha256, requires, yanked, core, size, uploaded = row
    filename = row_filename(row)
    if isinstance(sha256, bytes):
        sha256 = sha256.hex()
    url = raw if raw.startswith(("https://", "http://")) else urljoin(page_url, raw)
    return make_file(
        filename=filename,
        url=url.split("#", 1)[0],
        project=project,
        index_url=index_url,
        sha256=sha256,
        requires_python=requires or None,
        yanked=(yanked if isinstance(yanked, str) else "") if yanked else None,
        core_metadata=core,
        size=size,
        upload_time=uploaded,
        page=redact(page_url),
    )


def _pack(rows: list[Row]) -> list[Row] | bytes:
    """Rows as one ``marshal`` string (read back by :class:`VersionFiles` alone: only the
    decoded page's plain values are in it), or as they are if a value will not pack."""
    try:
        return marshal.dumps(rows)
    except ValueError:
        return rows


class VersionFiles(Mapping[Version, list[DistFile]]):
    """A project's files grouped by version. A big page lists thousands of files of hundreds of
    versions while a resolution looks at a few: a version's files are made on first access.
    A PEP 691 page's rows are kept packed (``marshal``, about half the memory of the tuples and
    strings) until then."""

    def __init__(
        self,
        groups: Mapping[Version, list[Any] | bytes],
        make: Callable[[Any], DistFile | None],
        *,
        status: ProjectStatus | None = None,
    ) -> None:
        self._groups = groups
        self._make = make
        self._built: dict[Version, list[DistFile]] = {}
        #: the page's PEP 792 project status (None: the index gave none, i.e. active)
        self.status = status
        self._newest_first: list[Version] | None = None
        self._inside: dict[str, list[Version]] = {}

    @classmethod
    def of(cls, files: Iterable[DistFile]) -> VersionFiles:
        groups: dict[Version, list[Any]] = {}
        for f in files:
            groups.setdefault(f.version, []).append(f)
        return cls(groups, lambda f: f)

    @classmethod
    def of_rows(
        cls, rows: Iterable[Row], page_url: str, project: str, index_url: str
    ) -> VersionFiles:
        """A PEP 691 page's files from :func:`read_json_page`'s rows."""
        groups: dict[Version, list[Any]] = {}
        for row in rows:
            version = filename_version(row_filename(row))
            if version is not None:
                groups.setdefault(version, []).append(row)
        return cls(
            {version: _pack(group) for version, group in groups.items()},
            lambda row: json_file(row, page_url, project, index_url),
        )

    def __getitem__(self, version: Version) -> list[DistFile]:
        built = self._built.get(version)
        if built is None:
            group = self._groups[version]
            if isinstance(group, bytes):
                group = marshal.loads(group)
            built = [f for f in map(self._make, group) if f is not None]
            self._built[version] = built  # a race builds equal lists twice: harmless
        return built

    def __iter__(self) -> Iterator[Version]:
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)

    def files(self) -> list[DistFile]:
        return [f for v in self._groups for f in self[v]]

    def newest_first(self) -> list[Version]:
        """The versions, newest first (sorted once for every target that asks; a race sorts
        twice into equal lists: harmless)."""
        versions = self._newest_first
        if versions is None:
            versions = self._newest_first = sorted(self._groups, reverse=True)
        return versions

    def inside(self, spec: SpecifierSet) -> list[Version]:
        """The versions inside ``spec``, newest first, prereleases included (memoized by the
        specifier's text: the targets' resolutions ask again and again with the same ones)."""
        key = str(spec)
        found = self._inside.get(key)
        if found is None:
            versions = self.newest_first()
            found = [v for v in versions if spec.contains(v, prereleases=True)] if key else versions
            self._inside[key] = found
        return found
