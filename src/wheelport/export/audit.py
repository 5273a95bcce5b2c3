"""``wheelport audit``: every pinned package of every lock against OSV vulnerability records.

Sources, any number of them:

- ``--osv PATH``: OSV's per-ecosystem ``all.zip`` (a zip of ``<id>.json`` records, as osv.dev
  publishes for PyPI), a directory of OSV JSON files (searched recursively: what an air-gapped
  site mirrors), or one OSV JSON file;
- ``--online``: the index's JSON API, ``<index host>/pypi/<name>/<version>/json``, whose
  ``vulnerabilities`` list (PyPI's OSV-ish form) names the records that affect that version.

Matching follows the OSV schema: an ``affected[]`` entry whose ``package.ecosystem`` is
``PyPI`` and whose ``package.name`` canonicalizes to the pinned name affects the version when
it is listed in ``versions`` or falls in a range of type ``ECOSYSTEM`` (events ``introduced``,
``fixed``, ``last_affected``, ``limit`` compared as ``packaging`` versions). ``withdrawn``
records are ignored. A project whose lock records PEP 792 status ``quarantined`` is a finding
too; ``archived`` and ``deprecated`` are notices.

:func:`record_audit` keeps the report in the wheelhouse (``audit.json``: the report, the OSV
sources' file names, and the sha256 of each lock audited), so that the wheelhouse page
(:mod:`wheelport.site.page`) shows it and says when the locks changed since.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelport.errors import UsageError
from wheelport.inventory import target_locks
from wheelport.lock import package_status
from wheelport.wheelhouse import Wheelhouse, atomic_write_text, sha256_file

#: the last audit's record, at the wheelhouse root
RECORD_NAME = "audit.json"
RECORD_VERSION = 1

ECOSYSTEM = "PyPI"


# --------------------------------------------------------------------------- OSV records


@dataclass(frozen=True)
class Advisory:
    """One OSV record, reduced to what matching and the report need."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    #: the record's ``affected`` entries for the PyPI ecosystem
    affected: tuple[Mapping[str, Any], ...]
    source: str

    @classmethod
    def from_osv(cls, data: Mapping[str, Any], source: str) -> Advisory | None:
        """None for a withdrawn record, one without an id, or one with no PyPI package."""
        if not isinstance(data, Mapping) or not data.get("id") or data.get("withdrawn"):
            return None
        affected = tuple(
            a
            for a in data.get("affected") or []
            if isinstance(a, Mapping) and (a.get("package") or {}).get("ecosystem") == ECOSYSTEM
        )
        if not affected:
            return None
        summary = str(data.get("summary") or data.get("details") or "").strip().split("\n")[0]
        return cls(
            id=str(data["id"]),
            aliases=tuple(str(a) for a in data.get("aliases") or []),
            summary=summary[:200],
            affected=affected,
            source=source,
        )

    def packages(self) -> set[str]:
        return {canonicalize_name(str(a["package"].get("name", ""))) for a in self.affected}

    def affects(self, name: str, version: Version) -> tuple[bool, tuple[str, ...]]:
        """Whether ``name`` ``version`` is affected, and the fixed versions the record names."""
        key = canonicalize_name(name)
        hit = False
        fixed: list[str] = []
        for entry in self.affected:
            if canonicalize_name(str(entry["package"].get("name", ""))) != key:
                continue
            if any(_same(v, version) for v in entry.get("versions") or []):
                hit = True
            for rng in entry.get("ranges") or []:
                if not isinstance(rng, Mapping) or rng.get("type") != "ECOSYSTEM":
                    continue
                events = [e for e in rng.get("events") or [] if isinstance(e, Mapping)]
                fixed += [str(e["fixed"]) for e in events if "fixed" in e]
                if in_range(version, events):
                    hit = True
        return hit, tuple(dict.fromkeys(fixed))


def _version(text: object) -> Version | None:
    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def _same(listed: object, version: Version) -> bool:
    v = _version(listed)
    return v == version if v is not None else str(listed) == str(version)


def in_range(version: Version, events: Sequence[Mapping[str, Any]]) -> bool:
    """The OSV range evaluation over ``introduced``/``fixed``/``last_affected``/``limit``
    events (https://ossf.github.io/osv-schema/#evaluation), with packaging versions."""
    keyed: list[tuple[tuple[int, Version | None], str, Version | None]] = []
    for e in events:
        for kind in ("introduced", "fixed", "last_affected", "limit"):
            if kind in e:
                value = str(e[kind])
                v = None if value == "0" else _version(value)
                if value != "0" and v is None:
                    continue  # a version packaging cannot read cannot be compared
                keyed.append(((0, None) if v is None else (1, v), kind, v))
    keyed.sort(key=lambda k: (k[0][0], k[0][1] or Version("0")))
    limits = [v for _k, kind, v in keyed if kind == "limit" and v is not None]
    if limits and all(version >= lim for lim in limits):
        return False
    affected = False
    for _k, kind, v in keyed:
        if kind == "introduced" and (v is None or version >= v):
            affected = True
        elif v is not None and (
            (kind == "fixed" and version >= v) or (kind == "last_affected" and version > v)
        ):
            affected = False
    return affected


