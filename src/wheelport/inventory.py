"""What a finished wheelhouse holds, per target: its locks, and each locked package's facts.

:func:`target_locks` reads the locks of some targets (or all); :func:`package_facts` gives every
package of one lock with its installed artifact, hash, origin (downloaded, or built from which
sdist), embedded PEP 770 SBOMs and license; :func:`license_report` one row per package and
version over the locks. ``wheelport export requirements``, ``export sbom``, ``licenses``,
``audit`` and the wheelhouse page (:mod:`wheelport.site.page`) all read it here.

License answers are taken, in order, from PEP 639 ``License-Expression``; a ``License`` field
that is a valid SPDX identifier or expression; a single Trove license classifier with an
unambiguous SPDX id; a one-line ``License`` field as a license name; else unknown (naming the
``License-File`` entries when there are some).
"""

from __future__ import annotations

import functools
import json
import re
import tarfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from packaging.pylock import Package, PackageSdist, PackageWheel, Pylock

from wheelport.errors import ExportError, UsageError
from wheelport.index.metadata import header_block, sdist_members, wheel_contents
from wheelport.lock import lock_tool, read_lock
from wheelport.manifest import ArtifactRecord, Origin
from wheelport.targets import parse_target
from wheelport.wheelhouse import Wheelhouse

if TYPE_CHECKING:  # packaging.metadata loads the whole SPDX list: not for a type
    from packaging.metadata import RawMetadata


@dataclass(frozen=True)
class TargetLock:
    """One target's lock, read and validated."""

    target: str
    path: Path
    lock: Pylock


def _target_id(text: str) -> str:
    return parse_target(text).identifier if text == "host" else text


def target_locks(wheelhouse: Path, targets: Sequence[str] = ()) -> list[TargetLock]:
    """The locks of ``targets`` (identifiers or ``host``), or every lock of the wheelhouse.

    A target without a lock is a :class:`UsageError` listing the targets that have one.
    """
    wh = Wheelhouse(wheelhouse)
    if not wh.root.is_dir():
        raise UsageError(f"wheelhouse {wh.root} does not exist", hint="run 'wheelport sync' first",
                         path=str(wh.root))  # fmt: skip
    have = {p.name[len("pylock.") : -len(".toml")]: p for p in wh.lock_paths()}
    wanted = [_target_id(t) for t in targets] or sorted(have)
    if not wanted:
        raise UsageError(f"{wh.root} has no pylock.<target>.toml", hint="run 'wheelport lock' first",
                         path=str(wh.root))  # fmt: skip
    out = []
    for tid in wanted:
        if tid not in have:
            raise UsageError(
                f"the wheelhouse {wh.root} has no lock for {tid}",
                hint=f"targets with a lock: {', '.join(sorted(have)) or 'none'}",
                target=tid,
            )
        lock = read_lock(have[tid])
        out.append(TargetLock(str(lock_tool(lock).get("target") or tid), have[tid], lock))
    return out


def one_lock(wheelhouse: Path, target: str | None) -> TargetLock:
    """The lock of ``target``; without one, the wheelhouse's only lock (else a usage error)."""
    if target is not None:
        return target_locks(wheelhouse, [target])[0]
    found = target_locks(wheelhouse)
    if len(found) != 1:
        raise UsageError(
            "the wheelhouse has several locks: choose one with -t TARGET",
            hint=f"targets: {', '.join(t.target for t in found)}",
        )
    return found[0]


# --------------------------------------------------------------------------- licenses


