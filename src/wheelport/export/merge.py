"""``wheelport merge``: combine wheelhouses built on different machines into one.

A CI matrix builds one wheelhouse per platform; ``merge`` unites them: the union of their
artifacts (``wheels/``, ``sdists/``), locks and manifests, written as sync ends
(:func:`wheelport.finish.finish`: locks, manifest, ``bootstrap.py``), then a fresh index. The
same relative path with two different sha256s, or the same lock file with different content,
is a conflict: an error naming the file and both hashes, and nothing is written. A path in an input's manifest or locks that escapes that input is refused.

An input may also be a directory of CI artifacts (one wheelhouse per subdirectory, as
actions/download-artifact writes them) or a ``.zip`` of a wheelhouse, unpacked safely
(:func:`extract_zip`); a conflict names both origins (input, artifact or zip) and both sha256s.

Files are copied (a reflink where the filesystem has them), never hard-linked: the output
and the inputs stay independent. ``merge`` holds the output's exclusive lock and each
input's shared lock (:func:`wheelport.wheelhouse.locked`).

:func:`plan_merge` decides (pure, over already-read values); :func:`merge` reads, checks and
writes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.pylock import Pylock

from wheelport.errors import ExportError, UsageError, VerifyError
from wheelport.finish import finish, lock_record
from wheelport.index.metadata import wheel_problem
from wheelport.manifest import BuildDeps, LockRecord, Manifest
from wheelport.wheelhouse import (
    LOCK_NAME,
    Wheelhouse,
    contained,
    copy_verified,
    locked,
    sha256_file,
)


@dataclass(frozen=True)
class Source:
    """One input wheelhouse as read from disk."""

    root: Path
    manifest: Manifest
    #: lock file name -> its bytes
    locks: Mapping[str, bytes]
    #: where it came from, for messages (``input a.zip``, ``artifact X of input DIR``)
    label: str = ""

    @property
    def origin(self) -> str:
        return self.label or str(self.root)


@dataclass
class MergePlan:
    """The merged manifest, which file comes from where, and the locks to write."""

    manifest: Manifest
    #: relative path -> (source root, sha256)
    files: dict[str, tuple[Path, str]] = field(default_factory=dict)
    #: lock file name -> bytes
    locks: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class MergeReport:
    """What ``merge`` produced."""

    output: Path
    sources: list[Path]
    targets: list[str]
    artifacts: int
    copied: int
    linked: int
    present: int
    locks: int
    #: each source's origin (``input DIR``, ``ARTIFACT of input DIR``, ...)
    origins: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "sources": [str(s) for s in self.sources],
            "targets": self.targets,
            "artifacts": self.artifacts,
            "copied": self.copied,
            "linked": self.linked,
            "already_present": self.present,
            "locks": self.locks,
            "origins": self.origins,
        }


def _short(sha: str) -> str:
    return sha[:16]


def _merge_build_deps(into: BuildDeps, other: BuildDeps, where: Path) -> None:
    """``build_deps``: sdist sha256 -> build target -> entries; the same key must agree."""
    for sdist_sha, per_target in other.items():
        slot = into.setdefault(sdist_sha, {})
        for target, entries in per_target.items():
            if target in slot and slot[target] != entries:
                raise ExportError(
                    f"conflicting build requirements for sdist sha256 {_short(sdist_sha)}… on "
                    f"{target} in {where}",
                    hint="the wheelhouses were built from different inputs; sync them alike",
                    target=target,
                    path=str(where),
                )
            slot[target] = entries


def _combine_locks(a: bytes, b: bytes) -> bytes | None:
    """One target's lock from two shards (``sync --shard``), each of which pointed only its
    own builds at their wheels: the lock pointing every package at the wheel either built.
    None when they differ in anything else (then it is a conflict)."""

    from packaging.pylock import PylockValidationError

    from wheelport.lock import dumps

    try:
        la, lb = (_load_lock(x) for x in (a, b))
    except (UnicodeDecodeError, ValueError, PylockValidationError):  # TOMLDecodeError: ValueError
        return None
    if len(la.packages) != len(lb.packages) or dataclasses.replace(
        la, packages=[]
    ) != dataclasses.replace(lb, packages=[]):
        return None
    packages = []
    joined = False  # same content in other bytes is not a shard's rewrite: a conflict
    for pa, pb in zip(la.packages, lb.packages, strict=True):
        if pa != pb:
            joined = True
            built = pa if pa.wheels else pb  # the side that built it; the other has no wheel
            if (
                (pa.wheels and pb.wheels)
                or dataclasses.replace(pa, wheels=None) != dataclasses.replace(pb, wheels=None)
                or pa.sdist is None
                or any(w.url for w in built.wheels or ())
            ):
                return None
            pa = built
        packages.append(pa)
    if not joined:
        return None
    return dumps(dataclasses.replace(la, packages=packages)).encode("utf-8")


def _load_lock(data: bytes) -> Pylock:
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return Pylock.from_dict(tomllib.loads(data.decode("utf-8")))


def _lock_record(name: str, data: bytes) -> LockRecord:
    """The manifest's ``locks`` entry for a lock file ``pylock.<target>.toml``."""
    from wheelport.targets import parse_target

    target = parse_target(name[len("pylock.") : -len(".toml")])
    return lock_record(target, _load_lock(data), Path(name))


