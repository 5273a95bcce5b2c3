"""The static index writer: ``simple/`` over ``wheels/`` and ``sdists/``.

It writes a PEP 503 HTML and a PEP 691 (v1.1) JSON page per project plus the project lists,
and the PEP 658 core metadata beside every wheel (``wheels/<wheel>.metadata``), advertised
with both ``data-core-metadata`` and the legacy ``data-dist-info-metadata`` (PEP 714).
PEP 700 ``versions``, ``size`` and ``upload-time`` are on every JSON page (``upload-time`` for
files the manifest or a lock dates: downloaded ones; built files have none). A project whose
lock entry records a PEP 792 status other than ``active`` gets ``project-status`` (its JSON
page then says API v1.4) and the ``pypi:project-status`` meta tags in its HTML page.

Links are relative (``../../wheels/<file>``), so the tree works from ``file://``, behind any
static web server, and through ``wheelport serve``. Output is deterministic: two wheelhouses
holding the same files (and the same manifest facts: yanked, upload time) get byte-identical
indexes.

Re-indexing is incremental. ``simple/.wheelport-index.json`` remembers, per file, its size,
mtime, sha256, Requires-Python and metadata hash; only new or changed files are opened, and a
page is written only when its bytes change (atomically).

The module keeps decisions pure (:func:`render_project_html`, :func:`render_root_json`, ...) and
does the disk work in :func:`write_index`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import io
import json
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from wheelport.errors import UsageError, VerifyError
from wheelport.manifest import ArtifactRecord, Manifest
from wheelport.wheelhouse import Wheelhouse, atomic_write_bytes, load_manifest, sha256_file

API_VERSION = "1.1"
#: PEP 792 project status needs API v1.4; only pages that carry a status say so
STATUS_API_VERSION = "1.4"
STATE_NAME = ".wheelport-index.json"
STATE_VERSION = 1
SDIST_SUFFIXES = (".tar.gz", ".zip")
#: compact, sorted: the C encoder, byte-stable output
_JSON: dict[str, Any] = {"sort_keys": True, "separators": (",", ":")}
#: key of the project list in the state's fingerprints (not a valid project name)
ROOT_KEY = "/"
#: bump when the page format changes, so every page is re-rendered
RENDER_VERSION = 2
SMALL_FILE = 16 << 20


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, kw_only=True)
class FileFacts:
    """What the index needs to know about one artifact (cached in the state file)."""

    #: path relative to the wheelhouse root: ``wheels/<file>`` or ``sdists/<file>``
    rel: str
    size: int
    mtime_ns: int
    sha256: str
    requires_python: str | None
    #: sha256 of the wheel's METADATA (the ``.metadata`` file); None for sdists
    metadata_sha256: str | None

    @property
    def filename(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    def to_state(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
            "requires_python": self.requires_python,
            "metadata_sha256": self.metadata_sha256,
        }

    @classmethod
    def from_state(cls, rel: str, data: Mapping[str, Any]) -> FileFacts:
        return cls(
            rel=rel,
            size=int(data["size"]),
            mtime_ns=int(data["mtime_ns"]),
            sha256=str(data["sha256"]),
            requires_python=data.get("requires_python"),
            metadata_sha256=data.get("metadata_sha256"),
        )


@dataclass(frozen=True, kw_only=True)
class IndexEntry:
    """One file as it appears on a project page."""

    project: NormalizedName
    version: Version
    facts: FileFacts
    #: False, True, or the reason string
    yanked: bool | str = False
    upload_time: str | None = None


@dataclass(frozen=True, kw_only=True)
class IndexReport:
    """What :func:`write_index` did."""

    #: number of projects in the index
    projects: int
    #: number of files (wheels + sdists) indexed
    files: int
    #: pages written because their bytes changed (paths relative to the wheelhouse root)
    pages_written: tuple[str, ...] = ()
    #: ``.metadata`` files written
    metadata_written: tuple[str, ...] = ()
    #: files that were opened (hashed or read) because they were new or changed
    files_read: tuple[str, ...] = ()
    #: pages and ``.metadata`` files removed because their artifacts are gone
    removed: tuple[str, ...] = ()
    #: files in wheels/ or sdists/ that are not distributions (ignored), with the reason
    skipped: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- pure decisions


@functools.lru_cache(maxsize=1 << 16)
def classify(rel: str) -> tuple[NormalizedName, Version] | None:
    """The (normalized project, version) of an artifact path, or None if it is not one."""
    filename = rel.rsplit("/", 1)[-1]
    try:
        if rel.startswith("wheels/") and filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            return name, version
        if rel.startswith("sdists/") and filename.endswith(SDIST_SUFFIXES):
            name, version = parse_sdist_filename(filename)
            return name, version
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None


def _utc(value: object) -> str | None:
    """A PEP 700 ``upload-time`` (``yyyy-mm-ddThh:mm:ss[.ffffff]Z``) from a lock's TOML datetime."""
    if isinstance(value, str):
        return value or None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{value.microsecond:06d}" if value.microsecond else "") + "Z"


