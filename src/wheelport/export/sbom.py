"""``wheelport export sbom`` and ``wheelport licenses``: what a wheelhouse holds, for auditors.

The SBOM is CycloneDX JSON (spec 1.6 by default), written with ``cyclonedx-python-lib`` from
one target's lock, the manifest and the wheels' own metadata. Per package it carries:

- name, version, ``purl`` (``pkg:pypi/<name>@<version>?file_name=<wheel>``, plus
  ``repository_url`` for an index other than PyPI), the artifact's sha256;
- its license (see :func:`license_of`);
- its origin: a downloaded file gets an ``externalReferences`` entry of type ``distribution``
  (the URL); a built wheel gets ``pedigree.ancestors`` = the sdist it was built from (with the
  sdist's purl, hash and download URL), and both get ``wheelport:origin:*`` properties (kind,
  builder, sdist path);
- the lock's ``dependencies`` as CycloneDX ``dependencies``;
- PEP 770 SBOMs a wheel carries (``*.dist-info/sboms/*.json``): CycloneDX ones are nested as the
  wheel component's ``components`` (what the wheel bundles, e.g. libraries auditwheel grafted
  in: CycloneDX's "included in" relation); other formats (SPDX) are named in a
  ``wheelport:embedded-sbom`` property with their sha256.

License answers are taken, in order, from PEP 639 ``License-Expression``; a ``License`` field
that is a valid SPDX identifier or expression; a single Trove license classifier with an
unambiguous SPDX id; a one-line ``License`` field as a license name; else unknown (naming the
``License-File`` entries when there are some).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from packaging.metadata import RawMetadata, parse_email
from packaging.pylock import Package

from wheelport import __version__
from wheelport.errors import ExportError, UsageError
from wheelport.export.requirements import TargetLock, one_lock, target_locks
from wheelport.index.metadata import sdist_members, wheel_metadata_member
from wheelport.manifest import Origin
from wheelport.wheelhouse import Wheelhouse, atomic_write_text

PYPI_SIMPLE = ("https://pypi.org/simple", "https://pypi.python.org/simple")

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

SPEC_VERSIONS = ("1.6", "1.7")


# --------------------------------------------------------------------------- licenses (pure)


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


def license_of(metadata: RawMetadata) -> LicenseAnswer:
    """The license of one distribution's core metadata (see the module docstring for the order)."""
    from cyclonedx.spdx import fixup_id, is_expression

    expr = (metadata.get("license_expression") or "").strip()
    if expr:
        return LicenseAnswer(expr, None, "License-Expression")
    field = (metadata.get("license") or "").strip()
    one_line = field if field and "\n" not in field and len(field) <= 100 else ""
    if one_line:
        spdx = fixup_id(one_line)
        if spdx:
            return LicenseAnswer(spdx, None, "License")
        if " " in one_line and is_expression(one_line):
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


def parse_metadata(data: bytes) -> RawMetadata:
    raw, _unparsed = parse_email(data)
    return raw


# --------------------------------------------------------------------------- reading a wheelhouse


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
        with zipfile.ZipFile(path) as zf:
            member = wheel_metadata_member(zf, path.name)
            meta = zf.read(member) if member else None
            sboms = {
                n: zf.read(n)
                for n in zf.namelist()
                if len(parts := n.split("/")) == 3
                and parts[0].endswith(".dist-info")
                and parts[1] == "sboms"
                and parts[2]
            }
            return meta, sboms
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExportError(f"cannot read wheel {path}: {exc}", hint="run 'wheelport verify'",
                          path=str(path)) from None  # fmt: skip


def _read_sdist(path: Path) -> bytes | None:
    try:
        return sdist_members(path, ("PKG-INFO",)).get("PKG-INFO")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError):
        return None


def package_facts(wheelhouse: Path, tl: TargetLock) -> list[PackageFacts]:
    """Facts of every package of one lock: artifact, hash, license, origin, embedded SBOMs."""
    wh = Wheelhouse(wheelhouse)
    artifacts = wh.load_manifest().artifacts
    out = []
    for pkg in sorted(tl.lock.packages, key=lambda p: str(p.name)):
        art = pkg.wheels[0] if pkg.wheels else pkg.sdist
        if art is None or pkg.version is None:
            continue
        rel = art.path or f"{'wheels' if pkg.wheels else 'sdists'}/{art.name}"
        path = wh.contained(rel, tl.path.name)
        meta: bytes | None = None
        sboms: dict[str, bytes] = {}
        if path.is_file():
            meta, sboms = _read_wheel(path) if pkg.wheels else (_read_sdist(path), {})
        raw = parse_metadata(meta) if meta else RawMetadata()
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
                license=license_of(raw),
                origin=origin,
                sdist=sdist,
                sboms=sboms,
                summary=raw.get("summary"),
            )
        )
    return out


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
    """One row per (package, version) over the locks of ``targets`` (default: every lock)."""
    rows: dict[tuple[str, str], tuple[LicenseAnswer, list[str]]] = {}
    for tl in target_locks(wheelhouse, targets):
        for f in package_facts(wheelhouse, tl):
            _answer, where = rows.setdefault((f.name, f.version), (f.license, []))
            where.append(tl.target)
    return [LicenseRow(n, v, a, tuple(sorted(t))) for (n, v), (a, t) in sorted(rows.items())]


