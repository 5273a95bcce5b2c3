"""Core metadata of a candidate version, without building anything when it can be helped.

The resolver needs a version's dependencies. They are taken from the first of these that
answers (the order pip's and uv's resolvers follow; all wheels of one version carry the same
metadata, which both assume):

1. PEP 658/714 metadata of a wheel of that version — the target's own wheel first;
2. the ``METADATA`` member of a wheel read with HTTP range requests (the zip's central
   directory, then that one member) when the index serves no PEP 658 file — never the whole
   wheel unless the server ignores ranges;
3. the sdist's ``PKG-INFO`` when PEP 643 says its dependency fields are static;
4. the sdist's ``pyproject.toml`` ``[project]`` table when ``dependencies`` and
   ``optional-dependencies`` are not ``dynamic`` (PEP 621);
5. only then a PEP 517 ``prepare_metadata_for_build_wheel`` (the client's injected builder).

This module holds the pure readers (archives, TOML → metadata) and the lazy range-reading
file; the index client decides the order and caches what it learns.
"""

from __future__ import annotations

import contextlib
import email.parser
import io
import logging
import os
import re
import sys
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping
from email.message import Message
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from wheelport.bootstrap import lexical_escape
from wheelport.wheelhouse import Stamp, stat_stamp

log = logging.getLogger(__name__)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: ``<name>-<version>.dist-info/METADATA`` at the top of a wheel
_DIST_INFO_METADATA = re.compile(r"^[^/]+\.dist-info/METADATA$")

#: bytes asked for first: the end of central directory and, for most wheels, the whole directory
TAIL_BYTES = 64 * 1024
#: the most asked for first from a big wheel (see :func:`tail_bytes`)
MAX_TAIL_BYTES = 1 << 20
#: smallest range asked for later (zipfile reads a member's local header in small pieces)
BLOCK_BYTES = 16 * 1024
#: the most bytes of METADATA read from one file (a PEP 658 file, a wheel's member): real ones
#: are kilobytes, a long description makes a few megabytes; a hostile index could send more
MAX_METADATA_BYTES = 16 << 20
#: the most bytes of PEP 770 SBOM members read from one wheel, all of them together: the
#: largest of 592 real wheels of 15 targets holds 1.7 MB (most hold 2-120 KB); a hostile
#: archive could say gigabytes
MAX_SBOM_BYTES = 64 << 20


def read_metadata_member(zf: zipfile.ZipFile, member: str, most: int | None = None) -> bytes:
    """A wheel's METADATA member; one that says it is larger than ``most`` bytes (default
    :data:`MAX_METADATA_BYTES`) is not read (``zipfile.BadZipFile``). zipfile reads no more
    than a member says it holds, and checks its CRC."""
    info = zf.getinfo(member)
    limit = MAX_METADATA_BYTES if most is None else most
    size = member_bytes(info)
    if size > limit:
        raise zipfile.BadZipFile(f"{member} is {size} bytes, more than the {limit} read")
    return zf.read(info)


def member_bytes(info: zipfile.ZipInfo) -> int:
    """The bytes reading an archive member takes, as its entry says: what it unpacks to, or
    what is read to unpack it when that is more (a deflate stream of empty blocks unpacks to
    nothing from gigabytes; over range requests each of them is fetched)."""
    return max(info.file_size, info.compress_size)


#: the end of a METADATA file's header block: a line break, then an empty line
_HEADERS_END = re.compile(rb"\n\r?\n")


def header_block(data: bytes) -> bytes:
    """The header block of a METADATA or PKG-INFO file: its bytes up to the first empty line
    (the line break before it kept). A reader of the header fields stops there either way; the
    body, the long description, is often most of the bytes, and decoding or splitting it was
    most of each reader's time. A cut at a line break never splits a UTF-8 character."""
    end = _HEADERS_END.search(data)
    return data if end is None else data[: end.start() + 1]


def parse_headers(data: bytes) -> Message:
    """The header fields of a METADATA or PKG-INFO file, as the email parser reads them (only
    the :func:`header_block` is handed to it)."""
    return email.parser.BytesHeaderParser().parsebytes(header_block(data))


