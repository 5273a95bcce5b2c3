"""``wheelport export sbom`` and ``wheelport licenses``: what a wheelhouse holds, for auditors.

The SBOM is CycloneDX JSON (spec 1.6 by default), written with ``cyclonedx-python-lib`` from
one target's lock, the manifest and the wheels' own metadata. Per package it carries:

- name, version, ``purl`` (``pkg:pypi/<name>@<version>?file_name=<wheel>``, plus
  ``repository_url`` for an index other than PyPI), the artifact's sha256;
- its license (see :func:`wheelport.inventory.license_of`);
- its origin: a downloaded file gets an ``externalReferences`` entry of type ``distribution``
  (the URL); a built wheel gets ``pedigree.ancestors`` = the sdist it was built from (with the
  sdist's purl, hash and download URL), and both get ``wheelport:origin:*`` properties (kind,
  builder, sdist path);
- the lock's ``dependencies`` as CycloneDX ``dependencies``;
- PEP 770 SBOMs a wheel carries (``*.dist-info/sboms/*.json``): CycloneDX ones are nested as the
  wheel component's ``components`` (what the wheel bundles, e.g. libraries auditwheel grafted
  in: CycloneDX's "included in" relation); other formats (SPDX) are named in a
  ``wheelport:embedded-sbom`` property with their sha256.

The facts are read by :mod:`wheelport.inventory` (so are ``wheelport licenses``' rows).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wheelport import __version__
from wheelport.errors import ExportError, UsageError
from wheelport.inventory import (
    LicenseAnswer,
    PackageFacts,
    TargetLock,
    one_lock,
    package_facts,
)
from wheelport.wheelhouse import atomic_write_text

PYPI_SIMPLE = ("https://pypi.org/simple", "https://pypi.python.org/simple")


SPEC_VERSIONS = ("1.6", "1.7")


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
