"""The static index writer: ``simple/`` over ``wheels/`` and ``sdists/``.

It writes a PEP 503 HTML and a PEP 691 (v1.1) JSON page per project plus the project lists,
and the PEP 658 core metadata beside every wheel (``wheels/<wheel>.metadata``), advertised
with both ``data-core-metadata`` and the legacy ``data-dist-info-metadata`` (PEP 714).

Links are relative (``../../wheels/<file>``), so the tree works from ``file://``, behind any
static web server, and through ``wheelport serve``. Output is deterministic: two wheelhouses
holding the same files (and the same manifest facts: yanked, upload time) get byte-identical
indexes.

Re-indexing is incremental. ``simple/.wheelport-index.json`` remembers, per file, its size,
mtime, sha256, Requires-Python and metadata hash; only new or changed files are opened, and a
page is written only when its bytes change (atomically).

The module keeps decisions pure (:func:`plan_pages`, :func:`render_project_html`, ...) and
does the disk work in :func:`write_index`.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import re
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from wheelport.errors import VerifyError
from wheelport.wheelhouse import Wheelhouse, atomic_write_bytes, load_manifest, sha256_file

API_VERSION = "1.1"
STATE_NAME = ".wheelport-index.json"
STATE_VERSION = 1
SDIST_SUFFIXES = (".tar.gz", ".zip")
_DIST_INFO_METADATA = re.compile(r"^([^/]+)\.dist-info/METADATA$")


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


def manifest_facts(manifest: Mapping[str, Any], rel: str) -> Mapping[str, Any]:
    """The manifest's record for ``rel`` (empty mapping when it has none)."""
    artifacts = manifest.get("artifacts") or {}
    record = artifacts.get(rel)
    return record if isinstance(record, Mapping) else {}


def make_entries(
    facts: Iterable[FileFacts], manifest: Mapping[str, Any]
) -> dict[NormalizedName, list[IndexEntry]]:
    """Group files by project (sorted by version, then file name) with manifest facts added."""
    projects: dict[NormalizedName, list[IndexEntry]] = {}
    for fact in facts:
        parsed = classify(fact.rel)
        if parsed is None:
            continue
        record = manifest_facts(manifest, fact.rel)
        yanked = record.get("yanked", False)
        if not isinstance(yanked, (bool, str)):
            yanked = bool(yanked)
        upload = record.get("upload-time", record.get("upload_time"))
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


def render_project_html(name: str, entries: list[IndexEntry]) -> str:
    """The PEP 503 page of one project (with PEP 592/658/714 attributes)."""
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
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


def render_project_json(name: str, entries: list[IndexEntry]) -> str:
    """The PEP 691 (API v1.1) page of one project."""
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
    page = {
        "meta": {"api-version": API_VERSION},
        "name": name,
        "files": files,
        "versions": [str(v) for v in versions],
    }
    return json.dumps(page, indent=1, sort_keys=True) + "\n"


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
    return json.dumps(page, indent=1, sort_keys=True) + "\n"


def plan_pages(projects: Mapping[NormalizedName, list[IndexEntry]]) -> dict[str, str]:
    """Every page of the index: path relative to the wheelhouse root → text."""
    pages: dict[str, str] = {
        "simple/index.html": render_root_html(projects),
        "simple/index.json": render_root_json(projects),
    }
    for name, entries in projects.items():
        pages[f"simple/{name}/index.html"] = render_project_html(name, entries)
        pages[f"simple/{name}/index.json"] = render_project_json(name, entries)
    return pages


def parse_requires_python(metadata: bytes) -> str | None:
    """The ``Requires-Python`` header of core metadata bytes (None when absent or empty)."""
    text = metadata.decode("utf-8", errors="replace")
    value = HeaderParser().parsestr(text, headersonly=True).get("Requires-Python")
    if value is None:
        return None
    value = " ".join(str(value).split())
    return value or None


# --------------------------------------------------------------------------- reading artifacts


def read_wheel_metadata(path: Path) -> bytes:
    """The bytes of the wheel's ``<name>.dist-info/METADATA``."""
    try:
        with zipfile.ZipFile(path) as zf:
            candidates = [n for n in zf.namelist() if _DIST_INFO_METADATA.match(n)]
            if len(candidates) > 1:
                name, version, _b, _t = parse_wheel_filename(path.name)
                wanted = [
                    n
                    for n in candidates
                    if canonicalize_name(n.split("-", 1)[0]) == name
                    and n.split(".dist-info")[0].endswith(str(version))
                ]
                candidates = wanted or candidates
            if not candidates:
                raise VerifyError(
                    f"wheel {path.name} has no .dist-info/METADATA",
                    hint="remove or rebuild it, then run `wheelport index` again",
                    path=str(path),
                )
            return zf.read(sorted(candidates)[0])
    except (zipfile.BadZipFile, OSError) as exc:
        raise VerifyError(
            f"cannot read wheel {path.name}: {exc}",
            hint="remove or re-fetch it, then run `wheelport index` again",
            path=str(path),
        ) from exc


def read_sdist_metadata(path: Path) -> bytes | None:
    """The bytes of the sdist's top-level ``PKG-INFO`` (None when it has none)."""
    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for n in zf.namelist():
                    if n.count("/") == 1 and n.endswith("/PKG-INFO"):
                        return zf.read(n)
            return None
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                top_level = member.name.count("/") == 1
                if member.isfile() and top_level and member.name.endswith("/PKG-INFO"):
                    f = tf.extractfile(member)
                    return f.read() if f else None
        return None
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


