"""``wheelport.json``: the wheelhouse's manifest as typed records.

The JSON shape (documented in :mod:`wheelport.wheelhouse`, read by ``bootstrap.py`` with the
standard library alone) is unchanged; this module is the one place that knows its keys.
Records are frozen; :class:`Manifest` holds them and is loaded once, changed in memory and
saved once by the verb that writes the wheelhouse (``Wheelhouse.load_manifest`` /
``save_manifest``). :meth:`Manifest.from_dict` validates and names the bad field, as
``packaging.pylock`` does for locks.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wheelport.errors import VerifyError

MANIFEST_VERSION = 1

#: the top-level keys this module reads; others are kept as they are (``Manifest.extra``)
KNOWN_KEYS = frozenset(
    {"version", "inputs_digest", "targets", "artifacts", "locks", "build_deps", "unserved"}
)
#: coverage states of a package that has no wheel for a target (``unserved``)
UNSERVED_STATES = frozenset({"missing", "deferred"})


class ManifestError(VerifyError):
    """``wheelport.json`` does not have the shape wheelport writes; the message names the field."""


def _bad(where: str, what: str) -> ManifestError:
    return ManifestError(
        f"wheelport.json: {where} {what}",
        hint="the manifest was edited by hand or is damaged; re-run 'wheelport sync' to rewrite it",
        path=where,
    )


def _str(data: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(f"{where}.{key}", f"must be a string, not {type(value).__name__}")
    return value


def _strings(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{where}.{key}", "must be a list of strings")
    return tuple(value)


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(where, f"must be an object, not {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Origin:
    """Where an artifact came from: a download (``url``) or a build of ``sdist``."""

    kind: str  # "download" | "build"
    url: str | None = None
    builder: str | None = None
    sdist: str | None = None
    sdist_sha256: str | None = None
    #: the targets a built wheel serves
    targets: tuple[str, ...] = ()
    #: ``"build-requirement"`` for a wheel built only to build another sdist (JSON ``for``)
    purpose: str | None = None

    @property
    def is_build(self) -> bool:
        return self.kind == "build"

    @classmethod
    def download(cls, url: str | None) -> Origin:
        return cls("download", url=url)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Origin:
        _table(data, where)
        kind = data.get("kind")
        if kind is None:  # written by hand or by an older wheelport: nothing to go on
            return cls("unknown")
        kind = _str(data, "kind", where)
        return cls(
            kind=kind,
            url=_str(data, "url", where, optional=True),
            builder=_str(data, "builder", where, optional=True),
            sdist=_str(data, "sdist", where, optional=True),
            sdist_sha256=_str(data, "sdist_sha256", where, optional=True),
            targets=_strings(data, "targets", where),
            purpose=_str(data, "for", where, optional=True),
        )

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "unknown":
            return {}
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "download":
            out["url"] = self.url
            return out
        for key, value in (
            ("builder", self.builder),
            ("sdist", self.sdist),
            ("sdist_sha256", self.sdist_sha256),
        ):
            if value is not None:
                out[key] = value
        out["targets"] = sorted(self.targets)
        if self.purpose is not None:
            out["for"] = self.purpose
        return out

    def uniting(self, other: Origin) -> Origin:
        """Two records of one file: this origin, with a build's targets united."""
        if self.is_build and other.is_build:
            return Origin(
                **{**self.__dict__, "targets": tuple(sorted({*self.targets, *other.targets}))}
            )
        return self


@dataclass(frozen=True)
class ArtifactRecord:
    """One file of the wheelhouse (``artifacts[path]``). ``yanked`` (``true`` or a reason) and
    ``upload-time`` (PEP 700) are optional facts the index pages show."""

    sha256: str
    size: int | None
    origin: Origin
    yanked: bool | str = False
    upload_time: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> ArtifactRecord:
        _table(data, where)
        sha = _str(data, "sha256", where)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise _bad(f"{where}.sha256", f"must be 64 lowercase hex digits, not {sha!r}")
        size = data.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise _bad(f"{where}.size", f"must be a non-negative integer, not {size!r}")
        origin = Origin.from_dict(data.get("origin") or {}, f"{where}.origin")
        yanked = data.get("yanked", False)
        if not isinstance(yanked, bool | str):
            raise _bad(f"{where}.yanked", f"must be true, false or a reason, not {yanked!r}")
        upload = data.get("upload-time", data.get("upload_time"))
        if upload is not None and not isinstance(upload, str):
            raise _bad(f"{where}.upload-time", f"must be a string, not {upload!r}")
        return cls(sha, size, origin, yanked, upload)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sha256": self.sha256,
            "size": self.size,
            "origin": self.origin.to_dict(),
        }
        if self.yanked is not False:
            out["yanked"] = self.yanked
        if self.upload_time is not None:
            out["upload-time"] = self.upload_time
        return out


