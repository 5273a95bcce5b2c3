"""Core metadata of a candidate, from the cheapest source that has it.

:data:`SOURCES` is the strategy list, tried in order until one answers: the metadata cache (by a
file's sha256), the index's PEP 658 file, one wheel of the version read with range requests
(shared by every target: the wheels of a version carry the same metadata), the sdist's static
PKG-INFO or pyproject.toml, the whole wheel downloaded, and last a PEP 517 metadata build of the
sdist. Whatever answers, the metadata must name the file's project and version
(:func:`read_metadata`): pip refuses such a file too, and so does wheelport.

A source reads through the index client (:class:`Reader`: its HTTP, downloads, cache, and a
``once`` that runs one piece of work per key for the whole client). The network part of the
PEP 658 and range sources (:data:`REMOTE_READERS`) may be handed to another process, the
read-ahead download process of a sync (:attr:`Reader.offload`): the bytes it sends back are
checked and kept here as if read here.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelport.cache import Cache
from wheelport.errors import IndexAccessError, WheelportError
from wheelport.index.http import httpx_errors, read_at_most
from wheelport.index.metadata import (
    MAX_METADATA_BYTES,
    RangesUnsupported,
    metadata_from_sdist,
    parse_content_range,
    parse_headers,
    read_metadata_by_ranges,
    read_metadata_member,
    same_version,
    tail_bytes,
    wheel_metadata_member,
)
from wheelport.index.models import DistFile
from wheelport.wheelhouse import atomic_write_bytes

if TYPE_CHECKING:
    import httpx

    from wheelport.index.stream import Body

#: the index client's logger: its messages are named as they always were
log = logging.getLogger("wheelport.index.client")

#: where metadata came from, as a message names it
_SOURCE = {
    "cache": "the metadata cache",
    "pep658": "the index's PEP 658 file",
    "ranges": "the wheel",
    "wheel": "the wheel",
    "build": "a PEP 517 metadata build",
}

#: (local sdist, its file name) -> its core metadata, built with the PEP 517 hook
SdistMetadataBuilder = Callable[[Path, str], bytes]


class ReadHere:
    """:data:`HERE`'s type."""


#: an offload's answer "not read there: read it here" (no process runs, or it ended)
HERE = ReadHere()

#: (kind, file) -> the METADATA bytes another process read for this process (None: it could
#: not read them), or :data:`HERE`; kinds are the keys of :data:`REMOTE_READERS`
Offload = Callable[[str, DistFile], bytes | ReadHere | None]


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
        msg = parse_headers(data)
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


class Reader(Protocol):
    """What the sources use of the index client."""

    @property
    def cache(self) -> Cache: ...

    @property
    def stats(self) -> dict[str, int]: ...

    def stream(
        self, url: str, headers: dict[str, str] | None = None, statuses: Iterable[int] = (200,)
    ) -> httpx.Response | Body: ...

    def get_at_most(self, url: str, most: int) -> tuple[int, bytes | None]: ...

    def download(
        self, file: DistFile, *, progress: Callable[[int], None] | None = None
    ) -> Path: ...

    def versions_of(self, name: str) -> Mapping[Version, list[DistFile]]: ...

    def once(self, key: tuple[str, ...], work: Callable[[], bytes | None]) -> bytes | None: ...

    #: who reads metadata over the network for this client, when not itself (None: itself)
    offload: Offload | None


@dataclass(frozen=True)
class Lookup:
    """One metadata question: the version's wheels (the candidate's own first) and sdists, the
    client to read them with, and how an sdist's metadata is built (and who is told)."""

    client: Reader
    wheels: list[DistFile]
    sdists: list[DistFile]
    build: SdistMetadataBuilder | None = None
    on_build: Callable[[str], None] | None = None


def cached_metadata(cache: Cache, sha256: str | None) -> bytes | None:
    """The metadata kept for the file with this sha256, if any (an entry that cannot be read,
    in a damaged cache, is none: the index is asked)."""
    if not sha256:
        return None
    path = cache.metadata_path(f"meta:{sha256}")
    try:
        return path.read_bytes()
    except OSError:
        return None


