"""pylock.toml (PEP 751), read and validated with ``packaging.pylock``.

Each package's ``marker`` is evaluated for the target in the lock-file context: ``extras`` are
the ``--extra`` values, ``dependency_groups`` the ``--group`` values (the lock's
``default-groups`` when none is given). Only index packages (wheels/sdist) can be imported.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from packaging.markers import Marker
from packaging.pylock import PackageSdist, PackageWheel, Pylock, PylockValidationError
from packaging.utils import NormalizedName, canonicalize_name

from wheelport.errors import UsageError
from wheelport.importers import ImportedPin, Selected, basename, check_selection, load_toml


@dataclass(frozen=True)
class PylockSource:
    format: str
    origin: str
    pins: Sequence[ImportedPin]
    index_urls: Sequence[str]
    extras: frozenset[str]
    groups: frozenset[str]
    default_groups: frozenset[str]

    def select(
        self, env: Mapping[str, str], extras: Collection[str], groups: Collection[str]
    ) -> dict[NormalizedName, Selected]:
        check_selection(self.origin, "extra", extras, self.extras)
        check_selection(self.origin, "group", groups, self.groups)
        context: dict[str, str | frozenset[str]] = {
            **env,
            "extras": frozenset(canonicalize_name(e) for e in extras),
            "dependency_groups": frozenset(canonicalize_name(g) for g in groups)
            if groups
            else self.default_groups,
        }
        out: dict[NormalizedName, Selected] = {}
        for pin in self.pins:
            if pin.marker and not Marker(pin.marker).evaluate(context, context="lock_file"):
                continue
            if pin.name in out:
                raise UsageError(
                    f"{self.origin}: two entries for {pin.name} hold for one target",
                    path=self.origin,
                )
            out[pin.name] = Selected(pin, (pin.marker,) if pin.marker else None)
        return out


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
        if pkg.vcs or pkg.directory or pkg.archive or pkg.version is None:
            raise UsageError(
                f"{origin}: {name} is not an index package (vcs, directory or archive)",
                hint="wheelport serves packages from indexes; publish it to one and re-lock",
                package=name,
                path=origin,
            )
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
