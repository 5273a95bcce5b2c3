"""PEP 751 locks: one ``pylock.<target>.toml`` per target.

``build_lock`` is a pure function from a resolution to a ``packaging.pylock.Pylock``; the
writer validates it with ``packaging`` before anything reaches the disk, and writes all
locks of a run only after every target resolved (no half-written set).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# tomli, not the stdlib's tomllib (the same parser): its wheels are compiled (mypyc) and read a
# lock about 3.5x faster, which is most of what a no-op sync of many targets spends
import tomli as tomllib
import tomli_w
from packaging.markers import Marker
from packaging.pylock import Package, PackageSdist, PackageWheel, Pylock, PylockValidationError
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from wheelport import __version__
from wheelport.errors import UsageError
from wheelport.targets import Target
from wheelport.wheelhouse import Wheelhouse, atomic_write_text, stat_stamp

if TYPE_CHECKING:  # imported where used: reading a lock (a no-op sync) needs no resolver
    from wheelport.index.models import DistFile
    from wheelport.index.parse import ProjectStatus
    from wheelport.resolve import Pin, Resolution

CREATED_BY = "wheelport"


def environment_marker(target: Target) -> Marker:
    """The marker that holds exactly on the target's kind of interpreter and platform."""
    m = target.markers
    return Marker(
        f'sys_platform == "{m["sys_platform"]}" and platform_machine == "{m["platform_machine"]}"'
        f' and python_version == "{m["python_version"]}"'
        f' and implementation_name == "{m["implementation_name"]}"'
    )


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _artifact_fields(file: DistFile) -> dict[str, Any]:
    """A downloaded file's lock entry: its URL, where it lives in the wheelhouse, its hash."""
    return {
        "name": file.filename,
        "url": file.url,
        "path": f"{'wheels' if file.is_wheel else 'sdists'}/{file.filename}",
        "upload_time": _time(file.upload_time),
        "size": file.size,
        "hashes": {"sha256": file.sha256} if file.sha256 else {},
    }


def _package_tool(pin: Pin, status: ProjectStatus | None) -> dict[str, Any] | None:
    tool: dict[str, Any] = {}
    if pin.extras:
        tool["extras"] = sorted(pin.extras)
    if status is not None and status.notable:
        tool["project-status"] = status.to_json()
    return {"wheelport": tool} if tool else None


def marker_for(pin: Pin) -> Marker | None:
    """The lock marker of a pin: where any of the markers it was required under holds."""
    if not pin.markers:
        return None
    if len(pin.markers) == 1:
        return Marker(pin.markers[0])
    return Marker(" or ".join(f"({m})" for m in pin.markers))


def _package(pin: Pin, status: ProjectStatus | None = None) -> Package:
    is_wheel = pin.file.is_wheel
    return Package(
        name=pin.name,
        version=pin.version,
        marker=marker_for(pin),
        requires_python=pin.file.requires_python_spec,
        index=pin.file.index_url.rstrip("/"),
        dependencies=[{"name": d} for d in pin.dependencies] or None,
        wheels=[PackageWheel(**_artifact_fields(pin.file))] if is_wheel else None,
        sdist=None if is_wheel else PackageSdist(**_artifact_fields(pin.file)),
        tool=_package_tool(pin, status),
    )


def build_lock(
    resolution: Resolution,
    *,
    inputs_digest: str,
    inputs: Mapping[str, Any] | None = None,
    tools: Sequence[Pin] = (),
    statuses: Mapping[str, ProjectStatus] | None = None,
) -> Pylock:
    """A PEP 751 lock for one target's resolution (validated when :func:`dumps` writes it).

    ``inputs`` (``api.inputs_record``) goes into ``[tool.wheelport.inputs]``: what the lock
    was made from. ``statuses`` (``IndexClient.project_statuses()``) puts each package's PEP
    792 project status other than ``active`` in its ``[packages.tool.wheelport] project-status``."""
    statuses = statuses or {}
    t = resolution.target
    tool: dict[str, Any] = {
        "target": t.identifier,
        "inputs-digest": inputs_digest,
        "wheelport-version": __version__,
    }
    if inputs:
        tool["inputs"] = dict(inputs)
    if tools:
        tool["tools"] = [
            {
                "name": p.name,
                "version": str(p.version),
                "path": f"wheels/{p.file.filename}",
                "url": p.file.url,
                "sha256": p.file.sha256 or "",
                "size": p.file.size or 0,
            }
            for p in tools
        ]
    lock = Pylock(
        lock_version=Version("1.0"),
        environments=[environment_marker(t)],
        requires_python=SpecifierSet(f"=={t.python_version[0]}.{t.python_version[1]}.*"),
        created_by=CREATED_BY,
        packages=[_package(p, statuses.get(p.name)) for p in resolution.pins.values()],
        tool={"wheelport": tool},
    )
    return lock