def tail_bytes(size: int | None) -> int:
    """How much of a wheel's end to ask for first. A big wheel (numpy, pandas: thousands of
    members) has a central directory of a few hundred KiB, and its ``.dist-info`` files
    (METADATA, RECORD) just before it; asking for 1/24th of the file (at most
    :data:`MAX_TAIL_BYTES`) gets them in one request instead of three — a round trip to a
    file the CDN has not cached costs 0.1–0.3 s, the extra bytes a few milliseconds."""
    return max(TAIL_BYTES, min((size or 0) // 24, MAX_TAIL_BYTES))


class RangesUnsupported(Exception):
    """The server answered a range request with the whole file (or not at all)."""


# -- archives ------------------------------------------------------------------------------------


def wheel_metadata_member(zf: zipfile.ZipFile, filename: str) -> str | None:
    """The name of a wheel's own ``.dist-info/METADATA`` member (the one its file name names)."""
    candidates = [n for n in zf.namelist() if _DIST_INFO_METADATA.match(n)]
    if len(candidates) > 1:
        project = canonicalize_name(filename.split("-", 1)[0])
        own = [n for n in candidates if canonicalize_name(n.split("-", 1)[0]) == project]
        candidates = own or candidates
    return sorted(candidates)[0] if candidates else None


def same_version(a: str, b: str) -> bool:
    """Whether two version strings name one version (PEP 440 normalized; else spelled alike)."""
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


#: what this process read of wheel archives, by the file's :func:`stat_stamp`: its METADATA and
#: its PEP 770 SBOM members. A write, truncation or rename over the file changes the stamp, so
#: a changed file is read again (fetch reads each wheel it places; the index writer and the
#: page's licence report then find it here instead of opening the archive again)
_contents: dict[Stamp, tuple[bytes | None, dict[str, bytes]]] = {}
_contents_lock = threading.Lock()
_CONTENTS_KEPT = 20_000


def _is_sbom(member: str) -> bool:
    parts = member.split("/")
    return (
        len(parts) == 3
        and parts[0].endswith(".dist-info")
        and parts[1] == "sboms"
        and bool(parts[2])
    )


def read_sbom_members(zf: zipfile.ZipFile, names: Iterable[str]) -> dict[str, bytes]:
    """A wheel's PEP 770 SBOM members by archive name; none is read when together they say
    they hold more than :data:`MAX_SBOM_BYTES` (``zipfile.BadZipFile``)."""
    members = [zf.getinfo(n) for n in names if _is_sbom(n)]
    total = sum(member_bytes(info) for info in members)
    if total > MAX_SBOM_BYTES:
        raise zipfile.BadZipFile(
            f"its SBOM members are {total} bytes, more than the {MAX_SBOM_BYTES} read"
        )
    return {info.filename: zf.read(info) for info in members}


def _remember_contents(stamp: Stamp, metadata: bytes | None, sboms: dict[str, bytes]) -> None:
    with _contents_lock:
        if len(_contents) >= _CONTENTS_KEPT:
            _contents.clear()
        _contents[stamp] = (metadata, sboms)


def wheel_contents(path: Path) -> tuple[bytes | None, dict[str, bytes]]:
    """(the wheel's own ``.dist-info/METADATA`` or None, its PEP 770 SBOM members by archive
    name) — read once per version of the file in this process. Raises
    ``zipfile.BadZipFile``/``OSError`` for an archive that cannot be read."""
    with open(path, "rb") as fh:
        stamp = stat_stamp(os.fstat(fh.fileno()))
        with _contents_lock:
            found = _contents.get(stamp)
        if found is not None:
            return found
        with zipfile.ZipFile(fh) as zf:
            member = wheel_metadata_member(zf, path.name)
            meta = read_metadata_member(zf, member) if member else None
            sboms = read_sbom_members(zf, zf.namelist())
        if stat_stamp(os.fstat(fh.fileno())) == stamp:
            _remember_contents(stamp, meta, sboms)
    return meta, sboms


def wheel_problem(path: Path, filename: str, project: str | None = None) -> str | None:
    """Why the wheel at ``path`` is not what its file name ``filename`` (and the project page
    ``project`` it was listed on) says it is, or None when they all agree
    (:func:`read_wheel`)."""
    return read_wheel(path, filename, project)[0]


def _member_safe(name: str) -> bool:
    """The quick form of :func:`~wheelport.bootstrap.lexical_escape` for archive members (a
    wheel of numpy or pandas has thousands): relative, no drive, no ``..`` part, no NUL."""
    return (
        bool(name)
        and name[0] not in "/\\"
        and name[1:2] != ":"
        and "\\" not in name
        and "\x00" not in name
        and "/../" not in f"/{name}/"
    )


#: what the read-ahead download process found of wheels it downloaded and verified, by their
#: sha256 and file name (:func:`remember_wheel_check`); each taken once, by fetch
_checked: dict[tuple[str, str], tuple[str | None, bytes | None, dict[str, bytes]]] = {}


def remember_wheel_check(
    sha256: str, filename: str, why: str | None, metadata: bytes | None, sboms: dict[str, bytes]
) -> None:
    """What :func:`check_wheel_file` found of the file with this sha256 in our own read-ahead
    process. The verdict depends on the bytes and the file name alone, so :func:`read_wheel`
    given the same sha256 answers with it instead of reading the archive again here."""
    key = (sha256, filename)
    with _contents_lock:
        if len(_checked) >= _CONTENTS_KEPT:
            _checked.clear()
        _checked[key] = (why, metadata, sboms)


def read_wheel(
    path: Path, filename: str, project: str | None = None, *, sha256: str | None = None
) -> tuple[str | None, bytes | None]:
    """(why the wheel at ``path`` is not what its file name says, its METADATA) — the archive
    is opened once. The checks are pip's when it meets such a file, made before a wheel enters
    a wheelhouse:

    - the file name parses (PEP 427) and names ``project`` (PEP 503 normalized);
    - no member leaves the directory it is installed into;
    - exactly one top-level ``<name>-<version>.dist-info`` directory, naming the same project
      and version (PEP 440 normalized);
    - its ``METADATA`` ``Name`` and ``Version`` are the same project and version.

    The phrase names what disagrees, e.g. "its METADATA says Name: othername"; None when all
    agree (the METADATA is returned when it could be read). ``sha256``, when the caller knows
    the file holds exactly those bytes (it was just verified), lets a verdict the read-ahead
    process reached on the same bytes (:func:`remember_wheel_check`) stand for reading it.
    """
    try:
        name, _version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return "its file name is not a valid wheel name", None
    if project is not None and canonicalize_name(project) != name:
        return f"it is listed for project {project} but its file name names {name}", None
    if sha256 is not None:
        with _contents_lock:
            found = _checked.pop((sha256, filename), None)
        if found is not None:
            why, data, sboms = found
            if why is None:  # the index writer and the licence report find it here too
                with contextlib.suppress(OSError):
                    _remember_contents(stat_stamp(os.stat(path)), data, sboms)
            return why, data
    why, data, sboms, stamp = check_wheel_file(path, filename)
    if why is None and stamp is not None:
        _remember_contents(stamp, data, sboms)
    return why, data


def check_wheel_file(
    path: Path, filename: str
) -> tuple[str | None, bytes | None, dict[str, bytes], Stamp | None]:
    """:func:`read_wheel`'s archive checks, which depend on the file's bytes and name alone
    (the name must parse: :func:`read_wheel` checks it first): (why, METADATA, SBOM members, the
    file's stamp — None when the file changed while it was read, or is refused)."""
    name, version, _build, _tags = parse_wheel_filename(filename)
    sboms: dict[str, bytes] = {}
    try:
        with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
            stamp = stat_stamp(os.fstat(fh.fileno()))
            names = zf.namelist()
            tops: set[str] = set()
            for member in names:
                if not _member_safe(member):
                    why = lexical_escape(member) or "not a plain relative path"
                    return f"its member {member[:200]!r} is {why}", None, sboms, None
                tops.add(member.split("/", 1)[0])
            dist_infos = sorted(t for t in tops if t.endswith(".dist-info"))
            if len(dist_infos) != 1:
                found = ", ".join(dist_infos[:3]) or "none"
                why = f"it has {len(dist_infos)} .dist-info directories ({found}), not one"
                return why, None, sboms, None
            dist_info = dist_infos[0]
            di_name, _, di_version = dist_info[: -len(".dist-info")].partition("-")
            if canonicalize_name(di_name) != name or not same_version(di_version, str(version)):
                return f"its .dist-info directory is {dist_info}", None, sboms, None
            try:
                data = read_metadata_member(zf, f"{dist_info}/METADATA")
            except KeyError:
                return f"it has no {dist_info}/METADATA", None, sboms, None
            sboms = read_sbom_members(zf, names)
            unchanged = stat_stamp(os.fstat(fh.fileno())) == stamp
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        return f"it is not a readable wheel ({exc})", None, sboms, None
    msg = parse_headers(data)
    meta_name, meta_version = str(msg.get("Name", "")), str(msg.get("Version", ""))
    if canonicalize_name(meta_name) != name:
        return f"its METADATA says Name: {meta_name[:100] or '(none)'}", data, sboms, None
    if not same_version(meta_version, str(version)):
        return f"its METADATA says Version: {meta_version[:100] or '(none)'}", data, sboms, None
    # the one .dist-info's METADATA: the member wheel_contents would pick
    return None, data, sboms, stamp if unchanged else None


def sdist_members(
    path: Path, names: Iterable[str], *, listing: list[str] | None = None
) -> dict[str, bytes]:
    """Top-level members of an sdist (``PKG-INFO``, ``pyproject.toml``) by base name.

    Members directly under the archive's one top directory count; a missing one is left out,
    and so is one that says it holds more than :data:`MAX_METADATA_BYTES` (with a warning: a
    hostile sdist's PKG-INFO could unpack to gigabytes). ``listing``, when given, receives the
    name of every member (the whole archive is read). Raises
    ``tarfile.TarError``/``zipfile.BadZipFile``/``OSError`` for a broken archive.
    """
    wanted = set(names)
    found: dict[str, bytes] = {}
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for n in zf.namelist():
                if listing is not None:
                    listing.append(n)
                top, _, base = n.partition("/")
                info = zf.getinfo(n) if top and base in wanted and base not in found else None
                if info is not None and _fits(path, n, member_bytes(info)):
                    found[base] = zf.read(info)
        return found
    with tarfile.open(path, "r:*") as tf:
        for m in tf:
            if listing is not None:
                listing.append(m.name)
            top, _, base = m.name.partition("/")
            if m.isfile() and top and base in wanted and base not in found:
                if not _fits(path, m.name, m.size):
                    continue
                fh = tf.extractfile(m)
                if fh is not None:
                    found[base] = fh.read()
            if listing is None and len(found) == len(wanted):
                break
    return found


def _fits(path: Path, member: str, size: int) -> bool:
    """Whether an sdist's member is small enough to read (else it is said, and left out)."""
    if size <= MAX_METADATA_BYTES:
        return True
    log.warning("%s: %s is %d bytes, more than the %d read; left out",
                path.name, member[:200], size, MAX_METADATA_BYTES)  # fmt: skip
    return False


# -- PEP 643 / PEP 621 ---------------------------------------------------------------------------


def _version_tuple(text: str) -> tuple[int, int]:
    try:
        major, minor = (int(x) for x in text.split(".")[:2])
    except ValueError:
        return (1, 0)
    return major, minor


def static_pkg_info(pkg_info: bytes) -> bool:
    """PEP 643: an sdist's PKG-INFO is reliable for Metadata-Version ≥ 2.2 unless its
    ``Requires-Dist`` (or ``Requires-Python``) is listed as ``Dynamic``."""
    msg = parse_headers(pkg_info)
    if _version_tuple(str(msg.get("Metadata-Version", "1.0"))) < (2, 2):
        return False
    dynamic = {str(d).strip().lower() for d in msg.get_all("Dynamic") or []}
    return not dynamic & {"requires-dist", "requires-python", "provides-extra"}


def pyproject_metadata(pyproject: bytes, name: str, version: str) -> bytes | None:
    """Core metadata built from a ``pyproject.toml`` ``[project]`` table whose dependency fields
    are static (PEP 621: a field not listed in ``dynamic`` is exactly what the table says, absent
    meaning none). None when the table is missing, invalid, or declares them dynamic."""
    try:
        data = tomllib.loads(pyproject.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    project = data.get("project")
    if not isinstance(project, dict):
        return None
    dynamic = {str(d).lower() for d in project.get("dynamic", [])}
    if dynamic & {"dependencies", "optional-dependencies", "requires-python"}:
        return None
    deps = project.get("dependencies", [])
    optional = project.get("optional-dependencies", {})
    if not isinstance(deps, list) or not isinstance(optional, Mapping):
        return None
    try:
        lines = [str(Requirement(str(d))) for d in deps]
        extras: list[str] = []
        for extra, reqs in optional.items():
            extra_name: str = canonicalize_name(str(extra))
            extras.append(extra_name)
            for text in reqs:
                lines.append(_with_extra(Requirement(str(text)), extra_name))
    except InvalidRequirement:
        return None
    msg = Message()
    msg["Metadata-Version"] = "2.2"
    msg["Name"] = str(project.get("name") or name)
    msg["Version"] = version
    if project.get("requires-python"):
        msg["Requires-Python"] = str(project["requires-python"])
    for extra_name in extras:
        msg["Provides-Extra"] = extra_name
    for line in lines:
        msg["Requires-Dist"] = line
    return msg.as_bytes()


def _with_extra(req: Requirement, extra: str) -> str:
    """``req`` as the ``Requires-Dist`` line of an extra (``…; (marker) and extra == "x"``)."""
    marker = req.marker
    req.marker = None
    clause = f'extra == "{extra}"'
    text = f"{req}; ({marker}) and {clause}" if marker is not None else f"{req}; {clause}"
    return str(Requirement(text))


def metadata_from_sdist(path: Path, name: str, version: str) -> tuple[bytes, str] | None:
    """(metadata, source) from an sdist without running its backend: static PKG-INFO (PEP 643)
    or a static ``[project]`` table (PEP 621); None when neither says the dependencies."""
    try:
        members = sdist_members(path, ("PKG-INFO", "pyproject.toml"))
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError):
        return None
    pkg_info = members.get("PKG-INFO")
    if pkg_info is not None and static_pkg_info(pkg_info):
        return pkg_info, "PKG-INFO"
    pyproject = members.get("pyproject.toml")
    if pyproject is not None:
        built = pyproject_metadata(pyproject, name, version)
        if built is not None:
            return built, "pyproject.toml"
    return None


# -- range requests ------------------------------------------------------------------------------

#: ``fetch(start, end_inclusive) -> bytes`` for a ranged GET
RangeFetch = Callable[[int, int], bytes]


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over HTTP range requests, as :mod:`zipfile` needs it.

    Starts from the file's tail (fetched once up front); other reads fetch at least
    :data:`BLOCK_BYTES` and keep what they fetched, so reading one small member costs one
    request more.
    """

    def __init__(self, size: int, tail: bytes, fetch: RangeFetch) -> None:
        super().__init__()
        self.size = size
        self._fetch = fetch
        self._blocks: list[tuple[int, bytes]] = [(size - len(tail), tail)]
        self._pos = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.size - self._pos)
        if want <= 0:
            return 0
        data = self._span(self._pos, want)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _span(self, start: int, length: int) -> bytes:
        for begin, block in self._blocks:
            if begin <= start and start + length <= begin + len(block):
                return block[start - begin : start - begin + length]
        end = min(self.size, start + max(length, BLOCK_BYTES)) - 1
        data = self._fetch(start, end)
        self.requests += 1
        if len(data) != end - start + 1:
            raise OSError(f"range {start}-{end}: got {len(data)} bytes")
        self._blocks.append((start, data))
        return data[:length]


def read_metadata_by_ranges(
    filename: str, size: int, tail: bytes, fetch: RangeFetch, *, most: int | None = None
) -> tuple[bytes, int]:
    """(METADATA bytes, range requests made after the tail) of a remote wheel; a METADATA
    member larger than ``most`` bytes is not read (:func:`read_metadata_member`)."""
    raw = RangeFile(size, tail, fetch)
    with zipfile.ZipFile(io.BufferedReader(raw, buffer_size=BLOCK_BYTES)) as zf:
        member = wheel_metadata_member(zf, filename)
        if member is None:
            raise zipfile.BadZipFile(f"{filename} has no .dist-info/METADATA")
        data = read_metadata_member(zf, member, most)
    return data, raw.requests


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def parse_content_range(header: str | None) -> tuple[int, int, int] | None:
    """(start, end, total) of a ``Content-Range: bytes a-b/total`` header."""
    m = _CONTENT_RANGE.match(header or "")
    if not m or m[3] == "*":
        return None
    return int(m[1]), int(m[2]), int(m[3])


__all__ = [
    "BLOCK_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_TAIL_BYTES",
    "TAIL_BYTES",
    "RangeFile",
    "RangesUnsupported",
    "metadata_from_sdist",
    "parse_content_range",
    "parse_headers",
    "pyproject_metadata",
    "read_metadata_by_ranges",
    "read_metadata_member",
    "sdist_members",
    "static_pkg_info",
    "wheel_metadata_member",
]