#: (cache directory, sha256) of each file whose metadata this process kept (a memo; cleared
#: when large): another target's file of the same version finds it without a look on disk
_kept: set[tuple[str, str]] = set()
_KEPT_MOST = 100_000
#: the metadata caches a write into failed (each said once per process)
_unkept: set[str] = set()


def remember_metadata(cache: Cache, sha256: str | None, data: bytes) -> None:
    """Keep the metadata of the file with this sha256 (none without one). An entry that cannot
    be written (a full disk, a cache it may not write) is left out with a warning, as a page's
    is: the run has the bytes, and a run that needs the space says so where it needs it (a
    wheel's download names the wheel and its size, not a 46-byte entry another download's
    partial file crowded out)."""
    if sha256:
        try:
            atomic_write_bytes(cache.metadata_path(f"meta:{sha256}"), data, durable=False)
        except (OSError, WheelportError) as exc:
            where = str(cache.metadata)
            if where not in _unkept:  # once: a full or read-only cache would say it per file
                _unkept.add(where)
                log.warning("core metadata is not kept in the cache: %s", exc)
            return
        if len(_kept) >= _KEPT_MOST:
            _kept.clear()
        _kept.add((str(cache.metadata), sha256))


def from_cache(q: Lookup) -> tuple[bytes, str] | None:
    """The metadata kept for any file of the version: by this run (a memo says which file),
    else by an earlier one — looked for on disk once per version by the whole client: every
    target asks for its own file, and trying each of a version's files (50 wheels for some)
    for each of 15 targets took more CPU than reading the metadata from the index."""
    files = [*q.wheels, *q.sdists]
    if not files:
        return None
    cache = q.client.cache
    where = str(cache.metadata)
    for f in files:  # kept during this run (by another target's lookup)
        if f.sha256 and (where, f.sha256) in _kept:
            data = cached_metadata(cache, f.sha256)
            if data is not None:
                return data, "cache"
    key = ("cached metadata", files[0].project, str(files[0].version))
    data = q.client.once(key, functools.partial(_kept_metadata, cache, files))
    return (data, "cache") if data is not None else None


def _kept_metadata(cache: Cache, files: list[DistFile]) -> bytes | None:
    for f in files:
        data = cached_metadata(cache, f.sha256)
        if data is not None:
            return data
    return None


def from_pep658(q: Lookup) -> tuple[bytes, str] | None:
    for wheel in q.wheels:
        if not wheel.core_metadata:
            continue
        data = q.client.once(("pep658", wheel.url), functools.partial(_fetch_pep658, q, wheel))
        if data is not None:
            return data, "pep658"
    return None


def _fetch_pep658(q: Lookup, wheel: DistFile) -> bytes | None:
    data = _remote(q.client, "pep658", wheel)
    if data is None:
        return None
    expected = wheel.core_metadata if isinstance(wheel.core_metadata, str) else None
    if expected and hashlib.sha256(data).hexdigest() != expected:
        log.warning("%s: PEP 658 metadata does not match its sha256; ignored", wheel.filename)
        return None
    remember_metadata(q.client.cache, wheel.sha256, data)
    return data


def read_pep658(client: Reader, wheel: DistFile) -> bytes | None:
    """The body of a wheel's PEP 658 metadata file (None when the index has none, or sends
    more than :data:`MAX_METADATA_BYTES`). A body cut short is asked for again; when every
    attempt was, :class:`~wheelport.errors.IndexAccessError` says so."""
    status, data = client.get_at_most(wheel.metadata_url, MAX_METADATA_BYTES)
    if status != 200:
        return None
    if data is None:
        log.warning("%s: PEP 658 metadata is larger than %d bytes; ignored",
                    wheel.filename, MAX_METADATA_BYTES)  # fmt: skip
    return data