def dumps(lock: Pylock) -> str:
    """The TOML text of ``lock``, validated against PEP 751 first (raises
    ``PylockValidationError``): one conversion to a dict serves both, where
    ``Pylock.validate()`` and then writing would convert twice (each is a deep
    ``dataclasses.asdict``: most of a 15-target lock write)."""
    return _dumps(lock)[0]


def _dumps(lock: Pylock) -> tuple[str, Pylock]:
    """(the TOML text of ``lock``, the lock as reading that text gives it back)."""
    data = _as_dict(lock, keep_none=False)  # no None anywhere: what the text holds
    validated = Pylock.from_dict(data)  # what Pylock.validate() does
    return _toml(data), validated


#: the TOML of one ``[[packages]]`` entry, by its dict's ``repr``: a pure-Python package is the
#: same entry in every target's lock, written once per run (tomli_w is half of writing a lock)
_package_toml: dict[str, str] = {}
_PACKAGE_TOML_KEPT = 20_000


def _toml(data: dict[str, Any]) -> str:
    """``tomli_w.dumps(data)`` of a lock's dict, each ``[[packages]]`` entry's text made once
    per run (:data:`_package_toml`). The same bytes: tomli_w writes the scalars and arrays
    first, then each table after a blank line, so the text is the head, each entry and the
    ``[tool]`` table, joined by blank lines — when every entry is a table of its own
    (``[[packages]]``: an entry short enough for one line makes tomli_w weigh the whole array
    as inline). Any other shape is written whole."""
    packages = data.get("packages")
    keys = list(data)
    tail = ["packages", "tool"] if "tool" in data else ["packages"]
    if (
        not isinstance(packages, list)
        or not packages
        or not all(isinstance(p, dict) for p in packages)
        or keys[-len(tail) :] != tail
        or any(isinstance(data[k], dict | list) and _has_table(data[k]) for k in keys[: -len(tail)])
    ):
        return tomli_w.dumps(data)
    parts = [tomli_w.dumps({k: data[k] for k in keys[: -len(tail)]})]
    for package in packages:
        key = repr(package)
        text = _package_toml.get(key)
        if text is None:
            text = tomli_w.dumps({"packages": [package]})
            if not text.startswith("[[packages]]\n"):  # small enough to be written inline:
                return tomli_w.dumps(data)  # the whole array's form depends on every entry
            if len(_package_toml) >= _PACKAGE_TOML_KEPT:
                _package_toml.clear()
            _package_toml[key] = text
        parts.append(text)
    if "tool" in data:
        parts.append(tomli_w.dumps({"tool": data["tool"]}))
    return "\n".join(parts)


def _has_table(value: Any) -> bool:
    """Whether tomli_w writes ``value`` (a head key's) as a table, not inline."""
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def lock_dict(value: Any) -> Any:
    """``Pylock.to_dict()``'s answer, made directly: PEP 751 keys (``_`` → ``-``), versions,
    markers and specifiers as text, no ``None`` fields. ``to_dict`` is a deep
    ``dataclasses.asdict`` that deep-copies every leaf: half of writing 15 locks."""
    return _as_dict(value, keep_none=True)


#: per dataclass: (attribute, PEP 751 key, whether it is ``environments``) of each field
_FIELDS: dict[type, tuple[tuple[str, str, bool], ...]] = {}
_LEAVES = (str, int, float, bool, datetime)


def _as_dict(value: Any, *, keep_none: bool) -> Any:
    """:func:`lock_dict`; without ``keep_none`` also no ``None`` value in a plain table (what
    TOML can hold: the text written and read back), in the same pass. A table's arrays are
    lists then (tomli_w writes a tuple as the same array)."""
    cls = type(value)
    if cls in _LEAVES:
        return value
    fields = _FIELDS.get(cls)
    if fields is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = _FIELDS[cls] = tuple(
            (f.name, f.name.replace("_", "-"), f.name == "environments")
            for f in dataclasses.fields(value)
        )
    if fields is not None:
        out = {}
        for name, key, environments in fields:
            item = _as_dict(getattr(value, name), keep_none=keep_none)
            if item is None:
                continue
            if isinstance(item, Version | Marker | SpecifierSet):
                item = str(item)
            elif environments and isinstance(item, Sequence):
                item = [str(m) for m in item]
            out[key] = item
        return out
    if isinstance(value, list | tuple):
        if keep_none:
            return type(value)(_as_dict(v, keep_none=True) for v in value)
        return [_as_dict(v, keep_none=False) for v in value]
    if isinstance(value, dict):
        if keep_none:
            return {
                _as_dict(k, keep_none=True): _as_dict(v, keep_none=True) for k, v in value.items()
            }
        return {k: _as_dict(v, keep_none=False) for k, v in value.items() if v is not None}
    return value