@dataclass(frozen=True)
class LockFacts:
    """What the locks tell the index: files' upload times and projects' PEP 792 statuses."""

    upload_times: Mapping[str, str] = field(default_factory=dict)
    #: project → (status, reason), statuses other than ``active`` only
    statuses: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)


#: when locks disagree (made at different times), the gravest status wins
_STATUS_RANK = {"quarantined": 3, "archived": 2, "deprecated": 1}


def lock_facts(wh: Wheelhouse) -> LockFacts:
    """Upload times (by artifact path) and project statuses from every ``pylock.*.toml``
    (each parsed once per version of the file in this process: a sync has them already).

    A lock that cannot be read is skipped: ``verify`` is the verb that names a broken lock."""
    from packaging.pylock import PackageSdist, PackageWheel

    from wheelport.errors import WheelportError
    from wheelport.lock import package_status, read_lock

    times: dict[str, str] = {}
    statuses: dict[str, tuple[str, str | None]] = {}
    for path in wh.lock_paths():
        try:
            lock = read_lock(path)
        except WheelportError:
            continue
        for pkg in lock.packages:
            arts: list[PackageWheel | PackageSdist] = [*(pkg.wheels or [])]
            arts += [pkg.sdist] if pkg.sdist else []
            for art in arts:
                when = _utc(art.upload_time)
                if when and art.path:
                    times.setdefault(art.path, when)
            status = package_status(pkg)
            if status is not None and status.status in _STATUS_RANK:
                name = str(pkg.name)
                old = statuses.get(name)
                if old is None or _STATUS_RANK[status.status] > _STATUS_RANK[old[0]]:
                    statuses[name] = (status.status, status.reason)
    return LockFacts(times, statuses)


def make_entries(
    facts: Iterable[FileFacts],
    manifest: Manifest,
    upload_times: Mapping[str, str] | None = None,
) -> dict[NormalizedName, list[IndexEntry]]:
    """Group files by project (sorted by version, then file name) with manifest facts added
    (``upload_times``: the locks' upload times by path, for files the manifest does not date)."""
    upload_times = upload_times or {}
    projects: dict[NormalizedName, list[IndexEntry]] = {}
    for fact in facts:
        parsed = classify(fact.rel)
        if parsed is None:
            continue
        record = manifest.artifacts.get(fact.rel)
        yanked = record.yanked if record else False
        if yanked == "":
            yanked = True  # PEP 691: a reason is a non-empty string
        upload = (record.upload_time if record else None) or upload_times.get(fact.rel)
        projects.setdefault(parsed[0], []).append(
            IndexEntry(
                project=parsed[0],
                version=parsed[1],
                facts=fact,
                yanked=yanked,
                upload_time=str(upload) if upload else None,
            )
        )
    for entries in projects.values():
        entries.sort(key=lambda e: (e.version, e.facts.filename))
    return dict(sorted(projects.items()))


def _file_url(entry: IndexEntry) -> str:
    return "../../" + quote(entry.facts.rel)


def render_project_html(
    name: str, entries: list[IndexEntry], status: tuple[str, str | None] | None = None
) -> str:
    """The PEP 503 page of one project (with PEP 592/658/714 attributes, PEP 792 status)."""
    version = STATUS_API_VERSION if status else API_VERSION
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{version}">',
    ]
    if status:
        lines.append(f'    <meta name="pypi:project-status" content="{html.escape(status[0])}">')
        if status[1]:
            lines.append(
                f'    <meta name="pypi:project-status-reason" content="{html.escape(status[1])}">'
            )
    lines += [
        f"    <title>Links for {html.escape(name)}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {html.escape(name)}</h1>",
    ]
    for entry in entries:
        facts = entry.facts
        attrs = [f'href="{html.escape(_file_url(entry))}#sha256={facts.sha256}"']
        if facts.requires_python:
            attrs.append(f'data-requires-python="{html.escape(facts.requires_python)}"')
        if facts.metadata_sha256:
            attrs.append(f'data-dist-info-metadata="sha256={facts.metadata_sha256}"')
            attrs.append(f'data-core-metadata="sha256={facts.metadata_sha256}"')
        if entry.yanked is not False:
            reason = entry.yanked if isinstance(entry.yanked, str) else ""
            attrs.append(f'data-yanked="{html.escape(reason)}"')
        lines.append(f"    <a {' '.join(attrs)}>{html.escape(facts.filename)}</a><br>")
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines)