def by_ranges(q: Lookup) -> tuple[bytes, str] | None:
    """One wheel of the version, read with range requests (shared by every target: the
    wheels of a version carry the same metadata)."""
    if not q.wheels or q.wheels[0].url.startswith("file://"):
        return None
    wheel = q.wheels[0]
    key = ("ranges", wheel.project, str(wheel.version))
    data = q.client.once(key, lambda: _fetch_by_ranges(q, wheel))
    return (data, "ranges") if data is not None else None


def _ranged(client: Reader, url: str, spec: str, most: int) -> tuple[bytes, int]:
    """(body, file size) of a ``Range: bytes=<spec>`` request answered ``206`` for at most
    ``most`` bytes (a server that answers otherwise, or sends more, is not read on). Asked
    over ``http.client`` when the request is plain (a 206, or a 200 that ignores the range,
    is answered there: no second request through httpx), as pages and downloads are."""
    resp = client.stream(url, {"Range": f"bytes={spec}"}, (200, 206))
    try:
        span = parse_content_range(resp.headers.get("content-range"))
        if resp.status_code != 206 or span is None:
            raise RangesUnsupported(f"HTTP {resp.status_code}")
        if span[1] - span[0] + 1 > most:
            raise RangesUnsupported(f"a range of {span[1] - span[0] + 1} bytes, not {most}")
        body = read_at_most(resp, most)
        if body is None:
            raise RangesUnsupported(f"more than the {most} bytes asked for")
        return body, span[2]
    finally:
        resp.close()


def _fetch_by_ranges(q: Lookup, wheel: DistFile) -> bytes | None:
    data = _remote(q.client, "ranges", wheel)
    if data is not None:
        remember_metadata(q.client.cache, wheel.sha256, data)
    return data


def _range_errors() -> tuple[type[BaseException], ...]:
    """What ends a read by ranges (the next source is tried): the server cannot, the archive
    is not one, the connection failed (httpx's errors once it is loaded)."""
    from wheelport.index.stream import BodyError

    return (RangesUnsupported, BodyError, zipfile.BadZipFile, OSError, EOFError,
            *httpx_errors("HTTPError"))  # fmt: skip


def read_by_ranges(client: Reader, wheel: DistFile) -> bytes | None:
    """A remote wheel's METADATA, read with range requests (None when that fails)."""
    try:
        tail_size = tail_bytes(wheel.size)
        tail, size = _ranged(client, wheel.url, f"-{tail_size}", tail_size)

        def fetch(start: int, end: int) -> bytes:
            return _ranged(client, wheel.url, f"{start}-{end}", end - start + 1)[0]

        data, more = read_metadata_by_ranges(
            wheel.filename, size, tail, fetch, most=MAX_METADATA_BYTES
        )
    except _range_errors() as exc:
        log.info("%s: metadata by range requests failed (%s)", wheel.filename, exc)
        return None
    client.stats["range_requests"] = client.stats.get("range_requests", 0) + 1 + more
    return data


#: the network reads another process may do for this one, by kind
REMOTE_READERS: dict[str, Callable[[Reader, DistFile], bytes | None]] = {
    "pep658": read_pep658,
    "ranges": read_by_ranges,
}


def _remote(client: Reader, kind: str, wheel: DistFile) -> bytes | None:
    """METADATA read over the network: by the client's offload when it takes the read, else
    here. Either way the bytes are checked here, by the caller and by :func:`read_metadata`."""
    offload = client.offload
    if offload is not None:
        data = offload(kind, wheel)
        if not isinstance(data, ReadHere):
            return data
    return REMOTE_READERS[kind](client, wheel)


def from_static_sdist(q: Lookup) -> tuple[bytes, str] | None:
    for sdist in q.sdists[:1]:
        local = q.client.download(sdist)
        found = metadata_from_sdist(local, sdist.project, str(sdist.version))
        if found is not None:
            remember_metadata(q.client.cache, sdist.sha256, found[0])
            return found[0], "sdist_" + found[1].split(".")[0].lower().replace("-", "_")
    return None