#: locks read in this process, by the file's stat stamp (a Pylock is immutable; any write,
#: rename or copy of the file changes the stamp, so a changed lock is always read again)
_read: dict[tuple[str, int, int, int, int, int], Pylock] = {}
_read_lock = threading.Lock()


def _remember_read(
    path: Path, lock: Pylock, key: tuple[str, int, int, int, int, int] | None = None
) -> None:
    """Note that the file at ``path`` (as it is now, or with ``key``) reads as ``lock``."""
    key = key or (str(path.absolute()), *stat_stamp(path.stat()))
    with _read_lock:
        if len(_read) > 256:
            _read.clear()
        _read[key] = lock


def read_lock(path: Path) -> Pylock:
    """Read and validate a lock; a bad one is a :class:`UsageError` naming the file. A lock
    read before in this process, unchanged since, is not parsed again (a sync reads each a few
    times: staleness check, fetch, build, recheck)."""
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            key = (str(path.absolute()), *stat_stamp(st))
            with _read_lock:
                hit = _read.get(key)
            if hit is not None:
                return hit
            data = tomllib.load(f)
        lock = Pylock.from_dict(data)
        _remember_read(path, lock, key)
        return lock
    except FileNotFoundError:
        raise UsageError(
            f"lock not found: {path}", hint="run 'wheelport lock' first", path=str(path)
        ) from None
    except (tomllib.TOMLDecodeError, PylockValidationError) as exc:
        raise UsageError(f"{path}: not a valid PEP 751 lock: {exc}", path=str(path)) from None


def lock_tool(lock: Pylock) -> dict[str, Any]:
    return dict((lock.tool or {}).get("wheelport", {}))


def package_status(pkg: Package) -> ProjectStatus | None:
    """The PEP 792 status the lock recorded for a package (None: active or not recorded)."""
    raw = ((pkg.tool or {}).get("wheelport") or {}).get("project-status")
    if not isinstance(raw, Mapping) or not isinstance(raw.get("status"), str):
        return None
    reason = raw.get("reason")
    from wheelport.index.parse import ProjectStatus  # (only for a status: most have none)

    return ProjectStatus(str(raw["status"]), reason if isinstance(reason, str) else None)


@dataclass(frozen=True)
class InstallList:
    """What an installer takes from one lock: wheel files, installer tools, unbuilt packages."""

    packages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...]
    unbuilt: tuple[str, ...]


def install_list(lock: Pylock) -> InstallList:
    """Each package's chosen wheel (path, sha256, size), the tools, and packages with only an
    sdist. Provision and the manifest's ``locks`` section (read by bootstrap.py) both use it."""
    packages = []
    unbuilt = []
    for pkg in lock.packages:
        if not pkg.wheels:
            unbuilt.append(str(pkg.name))
            continue
        w = pkg.wheels[0]
        packages.append(
            {
                "name": str(pkg.name),
                "version": str(pkg.version),
                "path": w.path or f"wheels/{w.name}",
                "sha256": w.hashes["sha256"],
                "size": w.size,
            }
        )
    tools = tuple(
        {k: tool[k] for k in ("name", "version", "path", "sha256") if k in tool}
        for tool in lock_tool(lock).get("tools", [])
    )
    return InstallList(tuple(packages), tools, tuple(unbuilt))


@dataclass(frozen=True)
class Staleness:
    target: str
    path: Path
    reason: str | None  # None: current


def check_locks(
    wheelhouse: Wheelhouse, targets: Sequence[Target], inputs_digest: str
) -> list[Staleness]:
    """For each target: is its lock present, valid, and made from the same inputs?"""
    out = []
    for t in targets:
        path = wheelhouse.lock_path(t.identifier)
        if not path.exists():
            out.append(Staleness(t.identifier, path, "missing"))
            continue
        try:
            lock = read_lock(path)
        except UsageError as exc:
            out.append(Staleness(t.identifier, path, f"invalid: {exc.message}"))
            continue
        digest = lock_tool(lock).get("inputs-digest")
        reason = None if digest == inputs_digest else "inputs changed"
        out.append(Staleness(t.identifier, path, reason))
    return out


def write_locks(wheelhouse: Wheelhouse, locks: Mapping[str, Pylock]) -> list[Path]:
    """Write every lock (each atomically) after all were built and validated."""
    wheelhouse.root.mkdir(parents=True, exist_ok=True)
    texts = {tid: _dumps(lock) for tid, lock in locks.items()}
    paths = []
    for tid, (text, validated) in texts.items():
        path = wheelhouse.lock_path(tid)
        atomic_write_text(path, text)
        _remember_read(path, validated)  # read back at once by sync: not parsed again
        paths.append(path)
    return paths