def render_project_json(
    name: str, entries: list[IndexEntry], status: tuple[str, str | None] | None = None
) -> str:
    """The PEP 691 (API v1.1; v1.4 with a PEP 792 ``status``) page of one project."""
    files: list[dict[str, Any]] = []
    for entry in entries:
        facts = entry.facts
        meta: dict[str, str] | bool = (
            {"sha256": facts.metadata_sha256} if facts.metadata_sha256 else False
        )
        record: dict[str, Any] = {
            "filename": facts.filename,
            "url": _file_url(entry),
            "hashes": {"sha256": facts.sha256},
            "core-metadata": meta,
            "dist-info-metadata": meta,
            "yanked": entry.yanked,
            "size": facts.size,
        }
        if facts.requires_python:
            record["requires-python"] = facts.requires_python
        if entry.upload_time:
            record["upload-time"] = entry.upload_time
        files.append(record)
    versions = sorted({e.version for e in entries})
    page: dict[str, Any] = {
        "meta": {"api-version": STATUS_API_VERSION if status else API_VERSION},
        "name": name,
        "files": files,
        "versions": [str(v) for v in versions],
    }
    if status:
        page["project-status"] = {
            "status": status[0],
            **({"reason": status[1]} if status[1] else {}),
        }
    return json.dumps(page, **_JSON) + "\n"


def render_root_html(names: Iterable[str]) -> str:
    """The PEP 503 project list."""
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        "    <title>Simple index</title>",
        "  </head>",
        "  <body>",
    ]
    lines += [f'    <a href="{quote(n)}/">{html.escape(n)}</a><br>' for n in names]
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines)


