"""``wheelport merge``: combine wheelhouses built on different machines into one.

A CI matrix builds one wheelhouse per platform; ``merge`` unites them: the union of their
artifacts (``wheels/``, ``sdists/``), locks and manifests, then a fresh index and
``bootstrap.py``. The same relative path with two different sha256s, or the same lock file
with different content, is a conflict: an error naming the file and both hashes, and nothing
is written. A path in an input's manifest or locks that escapes that input is refused.

Files are copied (a reflink where the filesystem has them), never hard-linked: the output
and the inputs stay independent. ``merge`` holds the output's exclusive lock and each
input's shared lock (:func:`wheelport.wheelhouse.locked`).

:func:`plan_merge` decides (pure, over already-read values); :func:`merge` reads, checks and
writes.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wheelport.errors import ExportError, UsageError, VerifyError
from wheelport.wheelhouse import (
    LOCK_NAME,
    Wheelhouse,
    atomic_write_bytes,
    contained,
    copy_verified,
    locked,
    sha256_file,
)


@dataclass(frozen=True)
class Source:
    """One input wheelhouse as read from disk."""

    root: Path
    manifest: Mapping[str, Any]
    #: lock file name -> its bytes
    locks: Mapping[str, bytes]


@dataclass
class MergePlan:
    """The merged manifest, which file comes from where, and the locks to write."""

    manifest: dict[str, Any]
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
        }


def _short(sha: str) -> str:
    return sha[:16]


def _merge_origin(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two records of the same file: keep the first origin, unite a build's targets."""
    out = dict(a)
    if a.get("kind") == "build" and b.get("kind") == "build":
        out["targets"] = sorted(set(a.get("targets", [])) | set(b.get("targets", [])))
    return out


def _merge_build_deps(into: dict[str, Any], other: Mapping[str, Any], where: Path) -> None:
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
            slot[target] = copy.deepcopy(entries)


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
    manifest: dict[str, Any] = {
        "version": first.get("version", 1),
        "inputs_digest": first.get("inputs_digest"),
        "targets": [],
        "artifacts": {},
    }
    plan = MergePlan(manifest=manifest)
    targets: set[str] = set()
    lock_origin: dict[str, Path] = {}
    extra: dict[str, Any] = {}
    dropped: set[str] = set()
    known = {"version", "inputs_digest", "targets", "artifacts", "locks", "build_deps"}
    for src in sources:
        m = src.manifest
        if m.get("inputs_digest") != manifest["inputs_digest"]:
            manifest["inputs_digest"] = None  # built from different inputs: no single digest
        targets.update(m.get("targets", []))
        for rel, rec in sorted(m.get("artifacts", {}).items()):
            sha = rec["sha256"]
            have = manifest["artifacts"].get(rel)
            if have is None:
                manifest["artifacts"][rel] = copy.deepcopy(dict(rec))
                plan.files[rel] = (src.root, sha)
            elif have["sha256"] != sha:
                other = plan.files[rel][0]
                raise ExportError(
                    f"conflict: {rel} is {have['sha256']} in {other} but {sha} in {src.root}",
                    hint="two builds made different files of the same name; rebuild one or "
                    "drop it before merging",
                    path=rel,
                )
            else:
                have["origin"] = _merge_origin(have.get("origin", {}), rec.get("origin", {}))
        for name, data in sorted(src.locks.items()):
            if name in plan.locks and plan.locks[name] != data:
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
        for target, summary in sorted(m.get("locks", {}).items()):
            locks_section = manifest.setdefault("locks", {})
            if target in locks_section and locks_section[target] != summary:
                raise ExportError(
                    f"conflict: the manifest's lock summary for {target} differs between "
                    f"{lock_origin.get(summary.get('file', ''), sources[0].root)} and {src.root}",
                    hint="re-sync one of the wheelhouses so they agree",
                    target=target,
                )
            locks_section[target] = copy.deepcopy(dict(summary))
        if "build_deps" in m:
            _merge_build_deps(manifest.setdefault("build_deps", {}), m["build_deps"], src.root)
        for key, value in m.items():
            if key in known or key in dropped:
                continue
            if key in extra and extra[key] != value:
                dropped.add(key)
                del extra[key]
            elif key not in extra:
                extra[key] = copy.deepcopy(value)
    manifest["targets"] = sorted(targets)
    manifest.update(extra)
    return plan


def read_source(root: Path) -> Source:
    """Read one input wheelhouse (its manifest and lock files)."""
    wh = Wheelhouse(Path(root))
    if not wh.manifest_path.is_file():
        raise UsageError(
            f"not a wheelhouse: {wh.root} (no wheelport.json)",
            hint="merge takes directories written by 'wheelport sync'",
            path=str(wh.root),
        )
    try:
        manifest = wh.load_manifest()
    except ValueError as exc:
        raise UsageError(
            f"{wh.manifest_path} is not valid JSON: {exc}", path=str(wh.manifest_path)
        ) from None
    from wheelport.verify import unsafe_paths

    bad = unsafe_paths(wh)
    if bad:
        rel, who, why = bad[0]
        raise VerifyError(
            f"{rel!r} in {who} of {wh.root} escapes that wheelhouse: {why}",
            hint="merge only wheelhouses written by 'wheelport sync'",
            path=rel,
        )
    locks = {p.name: p.read_bytes() for p in wh.lock_paths()}
    return Source(root=wh.root, manifest=manifest, locks=locks)


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
    """
    from wheelport.index.writer import write_index
    from wheelport.sync import install_bootstrap

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
    shared = [(r, True) for r in roots if r.resolve() != output.resolve()]
    with locked([(output, False), *shared], "merge"):
        resolved_out = output.resolve()
        inputs = [r for r in roots if r.resolve() != resolved_out]
        read = [read_source(r) for r in inputs]
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
        for name, data in sorted(plan.locks.items()):
            lock = output / name
            if not lock.is_file() or lock.read_bytes() != data:
                atomic_write_bytes(lock, data)
        out_wh.save_manifest(plan.manifest)
        install_bootstrap(out_wh)
        write_index(output, manifest=plan.manifest)
    return MergeReport(
        output=output,
        sources=[s.root for s in read],
        targets=list(plan.manifest["targets"]),
        artifacts=len(plan.files),
        copied=copied,
        linked=linked,
        present=present,
        locks=len(plan.locks),
    )