# --------------------------------------------------------------------------- CycloneDX


def _purl(f: PackageFacts, filename: str | None = None) -> Any:
    from packageurl import PackageURL

    qualifiers = {"file_name": filename or f.filename}
    if f.index and f.index.rstrip("/") not in PYPI_SIMPLE:
        qualifiers["repository_url"] = f.index
    return PackageURL(type="pypi", name=f.name, version=f.version, qualifiers=qualifiers)


def _sha256(value: str) -> Any:
    from cyclonedx.model import HashAlgorithm, HashType

    return HashType(alg=HashAlgorithm.SHA_256, content=value)


def _license(answer: LicenseAnswer) -> list[Any]:
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
    from cyclonedx.spdx import is_supported_id

    if answer.expression:
        if is_supported_id(answer.expression):
            return [DisjunctiveLicense(id=answer.expression)]
        return [LicenseExpression(answer.expression)]
    if answer.name:
        return [DisjunctiveLicense(name=answer.name)]
    return []


def _nested(f: PackageFacts) -> tuple[list[Any], list[Any]]:
    """PEP 770 SBOMs of a wheel: (nested components from CycloneDX ones, properties for others)."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom

    components: list[Any] = []
    props: list[Any] = []
    for arcname, data in sorted(f.sboms.items()):
        digest = hashlib.sha256(data).hexdigest()
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("bomFormat") == "CycloneDX":
            try:
                inner = Bom.from_json(doc)  # type: ignore[attr-defined]
            except Exception:  # a malformed embedded SBOM: name it, do not fail the export
                inner = None
            if inner is not None:
                prefix = f"{f.name}@{f.version}/{arcname.rsplit('/', 1)[-1]}#"
                for comp in _walk(inner.components):
                    comp.bom_ref.value = prefix + (comp.bom_ref.value or comp.name)
                components.extend(inner.components)
        props.append(Property(name="wheelport:embedded-sbom", value=f"{arcname} sha256:{digest}"))
    return components, props


def _walk(components: Any) -> list[Any]:
    out = []
    for c in components:
        out.append(c)
        out.extend(_walk(c.components))
    return out


def _component(f: PackageFacts) -> Any:
    from cyclonedx.model import ExternalReference, ExternalReferenceType, Property, XsUri
    from cyclonedx.model.component import Component, ComponentType, Pedigree

    props = [Property(name="wheelport:path", value=f.path)]
    refs = []
    pedigree = None
    kind = f.origin.kind
    props.append(Property(name="wheelport:origin:kind", value=kind))
    if kind == "download" and f.origin.url:
        refs.append(ExternalReference(type=ExternalReferenceType.DISTRIBUTION,
                                      url=XsUri(f.origin.url), hashes=[_sha256(f.sha256)]))  # fmt: skip
    elif kind == "build":
        props.append(Property(name="wheelport:origin:builder", value=str(f.origin.builder)))
        sdist_path = f.origin.sdist or (f.sdist or {}).get("path")
        if sdist_path:
            props.append(Property(name="wheelport:origin:sdist", value=str(sdist_path)))
        sd = dict(f.sdist or {})
        sd_sha = f.origin.sdist_sha256 or sd.get("sha256")
        sd_name = sd.get("filename") or str(sdist_path or "").rsplit("/", 1)[-1] or None
        sd_refs = []
        if sd.get("url"):
            sd_refs.append(
                ExternalReference(
                    type=ExternalReferenceType.DISTRIBUTION, url=XsUri(str(sd["url"]))
                )
            )
        ancestor = Component(
            type=ComponentType.LIBRARY,
            name=f.name,
            version=f.version,
            bom_ref=f"{f.name}@{f.version}#sdist",
            purl=_purl(f, sd_name) if sd_name else None,
            hashes=[_sha256(str(sd_sha))] if sd_sha else None,
            external_references=sd_refs,
            description=f"source distribution built into {f.filename} by {f.origin.builder}",
        )
        pedigree = Pedigree(ancestors=[ancestor])
    nested, sbom_props = _nested(f)
    return Component(
        type=ComponentType.LIBRARY,
        name=f.name,
        version=f.version,
        bom_ref=f"{f.name}@{f.version}",
        description=f.summary or None,
        purl=_purl(f),
        hashes=[_sha256(f.sha256)],
        licenses=_license(f.license),
        external_references=refs,
        properties=[
            *props,
            *sbom_props,
            Property(name="wheelport:license-source", value=f.license.source),
        ],
        pedigree=pedigree,
        components=nested or None,
    )


def sbom_timestamp(tl: TargetLock, environ: Mapping[str, str] | None = None) -> datetime:
    """The SBOM's ``metadata.timestamp``, from its inputs so the same lock gives the same
    document: ``SOURCE_DATE_EPOCH`` when set, else the newest upload time of the lock's files,
    else 1980-01-01 (the zip epoch, as for built wheels)."""
    from wheelport.reproduce import ZIP_EPOCH

    env = os.environ if environ is None else environ
    with contextlib.suppress(ValueError):
        return datetime.fromtimestamp(int(env.get("SOURCE_DATE_EPOCH", "")), tz=timezone.utc)
    times = [w.upload_time for pkg in tl.lock.packages for w in pkg.wheels or []]
    times += [pkg.sdist.upload_time for pkg in tl.lock.packages if pkg.sdist is not None]
    newest = max(
        (t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in times if t is not None),
        default=None,
    )
    return newest or datetime.fromtimestamp(ZIP_EPOCH, tz=timezone.utc)


def build_sbom(wheelhouse: Path, tl: TargetLock, *, spec_version: str = "1.6") -> str:
    """The CycloneDX JSON document of one target's lock (validated against its schema). The
    same lock and wheelhouse give the same bytes: the serial number is derived from the lock,
    the timestamp from :func:`sbom_timestamp`."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6, JsonV1Dot7
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    if spec_version not in SPEC_VERSIONS:
        raise UsageError(f"unsupported CycloneDX spec version {spec_version}",
                         hint=f"choose one of {', '.join(SPEC_VERSIONS)}")  # fmt: skip
    facts = package_facts(wheelhouse, tl)
    components = {f.name: _component(f) for f in facts}
    lock_digest = hashlib.sha256(tl.path.read_bytes()).hexdigest()
    root = Component(
        type=ComponentType.APPLICATION,
        name=f"wheelhouse-{tl.target}",
        version=lock_digest[:12],
        bom_ref=f"wheelhouse:{tl.target}",
        description=f"the packages of {tl.path.name}",
        properties=[
            Property(name="wheelport:target", value=tl.target),
            Property(name="wheelport:lock-sha256", value=lock_digest),
        ],
    )
    tool = Component(type=ComponentType.APPLICATION, name="wheelport", version=__version__)
    meta = BomMetaData(component=root, timestamp=sbom_timestamp(tl))
    meta.tools.components.add(tool)
    bom = Bom(
        components=components.values(),
        metadata=meta,
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"wheelport:{tl.target}:{lock_digest}"),
    )
    depended = {d for f in facts for d in f.dependencies}
    bom.register_dependency(root, [components[f.name] for f in facts if f.name not in depended])
    for f in facts:
        bom.register_dependency(
            components[f.name], [components[d] for d in f.dependencies if d in components]
        )
    outputter = (JsonV1Dot6 if spec_version == "1.6" else JsonV1Dot7)(bom)
    text = outputter.output_as_string(indent=2)
    schema = SchemaVersion.V1_6 if spec_version == "1.6" else SchemaVersion.V1_7
    error = JsonStrictValidator(schema).validate_str(text)
    if error is not None:  # our bug, not the user's: say which rule failed
        raise ExportError(f"the SBOM does not validate against CycloneDX {spec_version}: {error}")
    return text + "\n"


@dataclass(frozen=True)
class SbomExport:
    target: str
    spec_version: str
    components: int
    output: Path | None
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "format": "cyclonedx", "spec_version": self.spec_version,
                "components": self.components, "output": str(self.output) if self.output else None}  # fmt: skip


def export_sbom(
    wheelhouse: Path, target: str | None, output: Path | None = None, *, spec_version: str = "1.6"
) -> SbomExport:
    """Write (``output``) or return the CycloneDX SBOM of one target's lock."""
    tl = one_lock(wheelhouse, target)
    text = build_sbom(wheelhouse, tl, spec_version=spec_version)
    if output is not None:
        atomic_write_text(output, text)
    return SbomExport(tl.target, spec_version, len(tl.lock.packages), output, text)