def render_root_json(names: Iterable[str]) -> str:
    """The PEP 691 (API v1.1) project list."""
    page = {"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n in names]}
    return json.dumps(page, **_JSON) + "\n"


def fingerprint(entries: list[IndexEntry], status: tuple[str, str | None] | None = None) -> str:
    """A digest of everything a project's pages show (mtimes excluded)."""
    rows = [
        [
            e.facts.rel,
            e.facts.size,
            e.facts.sha256,
            e.facts.requires_python,
            e.facts.metadata_sha256,
            e.yanked,
            e.upload_time,
        ]
        for e in entries
    ]
    head: list[Any] = [RENDER_VERSION, list(status)] if status else [RENDER_VERSION]
    return hashlib.sha256(json.dumps([*head, rows]).encode()).hexdigest()


def fingerprint_names(names: Iterable[str]) -> str:
    """A digest of the project list."""
    return hashlib.sha256(json.dumps([RENDER_VERSION, list(names)]).encode()).hexdigest()


def parse_requires_python(metadata: bytes) -> str | None:
    """The ``Requires-Python`` header of core metadata bytes (None when absent or empty)."""
    from wheelport.index.metadata import header_block

    headers = header_block(metadata).decode("utf-8", errors="replace").replace("\r\n", "\n")
    value: list[str] | None = None
    for line in headers.split("\n"):
        if value is not None:
            if line[:1] in (" ", "\t"):  # a folded continuation line
                value.append(line)
                continue
            break
        name, sep, rest = line.partition(":")
        if sep and name.strip().lower() == "requires-python":
            value = [rest]
    if value is None:
        return None
    return " ".join(" ".join(value).split()) or None


# --------------------------------------------------------------------------- reading artifacts
# (the archive readers are imported here, when a page needs a file's metadata: a wheelhouse
# whose pages are current is indexed without them)


def read_wheel_metadata(path: Path, data: bytes | None = None) -> bytes:
    """The bytes of the wheel's ``<name>.dist-info/METADATA`` (``data``: the wheel, if read)."""
    from wheelport.index.metadata import read_metadata_member, wheel_contents, wheel_metadata_member

    try:
        if data is None:  # read once per version of the file in this process (fetch read it)
            metadata = wheel_contents(path)[0]
        else:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                member = wheel_metadata_member(zf, path.name)
                metadata = read_metadata_member(zf, member) if member else None
    except (zipfile.BadZipFile, OSError) as exc:
        raise VerifyError(
            f"cannot read wheel {path.name}: {exc}",
            hint="remove or re-fetch it, then run `wheelport index` again",
            path=str(path),
        ) from exc
    if metadata is None:
        raise VerifyError(
            f"wheel {path.name} has no .dist-info/METADATA",
            hint="remove or rebuild it, then run `wheelport index` again",
            path=str(path),
        )
    return metadata


def read_sdist_metadata(path: Path) -> bytes | None:
    """The bytes of the sdist's top-level ``PKG-INFO`` (None when it has none)."""
    import tarfile

    from wheelport.index.metadata import sdist_members

    try:
        return sdist_members(path, ("PKG-INFO",)).get("PKG-INFO")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise VerifyError(
            f"cannot read sdist {path.name}: {exc}",
            hint="remove or re-fetch it, then run `wheelport index` again",
            path=str(path),
        ) from exc


# --------------------------------------------------------------------------- disk work


def _load_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        return {}
    return data


def _scan(wh: Wheelhouse) -> tuple[dict[str, os.stat_result], set[str], list[str]]:
    """Artifacts on disk (rel → stat), the ``.metadata`` files present, the names skipped."""
    found: dict[str, os.stat_result] = {}
    metas: set[str] = set()
    skipped: list[str] = []
    for folder in (wh.wheels, wh.sdists):
        if not folder.is_dir():
            continue
        with os.scandir(folder) as it:
            for item in it:
                rel = f"{folder.name}/{item.name}"
                if item.name.startswith("."):
                    continue
                if item.name.endswith(".metadata"):
                    metas.add(rel)
                    continue
                if not item.is_file():
                    continue
                if classify(rel) is None:
                    skipped.append(f"{rel}: not a wheel or sdist file name")
                    continue
                found[rel] = item.stat()
    return found, metas, sorted(skipped)


def _differs(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() != data
    except OSError:
        return True


def _write_all(root: Path, writes: list[tuple[str, bytes]]) -> None:
    """Write files atomically, one after another: nothing waits on an fsync (index files are
    derived), and in threads each of a write's dozen system calls waited to get the GIL back
    (884 files of the 15-target workload: 0.4 s in threads, 0.2 s here)."""
    for key, data in writes:
        atomic_write_bytes(root / key, data, durable=False)


def _index_file(
    wh: Wheelhouse, rel: str, st: os.stat_result, record: ArtifactRecord | None
) -> tuple[FileFacts, bytes | None]:
    """Open one new or changed artifact: its facts and (wheels) its METADATA bytes."""
    path = wh.root / rel
    if record is not None and record.size == st.st_size:
        sha, data = record.sha256, None
    else:  # small files are read once, for both the hash and the metadata
        data = path.read_bytes() if st.st_size <= SMALL_FILE else None
        sha = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path)
    metadata: bytes | None
    if rel.startswith("wheels/"):
        metadata = read_wheel_metadata(path, data)
        requires_python = parse_requires_python(metadata)
        meta_sha: str | None = hashlib.sha256(metadata).hexdigest()
    else:
        pkg_info = read_sdist_metadata(path)
        requires_python = parse_requires_python(pkg_info) if pkg_info else None
        metadata, meta_sha = None, None
    facts = FileFacts(
        rel=rel,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=sha,
        requires_python=requires_python,
        metadata_sha256=meta_sha,
    )
    return facts, metadata


def write_index(root: Path, *, manifest: Manifest | None = None) -> IndexReport:
    """Write (or bring up to date) ``root/simple/`` and ``root/wheels/*.metadata``.

    ``manifest`` defaults to ``root/wheelport.json`` (or nothing when it does not exist); its
    ``artifacts[rel]`` records supply sha256/size (trusted when the size matches), ``yanked``
    and ``upload-time`` (else the locks' ``upload-time``); the locks' recorded PEP 792 project
    statuses are shown. Only new or changed files are opened; only pages whose bytes change
    are written (atomically). Raises
    :class:`~wheelport.errors.VerifyError` for an unreadable artifact.
    """
    wh = Wheelhouse(Path(root))
    if not wh.root.is_dir():
        raise UsageError(
            f"wheelhouse {wh.root} does not exist",
            hint="run `wheelport sync` first or pass the right directory",
            path=str(wh.root),
        )
    if manifest is None:
        manifest = load_manifest(wh.manifest_path)
    state_path = wh.simple / STATE_NAME
    state = _load_state(state_path)
    old_files: dict[str, Any] = state.get("files", {})
    old_prints: dict[str, str] = state.get("projects", {})

    found, metas, skipped = _scan(wh)
    facts: list[FileFacts] = []
    files_read: list[str] = []
    meta_writes: list[tuple[str, bytes]] = []
    for rel, st in sorted(found.items()):
        cached = old_files.get(rel)
        fact: FileFacts | None = None
        if cached and cached.get("size") == st.st_size and cached.get("mtime_ns") == st.st_mtime_ns:
            fact = FileFacts.from_state(rel, cached)
            if fact.metadata_sha256 and f"{rel}.metadata" not in metas:
                fact = None  # the .metadata file went missing: read the wheel again
        if fact is None:
            fact, metadata = _index_file(wh, rel, st, manifest.artifacts.get(rel))
            files_read.append(rel)
            if metadata is not None and _differs(wh.root / f"{rel}.metadata", metadata):
                meta_writes.append((f"{rel}.metadata", metadata))
        facts.append(fact)
    _write_all(wh.root, meta_writes)

    from_locks = lock_facts(wh)
    statuses = from_locks.statuses
    projects = make_entries(facts, manifest, from_locks.upload_times)
    prints: dict[str, str] = {
        name: fingerprint(e, statuses.get(name)) for name, e in projects.items()
    }
    prints[ROOT_KEY] = fingerprint_names(projects)
    page_writes: list[tuple[str, bytes]] = []
    for name, fp in prints.items():
        if name == ROOT_KEY:
            keys = ("simple/index.html", "simple/index.json")
        else:
            keys = (f"simple/{name}/index.html", f"simple/{name}/index.json")
        if old_prints.get(name) == fp and all(os.path.isfile(wh.root / k) for k in keys):
            continue
        if name == ROOT_KEY:
            texts = (render_root_html(projects), render_root_json(projects))
        else:
            entries = projects[NormalizedName(name)]
            status = statuses.get(name)
            texts = (
                render_project_html(name, entries, status),
                render_project_json(name, entries, status),
            )
        for key, text in zip(keys, texts, strict=True):
            data = text.encode("utf-8")
            if _differs(wh.root / key, data):
                page_writes.append((key, data))
    # project pages first, then the project list that points at them
    _write_all(wh.root, [w for w in page_writes if w[0].count("/") == 2])
    _write_all(wh.root, [w for w in page_writes if w[0].count("/") == 1])

    removed = _remove_stale(wh, set(projects), set(found), metas)

    new_state = {
        "version": STATE_VERSION,
        "files": {f.rel: f.to_state() for f in facts},
        "projects": prints,
    }
    if new_state != state:
        atomic_write_bytes(
            state_path, (json.dumps(new_state, **_JSON) + "\n").encode(), durable=False
        )

    from wheelport.site.page import write_page

    write_page(wh.root, manifest, statuses)  # index.html: the wheelhouse for people
    return IndexReport(
        projects=len(projects),
        files=len(facts),
        pages_written=tuple(k for k, _ in page_writes),
        metadata_written=tuple(k for k, _ in meta_writes),
        files_read=tuple(files_read),
        removed=tuple(removed),
        skipped=tuple(skipped),
    )


def _remove_stale(
    wh: Wheelhouse, projects: set[str], artifacts: set[str], metas: set[str]
) -> list[str]:
    """Delete pages of projects that have no files any more and orphaned ``.metadata``."""
    removed: list[str] = []
    if wh.simple.is_dir():
        with os.scandir(wh.simple) as it:
            stale = sorted(
                e.name
                for e in it
                if e.is_dir() and not e.name.startswith(".") and e.name not in projects
            )
        for name in stale:
            for page in ("index.html", "index.json"):
                with contextlib.suppress(FileNotFoundError):
                    (wh.simple / name / page).unlink()
                    removed.append(f"simple/{name}/{page}")
            with contextlib.suppress(OSError):
                (wh.simple / name).rmdir()  # only when nothing else is in it
    for meta in sorted(metas):
        if meta.endswith(".whl.metadata") and meta[: -len(".metadata")] not in artifacts:
            with contextlib.suppress(FileNotFoundError):
                (wh.root / meta).unlink()
                removed.append(meta)
    return removed