def _records(path: Path) -> Iterator[tuple[Any, str]]:
    if path.is_dir():
        for item in sorted(path.rglob("*.json")):
            yield _load(item.read_bytes(), str(item)), str(item)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for member in sorted(zf.namelist()):
                if member.endswith(".json"):
                    yield _load(zf.read(member), f"{path}:{member}"), f"{path}:{member}"
    elif path.is_file():
        yield _load(path.read_bytes(), str(path)), str(path)
    else:
        raise UsageError(f"OSV source not found: {path}",
                         hint="give an all.zip, a directory of OSV JSON files or one such file",
                         path=str(path))  # fmt: skip


def _load(data: bytes, source: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise UsageError(f"{source}: not an OSV JSON record", path=source) from None


@dataclass
class OsvDatabase:
    """OSV records by canonical package name."""

    by_name: dict[str, list[Advisory]] = field(default_factory=dict)
    records: int = 0

    def add(self, advisory: Advisory) -> None:
        self.records += 1
        for name in advisory.packages():
            self.by_name.setdefault(name, []).append(advisory)

    @classmethod
    def load(cls, paths: Iterable[Path]) -> OsvDatabase:
        db = cls()
        for path in paths:
            for data, source in _records(Path(path)):
                docs = data if isinstance(data, list) else [data]
                for doc in docs:
                    adv = Advisory.from_osv(doc, source)
                    if adv is not None:
                        db.add(adv)
        return db


# --------------------------------------------------------------------------- online (index JSON API)

Fetch = Callable[[str], "Mapping[str, Any] | None"]


def json_api_url(index: str, name: str, version: str) -> str:
    """``<index host>/pypi/<name>/<version>/json`` for a lock's ``index`` URL."""
    parts = urlsplit(index)
    return f"{parts.scheme}://{parts.netloc}/pypi/{quote(name)}/{quote(version)}/json"


def httpx_fetch(timeout: float = 15.0) -> tuple[Fetch, Callable[[], None]]:
    """A fetcher for the JSON API (None for a 404) and its closer."""
    import httpx

    client = httpx.Client(
        timeout=timeout, follow_redirects=True, headers={"User-Agent": "wheelport"}
    )

    def fetch(url: str) -> Mapping[str, Any] | None:
        resp = client.get(url)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        data = resp.json()
        return data if isinstance(data, Mapping) else None

    return fetch, client.close


def online_advisories(data: Mapping[str, Any], url: str) -> list[Advisory]:
    """The ``vulnerabilities`` of a JSON API answer for one version (all apply to it)."""
    out = []
    for v in data.get("vulnerabilities") or []:
        if not isinstance(v, Mapping) or not v.get("id") or v.get("withdrawn"):
            continue
        summary = str(v.get("summary") or v.get("details") or "").strip().split("\n")[0]
        fixed = [str(f) for f in v.get("fixed_in") or []]
        out.append(
            Advisory(
                id=str(v["id"]),
                aliases=tuple(str(a) for a in v.get("aliases") or []),
                summary=summary[:200],
                affected=({"fixed_in": fixed},),
                source=url,
            )
        )
    return out


# --------------------------------------------------------------------------- the audit


@dataclass(frozen=True)
class Finding:
    target: str
    name: str
    version: str
    id: str
    aliases: tuple[str, ...]
    summary: str
    fixed: tuple[str, ...]
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "name": self.name, "version": self.version, "id": self.id,
                "aliases": list(self.aliases), "summary": self.summary, "fixed": list(self.fixed),
                "source": self.source}  # fmt: skip


@dataclass(frozen=True)
class StatusNotice:
    target: str
    name: str
    version: str
    status: str
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "name": self.name, "version": self.version,
                "status": self.status, "reason": self.reason}  # fmt: skip


@dataclass(frozen=True)
class AuditReport:
    targets: tuple[str, ...]
    packages: int
    records: int
    findings: tuple[Finding, ...]
    statuses: tuple[StatusNotice, ...]
    #: ``name==version: why`` for packages the online check could not answer
    unchecked: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return bool(self.findings) or any(s.status == "quarantined" for s in self.statuses)

    def to_json(self) -> dict[str, Any]:
        return {
            "targets": list(self.targets),
            "packages": self.packages,
            "osv_records": self.records,
            "findings": [f.to_json() for f in self.findings],
            "project_statuses": [s.to_json() for s in self.statuses],
            "unchecked": list(self.unchecked),
        }