def plan_merge(sources: Sequence[Source]) -> MergePlan:
    """Unite the sources' manifests and locks; raise :class:`ExportError` on any conflict.

    Conflicts: one artifact path with two sha256s; one lock file with two contents; one
    target's ``locks`` summary that differs; the same build requirement slot that differs.
    Keys of the manifest other than the known ones are kept from the first source that has
    them (and must agree, or they are dropped).
    """
    if not sources:
        raise UsageError("nothing to merge", hint="name at least one wheelhouse")
    first = sources[0].manifest
    manifest = Manifest(inputs_digest=first.inputs_digest, version=first.version)
    plan = MergePlan(manifest=manifest)
    targets: set[str] = set()
    lock_origin: dict[str, Path] = {}
    file_origin: dict[str, str] = {}
    dropped: set[str] = set()
    combined: set[str] = set()  # locks united from shards that each rewrote their own builds
    for src in sources:
        m = src.manifest
        if m.inputs_digest != manifest.inputs_digest:
            manifest.inputs_digest = None  # built from different inputs: no single digest
        targets.update(m.targets)
        for rel, rec in sorted(m.artifacts.items()):
            have = manifest.artifacts.get(rel)
            if have is None:
                manifest.artifacts[rel] = rec
                plan.files[rel] = (src.root, rec.sha256)
                file_origin[rel] = src.origin
            elif have.sha256 != rec.sha256:
                raise ExportError(
                    f"conflict: {rel} is sha256 {have.sha256} in {file_origin[rel]} but "
                    f"sha256 {rec.sha256} in {src.origin}",
                    hint="two builds made different files of the same name; rebuild one or "
                    "drop it before merging",
                    path=rel,
                )
            else:
                origin = have.origin.uniting(rec.origin)
                manifest.artifacts[rel] = dataclasses.replace(have, origin=origin)
        for name, data in sorted(src.locks.items()):
            if name in plan.locks and plan.locks[name] != data:
                joined = _combine_locks(plan.locks[name], data)
                if joined is not None:
                    plan.locks[name] = joined
                    combined.add(name)
                    continue
                a = hashlib.sha256(plan.locks[name]).hexdigest()
                b = hashlib.sha256(data).hexdigest()
                raise ExportError(
                    f"conflict: {name} is {a} in {lock_origin[name]} but {b} in {src.root}",
                    hint="both wheelhouses locked this target differently; re-sync one so "
                    "they agree, or merge only one of them",
                    path=name,
                )
            plan.locks[name] = data
            lock_origin.setdefault(name, src.root)
        for target, summary in sorted(m.locks.items()):
            have_summary = manifest.locks.get(target)
            if (
                have_summary is not None
                and have_summary != summary
                and summary.file not in combined
            ):
                raise ExportError(
                    f"conflict: the manifest's lock summary for {target} differs between "
                    f"{lock_origin.get(summary.file, sources[0].root)} and {src.root}",
                    hint="re-sync one of the wheelhouses so they agree",
                    target=target,
                )
            manifest.locks[target] = summary
        _merge_build_deps(manifest.build_deps, m.build_deps, src.root)
        for key, value in m.extra.items():
            if key in dropped:
                continue
            if key in manifest.extra and manifest.extra[key] != value:
                dropped.add(key)
                del manifest.extra[key]
            elif key not in manifest.extra:
                manifest.extra[key] = copy.deepcopy(value)
    for name in sorted(combined):  # their summaries were each shard's; make the merged one's
        manifest.locks[name[len("pylock.") : -len(".toml")]] = _lock_record(name, plan.locks[name])
    manifest.targets = tuple(sorted(targets))
    return plan