def _scan(wh: Wheelhouse) -> tuple[dict[str, os.stat_result], list[str]]:
    """Artifacts on disk (rel → stat) and the names skipped as not distributions."""
    found: dict[str, os.stat_result] = {}
    skipped: list[str] = []
    for folder in (wh.wheels, wh.sdists):
        if not folder.is_dir():
            continue
        with os.scandir(folder) as it:
            for item in it:
                if item.name.startswith(".") or item.name.endswith(".metadata"):
                    continue
                if not item.is_file():
                    continue
                rel = f"{folder.name}/{item.name}"
                if classify(rel) is None:
                    skipped.append(f"{rel}: not a wheel or sdist file name")
                    continue
                found[rel] = item.stat()
    return found, sorted(skipped)


def _write_if_changed(
    path: Path, data: bytes, known_sha: str | None, state_pages: dict[str, str], key: str
) -> bool:
    """Write ``data`` atomically unless the file already holds exactly it."""
    digest = hashlib.sha256(data).hexdigest()
    if known_sha == digest:
        with contextlib.suppress(OSError):
            if path.stat().st_size == len(data):
                state_pages[key] = digest
                return False
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            state_pages[key] = digest
            return False
    atomic_write_bytes(path, data)
    state_pages[key] = digest
    return True


def _index_file(
    wh: Wheelhouse, rel: str, st: os.stat_result, record: Mapping[str, Any]
) -> tuple[FileFacts, bytes | None]:
    """Open one new or changed artifact: its facts and (wheels) its METADATA bytes."""
    path = wh.root / rel
    sha = record.get("sha256")
    if not (isinstance(sha, str) and record.get("size") == st.st_size and len(sha) == 64):
        sha = sha256_file(path)
    metadata: bytes | None
    if rel.startswith("wheels/"):
        metadata = read_wheel_metadata(path)
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


def write_index(root: Path, *, manifest: Mapping[str, Any] | None = None) -> IndexReport:
    """Write (or bring up to date) ``root/simple/`` and ``root/wheels/*.metadata``.

    ``manifest`` defaults to ``root/wheelport.json`` (or nothing when it does not exist); its
    ``artifacts[rel]`` records supply sha256/size (trusted when the size matches), ``yanked``
    and ``upload-time``. Only new or changed files are opened; only pages whose bytes change
    are written. Raises :class:`~wheelport.errors.VerifyError` for an unreadable artifact.
    """
    wh = Wheelhouse(Path(root))
    if manifest is None:
        manifest = load_manifest(wh.manifest_path)
    state_path = wh.simple / STATE_NAME
    state = _load_state(state_path)
    old_files: dict[str, Any] = state.get("files", {})
    old_pages: dict[str, str] = state.get("pages", {})

    found, skipped = _scan(wh)
    facts: list[FileFacts] = []
    files_read: list[str] = []
    metadata_written: list[str] = []
    for rel, st in sorted(found.items()):
        cached = old_files.get(rel)
        fact: FileFacts | None = None
        if cached and cached.get("size") == st.st_size and cached.get("mtime_ns") == st.st_mtime_ns:
            fact = FileFacts.from_state(rel, cached)
            if fact.metadata_sha256 and not (wh.root / f"{rel}.metadata").is_file():
                fact = None  # the .metadata file went missing: read the wheel again
        if fact is None:
            fact, metadata = _index_file(wh, rel, st, manifest_facts(manifest, rel))
            files_read.append(rel)
            if metadata is not None:
                meta_path = wh.root / f"{rel}.metadata"
                with contextlib.suppress(OSError):
                    if meta_path.read_bytes() == metadata:
                        metadata = None
                if metadata is not None:
                    atomic_write_bytes(meta_path, metadata)
                    metadata_written.append(f"{rel}.metadata")
        facts.append(fact)

    projects = make_entries(facts, manifest)
    pages = plan_pages(projects)
    new_pages: dict[str, str] = {}
    pages_written = [
        key
        for key, text in pages.items()
        if _write_if_changed(
            wh.root / key, text.encode("utf-8"), old_pages.get(key), new_pages, key
        )
    ]

    removed = _remove_stale(wh, set(pages), set(found), old_pages)

    new_state = {
        "version": STATE_VERSION,
        "files": {f.rel: f.to_state() for f in facts},
        "pages": dict(sorted(new_pages.items())),
    }
    if new_state != state:
        atomic_write_bytes(
            state_path, (json.dumps(new_state, indent=1, sort_keys=True) + "\n").encode()
        )

    return IndexReport(
        projects=len(projects),
        files=len(facts),
        pages_written=tuple(pages_written),
        metadata_written=tuple(metadata_written),
        files_read=tuple(files_read),
        removed=tuple(removed),
        skipped=tuple(skipped),
    )


def _remove_stale(
    wh: Wheelhouse, pages: set[str], artifacts: set[str], old_pages: Mapping[str, str]
) -> list[str]:
    """Delete pages of projects that have no files any more and orphaned ``.metadata``."""
    removed: list[str] = []
    candidates = set(old_pages)
    if wh.simple.is_dir():
        for sub in wh.simple.iterdir():
            if sub.is_dir() and not sub.name.startswith("."):
                for page in ("index.html", "index.json"):
                    if (sub / page).exists():
                        candidates.add(f"simple/{sub.name}/{page}")
    for key in sorted(candidates - pages):
        path = wh.root / key
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(key)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only succeeds when empty
    if wh.wheels.is_dir():
        for meta in sorted(wh.wheels.glob("*.whl.metadata")):
            if f"wheels/{meta.name[: -len('.metadata')]}" not in artifacts:
                meta.unlink()
                removed.append(f"wheels/{meta.name}")
    return removed