def from_whole_wheel(q: Lookup) -> tuple[bytes, str] | None:
    """The last resort before a build: download one wheel of the version (it was not
    readable by ranges) and read its METADATA."""
    for wheel in q.wheels[:1]:
        local = q.client.download(wheel)
        try:
            with zipfile.ZipFile(local) as zf:
                member = wheel_metadata_member(zf, wheel.filename)
                if member is None:
                    raise IndexAccessError(
                        f"{wheel.filename}: wheel has no .dist-info/METADATA",
                        path=wheel.filename,
                    )
                data = read_metadata_member(zf, member)
        except zipfile.BadZipFile as exc:
            raise IndexAccessError(
                f"{wheel.filename}: not a readable wheel: {exc}", path=wheel.filename
            ) from None
        remember_metadata(q.client.cache, wheel.sha256, data)
        return data, "wheel"
    return None


def from_build(q: Lookup) -> tuple[bytes, str] | None:
    if not q.sdists:
        return None
    sdist = q.sdists[0]
    builder = q.build
    if builder is None:
        raise IndexAccessError(
            f"{sdist.filename}: dependencies are dynamic and no builder is set",
            package=sdist.project,
        )
    client = q.client

    def build() -> bytes:
        local = client.download(sdist)
        if q.on_build is not None:
            q.on_build(sdist.filename)
        client.stats["metadata_builds"] = client.stats.get("metadata_builds", 0) + 1
        data = builder(local, sdist.filename)
        remember_metadata(client.cache, sdist.sha256, data)
        return data

    data = client.once(("build", sdist.sha256 or sdist.url), build)
    return (data, "build") if data is not None else None


#: the strategy list: each source in turn, the cheapest first, until one answers
SOURCES: tuple[Callable[[Lookup], tuple[bytes, str] | None], ...] = (
    from_cache,
    from_pep658,
    by_ranges,
    from_static_sdist,
    from_whole_wheel,
    from_build,
)


#: the metadata read so far, parsed (by its bytes): each target reads its own file of a
#: version, and every file of it gives the same metadata
_parsed_memo: dict[bytes, CoreMetadata] = {}
_PARSED_MOST = 1024  # (bytes and parse held: a bounded memo, not a cache)


def _parsed(data: bytes, source: str) -> CoreMetadata:
    meta = _parsed_memo.get(data)
    if meta is None:
        meta = CoreMetadata.parse(data, source)
        if len(_parsed_memo) >= _PARSED_MOST:
            _parsed_memo.clear()
        _parsed_memo[data] = meta
    return meta


def read_metadata(
    client: Reader,
    file: DistFile,
    *,
    build: SdistMetadataBuilder | None = None,
    on_build: Callable[[str], None] | None = None,
) -> CoreMetadata:
    """The core metadata of ``file``'s version from the first of :data:`SOURCES` that has it;
    :class:`IndexAccessError` when it names another project or version than the file, or when
    none has it. ``on_build`` is told when an sdist's metadata has to be built (PEP 517)."""
    siblings = client.versions_of(file.project).get(file.version) or [file]
    wheels = sorted((f for f in siblings if f.is_wheel), key=lambda f: f.filename)
    if file.is_wheel:  # the target's own wheel first
        wheels = [file] + [w for w in wheels if w.url != file.url]
    sdists = [f for f in siblings if not f.is_wheel]
    if not file.is_wheel:
        sdists = [file] + [s for s in sdists if s.url != file.url]
    q = Lookup(client, wheels, sdists, build, on_build)
    for source in SOURCES:
        try:
            found = source(q)
        except WheelportError as exc:
            exc.package = exc.package or file.project
            raise
        if found is not None:
            data, how = found
            client.stats[f"metadata_{how}"] = client.stats.get(f"metadata_{how}", 0) + 1
            meta = _parsed(data, file.filename)
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