@dataclass(frozen=True)
class BuildRequirement:
    """One resolved ``build-system.requires`` entry of an sdist for one build interpreter:
    a wheel (``path``) or an sdist that is built first (``sdist``)."""

    name: str
    version: str
    sha256: str
    path: str | None = None
    sdist: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> BuildRequirement:
        _table(data, where)
        req = cls(
            name=_str(data, "name", where),
            version=_str(data, "version", where),
            sha256=_str(data, "sha256", where),
            path=_str(data, "path", where, optional=True),
            sdist=_str(data, "sdist", where, optional=True),
        )
        if (req.path is None) == (req.sdist is None):
            raise _bad(where, "must name exactly one of 'path' (a wheel) and 'sdist'")
        return req

    @property
    def file(self) -> str:
        return self.path if self.path is not None else str(self.sdist)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "version": self.version, "sha256": self.sha256}
        out["path" if self.path is not None else "sdist"] = self.file
        return out


def _installable(data: Any, where: str) -> dict[str, Any]:
    entry = dict(_table(data, where))
    for key in ("path", "sha256"):
        _str(entry, key, where)
    return entry


@dataclass(frozen=True)
class LockRecord:
    """The part of one target's lock an installer needs (``locks[target]``; bootstrap.py reads
    it with the standard library alone — docs/lock-format.md)."""

    file: str
    python_version: str
    sys_platform: str
    platform_machine: str
    libc: str | None
    policy: tuple[int, int] | None
    tags: tuple[str, ...]
    #: ``{"name", "version", "path", "sha256", "size"}`` per package (``lock.install_list``)
    packages: tuple[Mapping[str, Any], ...]
    unbuilt: tuple[str, ...]
    tools: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> LockRecord:
        _table(data, where)
        policy = data.get("policy")
        if policy is not None and not (
            isinstance(policy, list)
            and len(policy) == 2
            and all(isinstance(p, int) for p in policy)
        ):
            raise _bad(f"{where}.policy", f"must be [major, minor] or null, not {policy!r}")
        for key in ("packages", "tools"):
            if not isinstance(data.get(key, []), list):
                raise _bad(f"{where}.{key}", "must be a list")
        return cls(
            file=_str(data, "file", where),
            python_version=_str(data, "python_version", where),
            sys_platform=_str(data, "sys_platform", where),
            platform_machine=_str(data, "platform_machine", where),
            libc=_str(data, "libc", where, optional=True),
            policy=(policy[0], policy[1]) if policy else None,
            tags=_strings(data, "tags", where),
            packages=tuple(
                _installable(p, f"{where}.packages[{i}]")
                for i, p in enumerate(data.get("packages", []))
            ),
            unbuilt=_strings(data, "unbuilt", where),
            tools=tuple(
                _installable(p, f"{where}.tools[{i}]") for i, p in enumerate(data.get("tools", []))
            ),
        )

    def installs(self) -> Iterator[Mapping[str, Any]]:
        """Every file an installer takes from this lock: packages, then tools."""
        yield from self.packages
        yield from self.tools

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "python_version": self.python_version,
            "sys_platform": self.sys_platform,
            "platform_machine": self.platform_machine,
            "libc": self.libc,
            "policy": list(self.policy) if self.policy else None,
            "tags": sorted(self.tags),
            "packages": [dict(p) for p in self.packages],
            "unbuilt": list(self.unbuilt),
            "tools": [dict(t) for t in self.tools],
        }


#: sdist sha256 → build target identifier → its build requirements
BuildDeps = dict[str, dict[str, tuple[BuildRequirement, ...]]]
#: target identifier → package → (state, why): the coverage cells the last sync left unserved
Unserved = dict[str, dict[str, tuple[str, str]]]


