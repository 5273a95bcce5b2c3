"""`wheelport export sbom` (CycloneDX, validated by cyclonedx-python-lib's own strict validator) and
`wheelport licenses`: licenses from metadata, origins from the manifest, PEP 770 SBOMs nested."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from support import run_wheelport
from support.dists import make_sdist, make_wheel
from support.server import IndexServer
from wheelport.inventory import license_of, parse_metadata
from wheelport.wheelhouse import sha256_file

APACHE = "License :: OSI Approved :: Apache Software License"
EMBEDDED = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.6",
    "version": 1,
    "components": [
        {"type": "library", "name": "libfoo", "version": "3.2", "bom-ref": "libfoo",
         "purl": "pkg:generic/libfoo@3.2"},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory, tinybackend_wheel: Path) -> Path:
    root = tmp_path_factory.mktemp("sbom")
    dists = root / "dists"
    with IndexServer() as srv:
        srv.add(tinybackend_wheel)
        srv.add(make_wheel(dists, "mitpkg", "1.0", license_expression="MIT"))
        srv.add(
            make_wheel(
                dists, "apachepkg", "2.0", classifiers=[APACHE, "Programming Language :: Python"]
            )
        )
        srv.add(make_wheel(dists, "bundler", "1.0", files={
            "bundler-1.0.dist-info/sboms/libs.cdx.json": json.dumps(EMBEDDED)}))  # fmt: skip
        srv.add(make_sdist(dists, "puresrc", "1.0", deps=["mitpkg", "apachepkg"]))
        wh = root / "wh"
        r = run_wheelport("sync", "puresrc", "bundler", "--index-url", srv.url, "-t", "host",
                          "--tool", "none", "-o", str(wh), timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stderr
    return wh


def sbom(wh: Path) -> dict:  # type: ignore[type-arg]
    r = run_wheelport("export", "sbom", "-w", str(wh))
    assert r.returncode == 0, r.stderr
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(r.stdout)
    assert error is None, error
    return dict(json.loads(r.stdout))


def test_sbom_validates_and_carries_licenses_hashes_purls(wheelhouse: Path) -> None:
    doc = sbom(wheelhouse)
    assert doc["specVersion"] == "1.6"
    comps = {c["name"]: c for c in doc["components"]}
    assert set(comps) == {"mitpkg", "apachepkg", "bundler", "puresrc"}
    assert comps["mitpkg"]["licenses"] == [{"license": {"id": "MIT"}}]
    assert comps["apachepkg"]["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    mit = comps["mitpkg"]
    wheel = wheelhouse / "wheels" / "mitpkg-1.0-py3-none-any.whl"
    assert mit["hashes"] == [{"alg": "SHA-256", "content": sha256_file(wheel)}]
    assert mit["purl"].startswith("pkg:pypi/mitpkg@1.0?file_name=mitpkg-1.0-py3-none-any.whl")
    ref = mit["externalReferences"][0]
    assert ref["type"] == "distribution" and ref["url"].endswith("/mitpkg-1.0-py3-none-any.whl")
    # the lock's dependencies; the wheelhouse (metadata.component) depends on the top packages
    deps = {d["ref"]: set(d.get("dependsOn", [])) for d in doc["dependencies"]}
    assert deps["puresrc@1.0"] == {"mitpkg@1.0", "apachepkg@2.0"}
    root = doc["metadata"]["component"]["bom-ref"]
    assert deps[root] == {"puresrc@1.0", "bundler@1.0"}


def test_a_built_wheel_names_its_sdist_and_builder(wheelhouse: Path) -> None:
    comp = next(c for c in sbom(wheelhouse)["components"] if c["name"] == "puresrc")
    props = {p["name"]: p["value"] for p in comp["properties"]}
    assert props["wheelport:origin:kind"] == "build"
    assert props["wheelport:origin:builder"] == "native"
    assert props["wheelport:origin:sdist"] == "sdists/puresrc-1.0.tar.gz"
    assert "externalReferences" not in comp  # nothing was downloaded as this wheel
    (ancestor,) = comp["pedigree"]["ancestors"]
    sdist = wheelhouse / "sdists" / "puresrc-1.0.tar.gz"
    assert ancestor["hashes"] == [{"alg": "SHA-256", "content": sha256_file(sdist)}]
    assert "file_name=puresrc-1.0.tar.gz" in ancestor["purl"]
    assert ancestor["externalReferences"][0]["url"].endswith("/puresrc-1.0.tar.gz")


def test_pep770_sbom_in_a_wheel_is_nested(wheelhouse: Path) -> None:
    comp = next(c for c in sbom(wheelhouse)["components"] if c["name"] == "bundler")
    (inner,) = comp["components"]
    assert inner["name"] == "libfoo" and inner["version"] == "3.2"
    assert inner["bom-ref"].startswith("bundler@1.0/")
    props = [p["value"] for p in comp["properties"] if p["name"] == "wheelport:embedded-sbom"]
    assert props and props[0].startswith("bundler-1.0.dist-info/sboms/libs.cdx.json sha256:")


def test_licenses_table_and_json(wheelhouse: Path, tmp_path: Path) -> None:
    r = run_wheelport("licenses", "-w", str(wheelhouse), "--json")
    assert r.returncode == 0, r.stderr
    rows = {p["name"]: p for p in json.loads(r.stdout)["packages"]}
    assert (rows["mitpkg"]["license"], rows["mitpkg"]["source"]) == ("MIT", "License-Expression")
    assert (rows["apachepkg"]["license"], rows["apachepkg"]["source"]) == (
        "Apache-2.0",
        "classifier",
    )
    assert rows["puresrc"]["license"] is None and rows["puresrc"]["source"] == "none"
    r = run_wheelport("licenses", "-w", str(wheelhouse))
    assert r.returncode == 0 and "Apache-2.0" in r.stdout and "License-Expression" in r.stdout
    # -o writes the file; 1.7 validates too
    out = tmp_path / "bom.json"
    r = run_wheelport(
        "export", "sbom", "-w", str(wheelhouse), "-o", str(out), "--spec-version", "1.7"
    )
    assert r.returncode == 0, r.stderr
    assert JsonStrictValidator(SchemaVersion.V1_7).validate_str(out.read_text()) is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["License-Expression: MIT OR Apache-2.0", "License: BSD"], ("MIT OR Apache-2.0", None, "License-Expression")),
        (["License: mit"], ("MIT", None, "License")),
        (["License: BSD", "Classifier: License :: OSI Approved :: BSD License"], (None, "BSD", "License")),
        (["License: Apache 2.0", f"Classifier: {APACHE}"], ("Apache-2.0", None, "classifier")),
        (["Classifier: License :: OSI Approved :: MIT License", f"Classifier: {APACHE}"], (None, None, "none")),
        (["License-File: LICENSE.txt"], (None, None, "License-File")),
        (["License: Line one\n        of a long license text"], (None, None, "none")),
        (["License: MIT OR Apache-2.0"], ("MIT OR Apache-2.0", None, "License")),
        (["License: (MIT OR Apache-2.0) AND GPL-2.0+"], ("(MIT OR Apache-2.0) AND GPL-2.0+", None, "License")),
        (["License: Apache-2.0 WITH LLVM-exception"], ("Apache-2.0 WITH LLVM-exception", None, "License")),
        (["License: MIT OR Nonsense-1.0"], (None, "MIT OR Nonsense-1.0", "License")),
        (["License: BSD-3-Clause OR GPL"], (None, "BSD-3-Clause OR GPL", "License")),  # GPL: no SPDX id
        (["License: MIT AND"], (None, "MIT AND", "License")),
    ],
)  # fmt: skip
def test_license_order(fields: list[str], expected: tuple[str | None, str | None, str]) -> None:
    text = "Metadata-Version: 2.4\nName: x\nVersion: 1\n" + "\n".join(fields) + "\n\n"
    answer = license_of(parse_metadata(text.encode()))
    assert (answer.expression, answer.name, answer.source) == expected


def test_license_answers_do_not_load_cyclonedx_expression_parser() -> None:
    """Ids, names ("BSD License") and expressions are answered without ``cyclonedx.spdx``
    (its expression parser takes 40-100 ms to load, on every sync that writes the wheelhouse
    page): ids from the SPDX id list, expressions by packaging's PEP 639 reader, which is
    loaded only for a text whose every word could be part of an expression."""
    code = (
        "import sys\n"
        "from wheelport.inventory import license_of, parse_metadata\n"
        "def answer(field):\n"
        "    return license_of(parse_metadata(f'Name: x\\nLicense: {field}\\n\\n'.encode()))\n"
        "print([answer(f).expression for f in ('mit', 'BSD License', 'Apache 2.0')])\n"
        "print('packaging.licenses' in sys.modules)\n"
        "print([answer(f).expression for f in ('MIT OR Apache-2.0', 'MIT OR GPL')])\n"
        "print('packaging.licenses' in sys.modules, 'cyclonedx.spdx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "['MIT', None, None]",
        "False",
        "['MIT OR Apache-2.0', None]",
        "True False",
    ]


@pytest.mark.parametrize(
    "text",
    [
        b"Name: x\nLicense: MIT\nLicense: BSD\n\nLicense: body",  # given twice: left out
        b"Name: x\r\nSummary:   hi  \r\nClassifier: A\r\nclassifier: B\r\n\r\nLicense: no",
        b"Name: x\nLicense: line one\n         \n         line three\n         \nSummary: s\n",
        b"Name: x\r\nLicense: a\r\n  b\r\n\tc\r\nLicense-Expression: MIT\r\n",
        b"Name: x\nLICENSE-FILE: LICENSE\nLicense-File: NOTICE\nsummary:\n\nbody: 1",
        b"Name: x\nNo colon here\nLicense:MIT\n",
        b"Name: x\nSummary: caf\xe9\nLicense: MIT\nClassifier: A\nClassifier: B\xff\n\n",
    ],
)
def test_metadata_fields_are_read_as_the_email_parser_reads_them(text: bytes) -> None:
    """The header reader behind the licence answer gives exactly what packaging's parser gives
    for the fields it reads (folded values, CRLF, repeated and multi-use fields, case)."""
    from packaging.metadata import parse_email

    fields = ("license_expression", "license", "classifiers", "license_files", "summary")
    expected, _ = parse_email(text)
    got = parse_metadata(text)
    assert {k: got.get(k) for k in fields} == {k: expected.get(k) for k in fields}


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        (b"Name: x\nLicense: MIT\n\nLicense: body\n", b"Name: x\nLicense: MIT\n"),
        (b"Name: x\r\nSummary: s\r\n\r\nbody\r\n", b"Name: x\r\nSummary: s\r\n"),
        (b"Name: x\nSummary: s\n\r\nbody", b"Name: x\nSummary: s\n"),
        (b"Name: x\nSummary: s\n", b"Name: x\nSummary: s\n"),  # no body
        (b"\nName: x\n\nbody", b"\nName: x\n"),  # an empty first line: no fields at all
        (b"", b""),
    ],
)
def test_only_the_header_block_of_metadata_is_read(data: bytes, headers: bytes) -> None:
    """The readers of METADATA fields (licence and summary, Requires-Python, the email parser's
    headers) are handed the header block alone: the long description is never decoded. What
    they answer is the same with a body of megabytes that looks like fields."""
    from wheelport.index.metadata import header_block, parse_headers
    from wheelport.site.writer import parse_requires_python

    assert header_block(data) == headers
    fields = (b"Name: big\nLicense-Expression: MIT\nClassifier: A\nRequires-Python: >=3.9\n"
              b"Summary: s\n")  # fmt: skip
    body = b"\n" + b"License: GPL\nRequires-Python: <3\nSummary: \xff body\n" * 50_000
    assert len(fields + body) > 2_000_000
    assert header_block(fields + body) == fields
    assert parse_metadata(fields + body) == parse_metadata(fields)
    assert parse_metadata(fields + body)["license_expression"] == "MIT"
    assert parse_requires_python(fields + body) == ">=3.9"
    assert parse_headers(fields + body).get_all("Summary") == ["s"]


def test_the_licence_report_reads_each_version_once_and_still_checks_every_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version's wheels for two platforms carry one METADATA: the report reads it once, not
    the manifest at all, lists both targets — and still refuses a lock whose path escapes."""
    import wheelport.inventory as inventory
    from wheelport.errors import WheelportError
    from wheelport.manifest import Manifest

    dists = tmp_path / "dists"
    with IndexServer() as srv:
        for tag in ("cp312-cp312-win_amd64", "cp312-cp312-macosx_11_0_arm64"):
            srv.add(make_wheel(dists, "native", "1.0", tag=tag, license_expression="MIT"))
        wh = tmp_path / "wh"
        r = run_wheelport("sync", "native", "--index-url", srv.url, "-t", "cp312-win_amd64",
                          "-t", "cp312-macosx_11_0_arm64", "--tool", "none", "-o", str(wh),
                          timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr
    parsed: list[bytes] = []
    monkeypatch.setattr(inventory, "parse_metadata",
                        lambda data: parsed.append(data) or parse_metadata(data))  # fmt: skip

    def no_manifest(self: object) -> Manifest:
        raise AssertionError("the licence report read the manifest")

    monkeypatch.setattr(inventory.Wheelhouse, "load_manifest", no_manifest)
    (row,) = inventory.license_report(wh)
    assert (row.name, row.version, row.license.expression) == ("native", "1.0", "MIT")
    assert row.targets == ("cp312-macosx_11_0_arm64", "cp312-win_amd64")
    assert len(parsed) == 1
    mac = wh / "pylock.cp312-macosx_11_0_arm64.toml"
    text = mac.read_text(encoding="utf-8")
    assert "wheels/native-1.0-cp312-cp312-macosx_11_0_arm64.whl" in text
    mac.write_text(text.replace("wheels/native-1.0-cp312", "../../native-1.0-cp312"))
    with pytest.raises(WheelportError, match="escapes the wheelhouse"):
        inventory.license_report(wh)
