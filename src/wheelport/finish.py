"""The one write at the end of a verb that changed a wheelhouse.

``sync`` (after its build stage) and ``merge`` (after placing the merged files) end the same
way: :func:`record_locks` puts the targets and each lock's summary — what bootstrap.py and
provision read, docs/lock-format.md — into the in-memory manifest, then :func:`finish` writes
the locks that changed, the manifest and ``bootstrap.py``, in that order: a manifest never names
a lock that is not there. Both then write the index (:mod:`wheelport.site.writer`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelport.lock import dumps, install_list
from wheelport.manifest import LockRecord, Manifest
from wheelport.targets import Target, wheel_tags
from wheelport.wheelhouse import Wheelhouse, atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from packaging.pylock import Pylock

#: a Linux policy's C library, as the manifest's ``locks`` entries name it
LIBC = {"manylinux": "glibc", "musllinux": "musl"}


def lock_target_facts(target: Target) -> dict[str, Any]:
    """What bootstrap.py's lock rule reads of a lock for ``target``: the target fields of its
    entry in the manifest's ``locks`` section (docs/lock-format.md)."""
    m = target.markers
    return {
        "python_version": m["python_version"],
        "sys_platform": m["sys_platform"],
        "platform_machine": m["platform_machine"],
        "libc": LIBC.get(target.os),
        "policy": list(target.policy_version) if target.policy_version else None,
    }


def lock_record(target: Target, lock: Pylock, path: Path) -> LockRecord:
    """The part of a lock an installer needs: the manifest's ``locks`` entry
    (docs/lock-format.md)."""
    facts = lock_target_facts(target)
    items = install_list(lock)
    tags = {str(t) for p in items.packages for t in wheel_tags(Path(p["path"]).name)}
    return LockRecord(
        file=path.name,
        python_version=facts["python_version"],
        sys_platform=facts["sys_platform"],
        platform_machine=facts["platform_machine"],
        libc=facts["libc"],
        policy=target.policy_version,
        tags=tuple(sorted(tags)),
        packages=tuple(items.packages),
        unbuilt=tuple(items.unbuilt),
        tools=tuple(items.tools),
    )


def record_locks(
    wh: Wheelhouse,
    manifest: Manifest,
    targets: Sequence[Target],
    locks: Mapping[str, Pylock],
    *,
    inputs_digest: str | None = None,
    dropped: Collection[str] = (),
) -> None:
    """Record in ``manifest`` (in memory) the ``targets`` and their ``locks`` summaries, without
    the ``dropped`` targets; and the inputs digest when one is given."""
    if inputs_digest is not None:
        manifest.inputs_digest = inputs_digest
    gone = set(dropped)
    ids = {t.identifier for t in targets}
    manifest.targets = tuple(sorted((set(manifest.targets) | ids) - gone))
    for tid in gone:
        manifest.locks.pop(tid, None)
    for t in targets:
        manifest.locks[t.identifier] = lock_record(
            t, locks[t.identifier], wh.lock_path(t.identifier)
        )


def lock_texts(locks: Mapping[str, Pylock], ids: Collection[str]) -> dict[str, str]:
    """The file text of each lock of ``ids`` (target identifiers), each validated first."""
    for tid in sorted(ids):
        locks[tid].validate()
    return {tid: dumps(locks[tid]) for tid in sorted(ids)}


def install_bootstrap(wh: Wheelhouse) -> None:
    """Put this wheelport's ``bootstrap.py`` in the wheelhouse (unless it is there already)."""
    from wheelport import bootstrap

    src = Path(bootstrap.__file__).read_text(encoding="utf-8")
    if not wh.bootstrap_path.exists() or wh.bootstrap_path.read_text(encoding="utf-8") != src:
        atomic_write_text(wh.bootstrap_path, src)


def finish(wh: Wheelhouse, manifest: Manifest, locks: Mapping[str, str | bytes]) -> None:
    """The one write at the end of a verb that changed the wheelhouse: ``locks`` (target
    identifier → the lock file's text, or its bytes as another wheelhouse holds them; a file that
    holds them already is left alone), then the manifest, then bootstrap.py."""
    for tid, content in sorted(locks.items()):
        path = wh.lock_path(tid)
        data = content.encode("utf-8") if isinstance(content, str) else content
        with contextlib.suppress(OSError):
            if path.read_bytes() == data:
                continue
        if isinstance(content, str):
            atomic_write_text(path, content)
        else:
            atomic_write_bytes(path, content)
    wh.save_manifest(manifest)
    install_bootstrap(wh)