@dataclass
class Manifest:
    """The whole manifest. Its records are frozen; the mappings are changed in memory by the
    one verb that holds the wheelhouse's lock, then saved once."""

    inputs_digest: str | None = None
    targets: tuple[str, ...] = ()
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)
    locks: dict[str, LockRecord] = field(default_factory=dict)
    build_deps: BuildDeps = field(default_factory=dict)
    #: why a package has no wheel for a target (``missing``) or is left to another run
    #: (``deferred``), as the last sync of that target found; the locks say *whether* a
    #: package has a wheel, this says why not (the wheelhouse page shows it)
    unserved: Unserved = field(default_factory=dict)
    version: int = MANIFEST_VERSION
    #: top-level keys this version does not know, kept as read
    extra: dict[str, Any] = field(default_factory=dict)

    # -- queries -------------------------------------------------------------------------------
    def builds_of(self, sdist_sha256: str) -> Iterator[tuple[str, ArtifactRecord]]:
        """(path, record) of every wheel recorded as built from this sdist."""
        for rel, rec in self.artifacts.items():
            if rec.origin.is_build and rec.origin.sdist_sha256 == sdist_sha256:
                yield rel, rec

    def sha256_of(self, rel: str) -> str | None:
        rec = self.artifacts.get(rel)
        return rec.sha256 if rec else None

    def build_dep_paths(self) -> list[tuple[str, str]]:
        """(path, where in the manifest) of every file ``build_deps`` names."""
        return [
            (e.file, f"wheelport.json build_deps[{sdist_sha[:12]}…][{tid}]")
            for sdist_sha, per_target in self.build_deps.items()
            for tid, entries in per_target.items()
            for e in entries
        ]

    # -- changes -------------------------------------------------------------------------------
    def record(self, rel: str, sha256: str, size: int | None, origin: Origin) -> None:
        self.artifacts[rel] = ArtifactRecord(sha256, size, origin)

    def record_build(
        self,
        rel: str,
        sha256: str,
        size: int,
        *,
        builder: str,
        sdist: str,
        sdist_sha256: str,
        targets: Sequence[str],
        purpose: str | None = None,
    ) -> None:
        """Record a built wheel; the targets an earlier run recorded for it are kept."""
        old = self.artifacts.get(rel)
        prev = old.origin.targets if old and old.origin.is_build else ()
        origin = Origin(
            "build",
            builder=builder,
            sdist=sdist,
            sdist_sha256=sdist_sha256,
            targets=tuple(sorted({*prev, *targets})),
            purpose=purpose,
        )
        self.artifacts[rel] = ArtifactRecord(sha256, size, origin)

    def set_unserved(
        self, targets: Iterable[str], cells: Mapping[str, Mapping[str, tuple[str, str]]]
    ) -> None:
        """Replace what is recorded as unserved for ``targets`` with the ``missing`` and
        ``deferred`` cells of a coverage (package → target → (state, why)); other targets'
        records are kept."""
        for tid in targets:
            self.unserved.pop(tid, None)
        for pkg, row in cells.items():
            for tid, (state, why) in row.items():
                if state in UNSERVED_STATES:
                    self.unserved.setdefault(tid, {})[pkg] = (state, why)

    # -- JSON ----------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        data = _table(data, "the top level")
        version = data.get("version", MANIFEST_VERSION)
        if version != MANIFEST_VERSION:
            raise _bad(
                "version", f"is {version!r}; this wheelport reads version {MANIFEST_VERSION}"
            )
        artifacts = _table(data.get("artifacts") or {}, "artifacts")
        locks = _table(data.get("locks") or {}, "locks")
        build_deps: BuildDeps = {}
        for sdist_sha, per_target in _table(data.get("build_deps") or {}, "build_deps").items():
            where = f"build_deps[{sdist_sha[:12]}…]"
            slot = build_deps[sdist_sha] = {}
            for tid, entries in _table(per_target, where).items():
                if not isinstance(entries, list):
                    raise _bad(f"{where}[{tid}]", "must be a list")
                slot[tid] = tuple(
                    BuildRequirement.from_dict(e, f"{where}[{tid}][{i}]")
                    for i, e in enumerate(entries)
                )
        unserved: Unserved = {}
        for tid, row in _table(data.get("unserved") or {}, "unserved").items():
            slot_u = unserved[tid] = {}
            for pkg, cell in _table(row, f"unserved[{tid}]").items():
                where = f"unserved[{tid}][{pkg}]"
                state = _str(_table(cell, where), "state", where)
                if state not in UNSERVED_STATES:
                    raise _bad(f"{where}.state", f"must be one of {sorted(UNSERVED_STATES)}")
                slot_u[pkg] = (state, _str(cell, "reason", where))
        digest = data.get("inputs_digest")
        if digest is not None and not isinstance(digest, str):
            raise _bad("inputs_digest", "must be a string or null")
        return cls(
            inputs_digest=digest,
            targets=_targets(data),
            artifacts={
                rel: ArtifactRecord.from_dict(rec, f"artifacts[{rel}]")
                for rel, rec in artifacts.items()
            },
            locks={tid: LockRecord.from_dict(s, f"locks[{tid}]") for tid, s in locks.items()},
            build_deps=build_deps,
            unserved=unserved,
            version=version,
            extra={k: copy.deepcopy(v) for k, v in data.items() if k not in KNOWN_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "inputs_digest": self.inputs_digest,
            "targets": sorted(self.targets),
            "artifacts": {rel: rec.to_dict() for rel, rec in sorted(self.artifacts.items())},
        }
        if self.locks:
            out["locks"] = {tid: s.to_dict() for tid, s in sorted(self.locks.items())}
        if self.build_deps:
            out["build_deps"] = {
                sha: {tid: [e.to_dict() for e in entries] for tid, entries in per.items()}
                for sha, per in sorted(self.build_deps.items())
            }
        if self.unserved:
            out["unserved"] = {
                tid: {pkg: {"state": s, "reason": why} for pkg, (s, why) in sorted(row.items())}
                for tid, row in sorted(self.unserved.items())
            }
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


def _targets(data: Mapping[str, Any]) -> tuple[str, ...]:
    value = data.get("targets", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad("targets", "must be a list of target identifiers")
    return tuple(value)
