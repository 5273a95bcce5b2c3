"""pylock.toml (PEP 751), read and validated with ``packaging.pylock``.

Each package's ``marker`` is evaluated for the target in the lock-file context: ``extras`` are
the ``--extra`` values, ``dependency_groups`` the ``--group`` values (every group with
``--all-groups``; the lock's ``default-groups`` when none is given). ``--only-group`` is refused:
a PEP 751 lock does not say which packages the project itself needs. Only index packages
(wheels/sdist) can be imported; a vcs, directory or archive package is refused only when its
marker selects it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packaging.pylock import PackageSdist, PackageWheel, Pylock, PylockValidationError
from packaging.utils import NormalizedName, canonicalize_name

from wheelport.errors import UsageError
from wheelport.importers.markers import for_target_lock, marker_holds
from wheelport.importers.pins import (
    Choice,
    ImportedPin,
    Selected,
    basename,
    check_selection,
    load_toml,
    refuse_direct,
)


@dataclass(frozen=True)
class PylockSource:
    format: str
    origin: str
    pins: Sequence[ImportedPin]
    index_urls: Sequence[str]
    extras: frozenset[str]
    groups: frozenset[str]
    default_groups: frozenset[str]

    def select(self, env: Mapping[str, str], choice: Choice) -> dict[NormalizedName, Selected]:
        if choice.only_groups:
            raise UsageError(
                f"{self.origin}: a pylock.toml does not record which packages the project itself "
                "needs, so --only-group cannot leave them out",
                hint="use --group, or export the lock with only that group "
                "(e.g. 'uv export --only-group NAME --format pylock.toml')",
                path=self.origin,
            )
        check_selection(self.origin, "extra", choice.extras, self.extras)
        check_selection(self.origin, "group", choice.groups, self.groups)
        extras = frozenset(canonicalize_name(e) for e in choice.extras)
        wanted = self.groups if choice.all_groups else choice.groups or self.default_groups
        groups = frozenset(canonicalize_name(g) for g in wanted)
        out: dict[NormalizedName, Selected] = {}
        for pin in self.pins:
            if not marker_holds(pin.marker, env, extras=extras, groups=groups, origin=self.origin):
                continue
            if pin.name in out:
                raise UsageError(
                    f"{self.origin}: two entries for {pin.name} hold for one target",
                    path=self.origin,
                )
            left = for_target_lock(pin.marker, extras=extras, groups=groups)
            out[pin.name] = Selected(pin, (left,) if left else None)
        return refuse_direct(self.origin, out)


def parse(data: bytes, origin: str) -> PylockSource:
    doc = load_toml(data, origin, "pylock.toml")
    try:
        lock = Pylock.from_dict(doc)
    except PylockValidationError as exc:
        raise UsageError(f"{origin}: not a valid PEP 751 lock: {exc}", path=origin) from None
    if not lock.packages:
        raise UsageError(
            f"{origin}: the lock has no packages",
            hint="export a lock that lists packages (e.g. 'uv export --format pylock.toml')",
            path=origin,
        )
    pins: list[ImportedPin] = []
    indexes: list[str] = []
    for pkg in lock.packages:
        name = canonicalize_name(pkg.name)
        direct = None
        if pkg.vcs:
            direct = f"{pkg.vcs.type} {pkg.vcs.url or pkg.vcs.path}"
        elif pkg.directory:
            direct = f"directory {pkg.directory.path}"
        elif pkg.archive:
            direct = f"archive {pkg.archive.url or pkg.archive.path}"
        elif pkg.version is None:
            direct = "no index (no version)"
        files: dict[str, str] = {}
        arts: list[PackageWheel | PackageSdist] = [*(pkg.wheels or ())]
        if pkg.sdist:
            arts.append(pkg.sdist)
        for art in arts:
            fname = art.name or basename(art.url or art.path or "")
            digest = art.hashes.get("sha256")
            if fname and digest:
                files[fname] = digest.lower()
        if pkg.index and pkg.index not in indexes:
            indexes.append(pkg.index)
        pins.append(
            ImportedPin(
                name=name,
                version=pkg.version,
                marker=str(pkg.marker) if pkg.marker else None,
                dependencies=tuple(
                    sorted(
                        {
                            canonicalize_name(str(d["name"]))
                            for d in pkg.dependencies or ()
                            if "name" in d
                        }
                    )
                ),
                hashes=frozenset(files.values()),
                files=files,
                index_url=pkg.index,
                direct=direct,
            )
        )
    return PylockSource(
        format="pylock.toml",
        origin=origin,
        pins=pins,
        index_urls=indexes,
        extras=frozenset(lock.extras or ()),
        groups=frozenset(lock.dependency_groups or ()),
        default_groups=frozenset(lock.default_groups or ()),
    )
