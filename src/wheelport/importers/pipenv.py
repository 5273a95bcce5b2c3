"""Pipfile.lock (read with ``json``).

Sections are pipenv's categories: ``default`` always, ``--group dev`` (or its other names
``develop``, ``dev-packages``) adds ``develop``, ``--group NAME`` any other category. Each entry's
``markers`` is evaluated for the target and the selection: current pipenv writes PEP 751
lock-file markers such as ``('dev' in dependency_groups) and (sys_platform == 'win32')`` into
``develop``, where ``dependency_groups`` is what is selected (``default`` and the groups).
pipenv resolves on the machine it runs on: a package whose marker did not hold there is written
as ``"version": "*"`` with no hashes — not a pin, so a target that needs it is a red cell (exit 1
naming it, or left unlocked with ``--allow-missing``), never a freshly chosen version. Entries
from git, a path or a URL are refused only when a selected category holds them.
"""

from __future__ import annotations

import json

from packaging.utils import canonicalize_name
from packaging.version import Version

from wheelport.errors import UsageError
from wheelport.importers.markers import checked_marker
from wheelport.importers.pins import FlatLock, ImportedPin, sha256_of

#: pipenv's own names for the ``develop`` category
DEV_ALIASES = {"develop": "dev", "dev-packages": "dev"}
DIRECT_KEYS = ("path", "file", "git", "hg", "svn", "bzr")


def parse(data: bytes, origin: str) -> FlatLock:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{origin}: malformed Pipfile.lock: {exc}", path=origin) from None
    if not isinstance(doc, dict) or "_meta" not in doc:
        raise UsageError(f"{origin}: malformed Pipfile.lock: no _meta section", path=origin)
    sources = {s["name"]: s["url"] for s in doc["_meta"].get("sources", [])}
    pins: list[ImportedPin] = []
    categories: set[str] = set()
    for section, entries in doc.items():
        if section == "_meta":
            continue
        group = DEV_ALIASES.get(canonicalize_name(section), canonicalize_name(section))
        categories.add(group)
        for raw, entry in entries.items():
            name = canonicalize_name(raw)
            direct = next((f"{k} {entry[k]}" for k in DIRECT_KEYS if k in entry), None)
            spec = str(entry.get("version", "*"))
            version = Version(spec.lstrip("=")) if spec.startswith("==") else None
            hashes = frozenset(h for h in (sha256_of(x) for x in entry.get("hashes", [])) if h)
            pins.append(
                ImportedPin(
                    name=name,
                    version=version,
                    marker=checked_marker(entry.get("markers")),
                    extras=frozenset(canonicalize_name(e) for e in entry.get("extras", [])),
                    hashes=hashes,
                    groups=frozenset({group}),
                    index_url=sources.get(entry.get("index", "")),
                    direct=direct,
                )
            )
    return FlatLock(
        format="Pipfile.lock",
        origin=origin,
        pins=pins,
        index_urls=list(sources.values()),
        base_groups=frozenset({"default"}),
        known_groups=frozenset(categories - {"default"}),
        group_aliases=DEV_ALIASES if "dev" in categories else {},
    )