def audit(
    wheelhouse: Path,
    *,
    targets: Sequence[str] = (),
    osv: Sequence[Path] = (),
    online: bool = False,
    fetch: Fetch | None = None,
) -> AuditReport:
    """Check every package of the chosen locks (default: all) against the OSV sources.

    ``fetch`` (for ``online``) takes a JSON API URL and returns its JSON (None: not there);
    the default uses httpx. An unreachable API is reported in ``unchecked``, not raised.
    """
    if not osv and not online:
        raise UsageError("no vulnerability source", hint="give --osv PATH (all.zip or a directory "
                         "of OSV JSON files) and/or --online")  # fmt: skip
    locks = target_locks(wheelhouse, targets)
    db = OsvDatabase.load(osv)
    close: Callable[[], None] = lambda: None  # noqa: E731
    if online and fetch is None:
        fetch, close = httpx_fetch()
    findings: dict[tuple[str, str, str, str], Finding] = {}
    notices = []
    unchecked: list[str] = []
    online_cache: dict[str, list[Advisory] | str] = {}
    packages = 0
    try:
        for tl in locks:
            for pkg in sorted(tl.lock.packages, key=lambda p: str(p.name)):
                if pkg.version is None:
                    continue
                packages += 1
                name, version = str(pkg.name), str(pkg.version)
                status = package_status(pkg)
                if status is not None and status.notable:
                    notices.append(
                        StatusNotice(tl.target, name, version, status.status, status.reason)
                    )
                hits: list[tuple[Advisory, tuple[str, ...]]] = []
                for adv in db.by_name.get(canonicalize_name(name), []):
                    hit, fixed = adv.affects(name, pkg.version)
                    if hit:
                        hits.append((adv, fixed))
                if online and fetch is not None and pkg.index:
                    url = json_api_url(pkg.index, name, version)
                    if url not in online_cache:
                        try:
                            data = fetch(url)
                            online_cache[url] = online_advisories(data, url) if data else []
                        except Exception as exc:  # network or server trouble: say, go on
                            online_cache[url] = f"{type(exc).__name__}: {exc}"
                    got = online_cache[url]
                    if isinstance(got, str):
                        unchecked.append(f"{name}=={version}: {got}")
                    else:
                        hits += [(a, tuple(a.affected[0].get("fixed_in", ()))) for a in got]
                for adv, fixed in hits:
                    key = (tl.target, name, version, adv.id)
                    known = next((f for k, f in findings.items() if k[:3] == key[:3]
                                  and (adv.id in f.aliases or f.id in adv.aliases)), None)  # fmt: skip
                    if key in findings or known is not None:
                        continue
                    findings[key] = Finding(tl.target, name, version, adv.id, adv.aliases,
                                            adv.summary, fixed, adv.source)  # fmt: skip
    finally:
        close()
    return AuditReport(
        targets=tuple(t.target for t in locks),
        packages=packages,
        records=db.records,
        findings=tuple(sorted(findings.values(), key=lambda f: (f.target, f.name, f.id))),
        statuses=tuple(notices),
        unchecked=tuple(dict.fromkeys(unchecked)),
    )


def _shown_source(source: str, osv: Sequence[Path]) -> str:
    """A finding's source without the auditor's directories (``all.zip:PYSEC-1.json``)."""
    for path in osv:
        prefix = str(path)
        if source.startswith(prefix):
            return Path(path).name + source[len(prefix) :]
    return source


def audit_record(
    report: AuditReport, locks: Mapping[str, str], *, osv: Sequence[Path] = (), online: bool = False
) -> dict[str, Any]:
    """The JSON of ``audit.json``: ``report`` (:meth:`AuditReport.to_json`, sources without
    local directories), ``locks`` (lock file name → sha256 when audited), ``osv`` (the
    sources' file names) and ``online``. No time: the same audit of the same locks with the
    same records gives the same bytes."""
    data = report.to_json()
    for finding in data["findings"]:
        finding["source"] = _shown_source(finding["source"], osv)
    return {
        "version": RECORD_VERSION,
        "report": data,
        "locks": dict(sorted(locks.items())),
        "osv": [Path(p).name for p in osv],
        "online": online,
    }


def record_audit(
    wheelhouse: Path, report: AuditReport, *, osv: Sequence[Path] = (), online: bool = False
) -> Path:
    """Write ``audit.json`` into the wheelhouse (atomically, holding the wheelhouse's lock) for
    the audit just made, and bring the index and its page (``index.html``) up to date."""
    from wheelport.site.writer import write_index

    wh = Wheelhouse(Path(wheelhouse))
    path = wh.root / RECORD_NAME
    with wh.locked("audit"):
        locks = {
            wh.lock_path(t).name: sha256_file(wh.lock_path(t))
            for t in report.targets
            if wh.lock_path(t).is_file()
        }
        record = audit_record(report, locks, osv=osv, online=online)
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
        write_index(wh.root)
    return path
