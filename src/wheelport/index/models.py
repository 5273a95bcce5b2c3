"""Values the index client produces: distribution files and project pages."""

from __future__ import annotations

import functools
import logging
import re
import threading
from dataclasses import dataclass
from functools import cached_property

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

log = logging.getLogger("wheelport.index")

SDIST_SUFFIXES = (".tar.gz", ".zip")


@dataclass(frozen=True, kw_only=True)
class DistFile:
    """One file of a project on an index."""

    filename: str
    url: str
    project: NormalizedName
    version: Version
    is_wheel: bool
    sha256: str | None
    requires_python: str | None
    yanked: str | None  # None: not yanked; "" or a reason: yanked
    core_metadata: str | bool  # sha256 hex, True (served, no hash), or False
    size: int | None
    upload_time: str | None
    index_url: str

    @cached_property
    def tags(self) -> frozenset[Tag]:
        """The wheel's tags (parsed on first use: most files of a big project never need them)."""
        if not self.is_wheel:
            return frozenset()
        try:
            return parse_wheel_filename(self.filename)[3]
        except InvalidWheelFilename:
            return frozenset()

    @property
    def is_yanked(self) -> bool:
        return self.yanked is not None

    @cached_property
    def requires_python_spec(self) -> SpecifierSet | None:
        if not self.requires_python:
            return None
        try:
            return SpecifierSet(self.requires_python)
        except InvalidSpecifier:
            return None  # as pip does: an unparsable requires-python does not exclude

    @property
    def metadata_url(self) -> str:
        return self.url.split("#", 1)[0] + ".metadata"


def parse_filename(filename: str) -> tuple[NormalizedName, Version, bool, frozenset[Tag]] | None:
    """(project, version, is_wheel, tags) from a file name; None for files wheelport ignores."""
    try:
        if filename.endswith(".whl"):
            name, version, _build, tags = parse_wheel_filename(filename)
            return name, version, True, tags
        if filename.endswith(SDIST_SUFFIXES):
            name, version = parse_sdist_filename(filename)
            return name, version, False, frozenset()
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None


@functools.lru_cache(maxsize=65536)
def _version(text: str) -> Version | None:
    """A parsed version, memoized: the files of a big project page share a few hundred."""
    try:
        return Version(text)
    except InvalidVersion:
        return None


_name = functools.lru_cache(maxsize=4096)(canonicalize_name)


def filename_version(filename: str) -> Version | None:
    """The version a wheel or sdist file name carries (None when it does not parse); cheap:
    no name normalization, no tags."""
    if filename.endswith(".whl"):
        parts = filename.split("-")
        return _version(parts[1]) if len(parts) in (5, 6) else None
    for suffix in SDIST_SUFFIXES:
        if filename.endswith(suffix):
            _, sep, version = filename[: -len(suffix)].rpartition("-")
            return _version(version) if sep else None
    return None


def _quick_parse(filename: str) -> tuple[NormalizedName, Version, bool] | None:
    """(project, version, is_wheel) without parsing wheel tags (the slow part for big pages)."""
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        if len(parts) not in (5, 6):
            return None
        version = _version(parts[1])
        return (_name(parts[0]), version, True) if version is not None else None
    parsed = parse_filename(filename)
    if parsed is None:
        return None
    return parsed[0], parsed[1], parsed[2]


#: a wheel file name as PEP 427/491 spell it: name-version(-build)?-python-abi-platform.whl,
#: each part of letters, digits, ``_`` and ``.`` (version also ``+`` and ``!``)
_WHEEL_NAME = re.compile(
    r"[A-Za-z0-9_.]+-[A-Za-z0-9_.+!]+(?:-[0-9][A-Za-z0-9_.]*)?"
    r"-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+\.whl"
)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: object) -> bool:
    """``value`` is a sha256 as wheelport names files by it: 64 lowercase hex digits."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(message: str) -> None:
    """Log a warning about a page once per process (a page's files may be read by several
    threads, or by several targets)."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning("%s", message)


def unsafe_filename(filename: str) -> str | None:
    """Why a file name an index serves cannot name a file here (None: it can): wheelport puts
    files at ``wheels/<name>`` and ``sdists/<name>``, so a name must be one plain path part."""
    if not filename or filename != filename.strip() or "\x00" in filename:
        return "not a plain file name"
    if "/" in filename or "\\" in filename:
        return "it contains a path separator"
    if filename.startswith("."):
        return "it starts with '.'"
    if filename.endswith(".whl") and not _WHEEL_NAME.fullmatch(filename):
        return "not a valid wheel file name (PEP 427)"
    return None


def make_file(
    *,
    filename: str,
    url: str,
    project: str,
    index_url: str,
    sha256: str | None = None,
    requires_python: str | None = None,
    yanked: str | None = None,
    core_metadata: str | bool = False,
    size: int | None = None,
    upload_time: str | None = None,
    page: str = "",
) -> DistFile | None:
    """The file an index lists, or None when wheelport ignores it: not a wheel or sdist of
    ``project``, or an entry no honest index serves (a name that is not one plain file name,
    a malformed sha256), which is also warned about, naming ``page``."""
    if not isinstance(filename, str):
        return None
    if isinstance(sha256, str):
        sha256 = sha256.lower()
    why = unsafe_filename(filename)
    sha_ok = sha256 is None or is_sha256(sha256)
    if why is None and not sha_ok:
        why = f"its sha256 {str(sha256)[:80]!r} is not 64 hex digits"
    if why is not None:
        _warn_once(f"ignoring {filename[:200]!r} on {page or index_url}: {why}")
        return None
    parsed = _quick_parse(filename)
    if parsed is None:
        return None
    name, version, is_wheel = parsed
    if name != project and name != _name(project):
        return None
    return DistFile(
        filename=filename,
        url=url,
        project=name,
        version=version,
        is_wheel=is_wheel,
        sha256=sha256,
        requires_python=requires_python if isinstance(requires_python, str) else None,
        yanked=yanked,
        core_metadata=core_metadata if is_wheel else False,
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        upload_time=upload_time if isinstance(upload_time, str) else None,
        index_url=index_url,
    )