def read_source(root: Path, label: str = "") -> Source:
    """Read one input wheelhouse (its manifest and lock files); ``label`` names its origin."""
    wh = Wheelhouse(Path(root))
    if not wh.manifest_path.is_file():
        raise UsageError(
            f"not a wheelhouse: {wh.root} (no wheelport.json)",
            hint="merge takes directories written by 'wheelport sync'",
            path=str(wh.root),
        )
    manifest = wh.load_manifest()
    from wheelport.verify import unsafe_paths

    bad = unsafe_paths(wh, manifest)
    if bad:
        rel, who, why = bad[0]
        raise VerifyError(
            f"{rel!r} in {who} of {wh.root} escapes that wheelhouse: {why}",
            hint="merge only wheelhouses written by 'wheelport sync'",
            path=rel,
        )
    locks = {p.name: p.read_bytes() for p in wh.lock_paths()}
    return Source(root=wh.root, manifest=manifest, locks=locks, label=label)


@dataclass(frozen=True)
class Input:
    """One wheelhouse directory to read, and where it came from (for messages)."""

    root: Path
    label: str


def _is_wheelhouse(path: Path) -> bool:
    return (path / "wheelport.json").is_file()


def extract_zip(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into the empty directory ``dest``, refusing any member that is a
    symlink, absolute, has a ``..`` component or would land outside ``dest``."""
    import shutil
    import stat
    import zipfile

    from wheelport.bootstrap import escape_reason

    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{archive} is not a readable zip: {exc}", path=str(archive)) from None
    with zf:
        for info in zf.infolist():
            name = info.filename
            why = escape_reason(str(dest), name.rstrip("/"))
            if why is None and stat.S_ISLNK(info.external_attr >> 16):
                why = "a symlink"
            if why is not None:
                raise VerifyError(
                    f"{name!r} in {archive} is refused: {why}",
                    hint="merge only artifacts written by 'wheelport sync' and upload-artifact",
                    path=name,
                )
            target = dest / name
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out)
            except FileExistsError:
                raise VerifyError(f"{name!r} is in {archive} twice; refused", path=name) from None


def _wheelhouses_in(path: Path, label: str, tmp: Path) -> list[Input]:
    """The wheelhouses of one input: itself, each subdirectory that is one (an artifact as
    actions/download-artifact puts it), or each ``.zip`` (of one) it is or holds."""
    if path.is_file() and path.suffix.lower() == ".zip":
        dest = Path(tempfile.mkdtemp(prefix="zip-", dir=tmp))
        extract_zip(path, dest)
        inner = _wheelhouses_in(dest, label, tmp) if not _is_wheelhouse(dest) else []
        return inner or [Input(dest, label)]
    if not path.is_dir() or _is_wheelhouse(path):
        return [Input(path, label)]
    found: list[Input] = []
    for child in sorted(path.iterdir()):
        if _is_wheelhouse(child) or (child.is_file() and child.suffix.lower() == ".zip"):
            found += _wheelhouses_in(child, f"{child.name} of {label}", tmp)
    return found or [Input(path, label)]


def expand_inputs(sources: Sequence[Path], tmp: Path) -> list[Input]:
    """Every wheelhouse the merge inputs name, zips unpacked (safely) under ``tmp``; an
    input that is neither a wheelhouse nor holds one stays as it is (reading it says why)."""
    out: list[Input] = []
    for source in sources:
        path = Path(source)
        out += _wheelhouses_in(path, f"input {path}", tmp)
    return out


def _place(src: Path, dest: Path, sha256: str) -> str:
    """Copy ``src`` to ``dest`` through a temporary name (a reflink when the filesystem can;
    never a hard link), checking the copy's sha256. Returns ``"linked"`` (reflink) or
    ``"copied"``."""
    how, actual = copy_verified(src, dest, sha256)
    if how is None:
        raise ExportError(f"{src} changed while it was merged (it is now {actual})", path=str(src))
    return "linked" if how == "reflink" else "copied"


def merge(sources: Sequence[Path], output: Path) -> MergeReport:
    """Merge the wheelhouses ``sources`` into ``output`` and re-index it.

    ``output`` may be new, empty, or a wheelhouse itself (then it takes part in the merge as
    the first source). Every source file is re-hashed before it is placed; any conflict or
    mismatch raises before anything is written. Files are copied (reflinked when possible).

    Each source may be a wheelhouse, a directory holding wheelhouses or ``.zip`` files of them
    (the layout actions/download-artifact leaves), or such a ``.zip``, unpacked to a temporary
    directory with no member allowed out of it. Conflicts name both origins.
    """
    output = Path(output)
    roots = [Path(s) for s in sources]
    if not roots:
        raise UsageError("nothing to merge", hint="usage: wheelport merge WH... -o DIR")
    out_wh = Wheelhouse(output)
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output} exists and is not a directory", path=str(output))
    if (
        output.is_dir()
        and any(p.name != LOCK_NAME for p in output.iterdir())
        and not out_wh.manifest_path.is_file()
    ):
        raise UsageError(
            f"{output} is not empty and not a wheelhouse",
            hint="choose a new directory",
            path=str(output),
        )
    with tempfile.TemporaryDirectory(prefix="wheelport-merge-") as tmp:
        expanded = expand_inputs(roots, Path(tmp))
        return _merge_into(expanded, output, out_wh)


def _merge_into(expanded: Sequence[Input], output: Path, out_wh: Wheelhouse) -> MergeReport:
    from wheelport.site.writer import write_index

    resolved_out = output.resolve()
    inputs = [i for i in expanded if i.root.resolve() != resolved_out]
    shared = [(i.root, True) for i in inputs]
    with locked([(output, False), *shared], "merge"):
        read = [read_source(i.root, i.label) for i in inputs]
        if out_wh.manifest_path.is_file():
            read.insert(0, read_source(output))
        plan = plan_merge(read)
        # check every source file before writing anything
        for rel, (root, sha) in sorted(plan.files.items()):
            path = contained(root, rel, f"{root / 'wheelport.json'}")
            if not path.is_file():
                raise ExportError(f"{path} is missing (named by {root}/wheelport.json)",
                                  hint=f"run 'wheelport verify {root}'", path=str(path))  # fmt: skip
            actual = sha256_file(path)
            if actual != sha:
                raise ExportError(f"{path} is {actual}, its manifest says {sha}",
                                  hint=f"run 'wheelport verify {root}'", path=str(path))  # fmt: skip
            why = wheel_problem(path, path.name) if rel.endswith(".whl") else None
            if why is not None:
                raise ExportError(f"{path} is not the wheel it is named: {why}",
                                  hint="merge only wheelhouses written by 'wheelport sync'; "
                                  "nothing was merged", path=str(path))  # fmt: skip
        copied = linked = present = 0
        output.mkdir(parents=True, exist_ok=True)
        for rel, (root, sha) in sorted(plan.files.items()):
            dest = contained(output, rel, f"{root / 'wheelport.json'}")
            if (
                dest.is_file()
                and dest.stat().st_size == (root / rel).stat().st_size
                and sha256_file(dest) == sha
            ):
                present += 1
                continue
            if _place(root / rel, dest, sha) == "linked":
                linked += 1
            else:
                copied += 1
        # the locks as the inputs hold them (or as shards' locks combine), then the manifest and
        # bootstrap.py: the same finish as sync's
        by_target = {
            name[len("pylock.") : -len(".toml")]: data for name, data in plan.locks.items()
        }
        finish(out_wh, plan.manifest, by_target)
        write_index(output, manifest=plan.manifest)
    return MergeReport(
        output=output,
        sources=[s.root for s in read],
        origins=[s.origin for s in read],
        targets=list(plan.manifest.targets),
        artifacts=len(plan.files),
        copied=copied,
        linked=linked,
        present=present,
        locks=len(plan.locks),
    )