#: Trove license classifiers whose SPDX id is unambiguous (``BSD License`` and the like are not)
CLASSIFIER_SPDX: dict[str, str] = {
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "License :: OSI Approved :: Apache Software License": "Apache-2.0",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "License :: OSI Approved :: GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "License :: OSI Approved :: GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "License :: OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "License :: OSI Approved :: GNU Affero General Public License v3": "AGPL-3.0-only",
    "License :: OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "License :: OSI Approved :: Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "License :: OSI Approved :: Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "License :: OSI Approved :: European Union Public Licence 1.2 (EUPL 1.2)": "EUPL-1.2",
    "License :: OSI Approved :: Universal Permissive License (UPL)": "UPL-1.0",
    "License :: OSI Approved :: zlib/libpng License": "Zlib",
    "License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}  # fmt: skip


@dataclass(frozen=True)
class LicenseAnswer:
    """A package's license and where the answer came from."""

    #: an SPDX expression (``MIT``, ``MIT OR Apache-2.0``), else None
    expression: str | None
    #: a license name that is not SPDX (``License: Some Custom License``), else None
    name: str | None
    #: ``License-Expression``, ``License``, ``classifier``, ``License-File``, ``none``
    source: str
    detail: str = ""

    @property
    def shown(self) -> str:
        return self.expression or self.name or "unknown"


@functools.lru_cache(maxsize=1)
def _spdx_ids() -> dict[str, str]:
    """The SPDX license ids by their lower-case spelling, from the list cyclonedx ships (read
    here: importing ``cyclonedx.spdx`` builds a whole expression parser, 40-100 ms of a sync)."""
    from cyclonedx.schema._res import SPDX_JSON

    with open(SPDX_JSON, encoding="utf-8") as fh:
        ids = json.load(fh).get("enum", [])
    return {str(i).lower(): str(i) for i in ids}


def _is_expression(text: str) -> bool:
    """Whether ``text`` is a valid SPDX license expression (packaging's PEP 639 reader: the
    expression parser cyclonedx uses takes ~100 ms to load, and accepts names that are no SPDX
    id, such as "GPL"). A text with a word that is no id, operator or reference ("BSD
    License") is not one, and is answered without loading the reader's SPDX list."""
    ids = _spdx_ids()
    after_with = False
    for word in text.replace("(", " ").replace(")", " ").lower().split():
        known = (
            after_with  # an exception id: the reader judges it
            or word in ("and", "or", "with")
            or word.removesuffix("+") in ids
            or word.startswith(("licenseref-", "documentref-"))
        )
        if not known:
            return False
        after_with = word == "with"
    from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

    try:
        canonicalize_license_expression(text)
    except InvalidLicenseExpression:
        return False
    return True


def license_of(metadata: RawMetadata) -> LicenseAnswer:
    """The license of one distribution's core metadata (see the module docstring for the order)."""
    expr = (metadata.get("license_expression") or "").strip()
    if expr:
        return LicenseAnswer(expr, None, "License-Expression")
    field = (metadata.get("license") or "").strip()
    one_line = field if field and "\n" not in field and len(field) <= 100 else ""
    if one_line:
        spdx = _spdx_ids().get(one_line.lower())
        if spdx:
            return LicenseAnswer(spdx, None, "License")
        if " " in one_line and _is_expression(one_line):
            return LicenseAnswer(one_line, None, "License")
    classifiers = metadata.get("classifiers") or []
    mapped = sorted({CLASSIFIER_SPDX[c] for c in classifiers if c in CLASSIFIER_SPDX})
    if len(mapped) == 1:
        return LicenseAnswer(
            mapped[0], None, "classifier", next(c for c in classifiers if c in CLASSIFIER_SPDX)
        )
    if one_line:
        return LicenseAnswer(None, one_line, "License")
    detail = "ambiguous classifiers: " + ", ".join(mapped) if len(mapped) > 1 else ""
    files = metadata.get("license_files") or []
    if files:
        return LicenseAnswer(None, None, "License-File", ", ".join(files))
    return LicenseAnswer(None, None, "none", detail)


#: the header fields read here (the licence answer and the summary): raw name by header name
_READ_FIELDS = {
    "license-expression": "license_expression",
    "license": "license",
    "summary": "summary",
}
_READ_MULTI = {"classifier": "classifiers", "license-file": "license_files"}
#: a header line: a name of printable characters but the colon, then the colon (RFC 5322)
_HEADER = re.compile(r"[\x21-\x39\x3b-\x7e]*:")


def parse_metadata(data: bytes) -> RawMetadata:
    """The header fields of a METADATA or PKG-INFO file that the licence answer and the summary
    read (``license_expression``, ``license``, ``classifiers``, ``license_files``,
    ``summary``), as :func:`packaging.metadata.parse_email` gives them: a folded value keeps its
    line breaks, a single-use field given twice is left out. Only the header block is read (the
    long description, often most of the bytes, is not), and by hand: the email parser took
    0.4 s of a 15-target sync's wheelhouse page. Only the :func:`header_block` is decoded."""
    text = header_block(data).decode("utf-8", "surrogateescape")
    single: dict[str, list[str]] = {}
    multi: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in text.split("\n"):  # a line keeps its "\r": a folded value keeps its breaks
        if not line.rstrip("\r"):
            break  # the end of the headers
        if line[0] in " \t":  # a folded line continues the field before it
            if last is not None:
                last[-1] += "\n" + line
            continue
        if not _HEADER.match(line):
            break  # not a field: the body starts here (as the email parser reads it)
        key, _, value = line.partition(":")
        key = key.lower()
        last = None
        if key in _READ_FIELDS:
            last = single.setdefault(_READ_FIELDS[key], [])
        elif key in _READ_MULTI:
            last = multi.setdefault(_READ_MULTI[key], [])
        if last is not None:
            last.append(value.lstrip(" \t"))
    # as the email parser ends a value: only its line break goes; a field with bytes that are
    # not UTF-8 is left out (packaging leaves it "unparsed")
    raw: dict[str, Any] = {
        k: v[0].rstrip("\r\n") for k, v in single.items() if len(v) == 1 and _utf8(v)
    }
    raw.update({k: [x.rstrip("\r\n") for x in v] for k, v in multi.items() if _utf8(v)})
    return cast("RawMetadata", raw)


def _utf8(values: list[str]) -> bool:
    try:
        for value in values:
            value.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate: a byte that was not UTF-8
        return False
    return True


# --------------------------------------------------------------------------- packages


@dataclass(frozen=True)
class PackageFacts:
    """One locked package as the SBOM and the license report see it."""

    name: str
    version: str
    #: the artifact installed for the target (its wheel; the sdist when none was built yet)
    path: str
    filename: str
    sha256: str
    index: str | None
    dependencies: tuple[str, ...]
    license: LicenseAnswer
    origin: Origin
    sdist: Mapping[str, Any] | None
    #: PEP 770 SBOM files in the wheel: archive name → bytes
    sboms: Mapping[str, bytes]
    summary: str | None


def _read_wheel(path: Path) -> tuple[bytes | None, dict[str, bytes]]:
    try:
        return wheel_contents(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExportError(f"cannot read wheel {path}: {exc}", hint="run 'wheelport verify'",
                          path=str(path)) from None  # fmt: skip


def _read_sdist(path: Path) -> bytes | None:
    try:
        return sdist_members(path, ("PKG-INFO",)).get("PKG-INFO")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError):
        return None


class ArtifactReader:
    """What the artifacts of a wheelhouse say of themselves (METADATA, its license answer and
    summary, embedded SBOMs), each file read once however many locks name it, and the
    manifest read once."""

    def __init__(self, wheelhouse: Path) -> None:
        self.wh = Wheelhouse(wheelhouse)
        self._read: dict[tuple[str, str], tuple[RawMetadata, LicenseAnswer, dict[str, bytes]]] = {}
        #: METADATA bytes -> what they say: a version's wheels for each platform mostly carry
        #: the same METADATA (the 15-target workload: 592 wheels, 181 distinct)
        self._parsed: dict[bytes, tuple[RawMetadata, LicenseAnswer]] = {}
        self._paths: dict[str, Path] = {}

    @functools.cached_property
    def artifacts(self) -> dict[str, ArtifactRecord]:
        """The manifest's records, read when first asked (the licence report never asks)."""
        return self.wh.load_manifest().artifacts

    def path(self, rel: str, source: str) -> Path:
        """``rel`` (read from ``source``) in the wheelhouse, checked once per reader: the
        locks of a report name the same files again and again (each check resolves symlinks)."""
        found = self._paths.get(rel)
        if found is None:
            found = self._paths[rel] = self.wh.contained(rel, source)
        return found

    def of(
        self, rel: str, sha256: str, path: Path, wheel: bool
    ) -> tuple[RawMetadata, LicenseAnswer, dict[str, bytes]]:
        key = (rel, sha256)
        found = self._read.get(key)
        if found is None:
            meta: bytes | None = None
            sboms: dict[str, bytes] = {}
            if path.is_file():
                meta, sboms = _read_wheel(path) if wheel else (_read_sdist(path), {})
            said = self._parsed.get(meta or b"")
            if said is None:
                raw = parse_metadata(meta) if meta else cast("RawMetadata", {})
                said = self._parsed[meta or b""] = (raw, license_of(raw))
            found = self._read[key] = (*said, sboms)
        return found


def package_facts(
    wheelhouse: Path, tl: TargetLock, files: ArtifactReader | None = None
) -> list[PackageFacts]:
    """Facts of every package of one lock: artifact, hash, license, origin, embedded SBOMs
    (``files``: the reader to share between the locks of one report)."""
    files = files or ArtifactReader(wheelhouse)
    artifacts = files.artifacts
    out = []
    for pkg, art, rel, path in _artifacts_of(tl, files):
        raw, licence, sboms = files.of(rel, art.hashes["sha256"], path, bool(pkg.wheels))
        record = artifacts.get(rel)
        origin = record.origin if record else Origin("unknown")
        if origin.kind == "unknown" and art.url:
            origin = Origin.download(art.url)
        sdist = None
        if pkg.sdist is not None:
            srel = pkg.sdist.path or f"sdists/{pkg.sdist.name}"
            srec = artifacts.get(srel)
            sdist = {
                "path": srel,
                "filename": pkg.sdist.name or srel.rsplit("/", 1)[-1],
                "sha256": pkg.sdist.hashes.get("sha256"),
                "url": pkg.sdist.url or (srec.origin.url if srec else None),
            }
        out.append(
            PackageFacts(
                name=str(pkg.name),
                version=str(pkg.version),
                path=rel,
                filename=art.name or rel.rsplit("/", 1)[-1],
                sha256=art.hashes["sha256"],
                index=pkg.index,
                dependencies=tuple(_dep_names(pkg)),
                license=licence,
                origin=origin,
                sdist=sdist,
                sboms=sboms,
                summary=raw.get("summary"),
            )
        )
    return out


def _artifacts_of(
    tl: TargetLock, files: ArtifactReader
) -> Iterator[tuple[Package, PackageWheel | PackageSdist, str, Path]]:
    """Each package of one lock, by name, with the artifact the reports read (its first wheel,
    else its sdist), that artifact's path in the wheelhouse and the checked place of that path
    (:meth:`ArtifactReader.path`: a path that escapes the wheelhouse raises)."""
    for pkg in sorted(tl.lock.packages, key=lambda p: str(p.name)):
        art = pkg.wheels[0] if pkg.wheels else pkg.sdist
        if art is None or pkg.version is None:
            continue
        rel = art.path or f"{'wheels' if pkg.wheels else 'sdists'}/{art.name}"
        yield pkg, art, rel, files.path(rel, tl.path.name)


def _dep_names(pkg: Package) -> list[str]:
    return sorted({str(d["name"]) for d in pkg.dependencies or [] if d.get("name")})


# --------------------------------------------------------------------------- licenses report


@dataclass(frozen=True)
class LicenseRow:
    name: str
    version: str
    license: LicenseAnswer
    targets: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "license": self.license.expression,
            "license_name": self.license.name,
            "source": self.license.source,
            "detail": self.license.detail or None,
            "targets": list(self.targets),
        }


def license_report(wheelhouse: Path, targets: Sequence[str] = ()) -> list[LicenseRow]:
    """One row per (package, version) over the locks of ``targets`` (default: every lock): the
    answer of the first lock's file, in the order :func:`package_facts` reads them. Every
    package's path is checked; a file is read only for a (package, version) not seen yet."""
    rows: dict[tuple[str, str], tuple[LicenseAnswer, list[str]]] = {}
    files = ArtifactReader(wheelhouse)
    for tl in target_locks(wheelhouse, targets):
        for pkg, art, rel, path in _artifacts_of(tl, files):
            key = (str(pkg.name), str(pkg.version))
            found = rows.get(key)
            if found is None:
                _raw, licence, _sboms = files.of(rel, art.hashes["sha256"], path, bool(pkg.wheels))
                found = rows[key] = (licence, [])
            found[1].append(tl.target)
    return [LicenseRow(n, v, a, tuple(sorted(t))) for (n, v), (a, t) in sorted(rows.items())]
