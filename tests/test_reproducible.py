"""Reproducible wheelhouses (issue 18): the same inputs give the same bytes, and
``verify --rebuild`` checks it offline.

Two syncs of the same inputs into two wheelhouses, each with its own cache, must give
byte-identical trees — every file a bundle carries, i.e. all but ``logs/`` and the hidden
machine-local state (the lock file, stat stamps, the index's stat cache) — for a pure sdist,
a native C sdist (and an abi3 one) and, with podman, a container C sdist (and an abi3 one).
Where they differ, the failure shows ``diffoscope``'s report. ``verify --rebuild`` says
"reproduced" for every built wheel, and "differs", naming the member, for a wheel altered
after the build even when every recorded hash was altered with it.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from support import run_wheelport
from support.dists import make_sdist, make_wheel
from support.server import IndexServer
from wheelport.builders import images
from wheelport.builders.container import cibw_env
from wheelport.builders.images import LocalImage
from wheelport.builders.native import build_native
from wheelport.builders.stage import Builders, default_builders
from wheelport.cache import Cache
from wheelport.config import Config, SourcedRequirement
from wheelport.errors import BuildError
from wheelport.export.bundle import bundle_members, create_bundle
from wheelport.export.sbom import export_sbom
from wheelport.reproduce import (
    ZIP_EPOCH,
    build_directory,
    first_difference,
    normalize_wheel,
    source_date_epoch,
)
from wheelport.sync import SyncResult, sync
from wheelport.targets import parse_target
from wheelport.wheelhouse import sha256_file

LOCAL_TARGET = "cp311-manylinux_2_36_x86_64"


# ---------------------------------------------------------------- helpers


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _zip(path: Path, members: Sequence[tuple[str, bytes, tuple[int, ...], int]]) -> Path:
    """A wheel-shaped zip: (name, data, date_time, mode) in the given order, with a RECORD."""
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    for name, data, _, _ in members:
        writer.writerow([name, _record_hash(data), len(data)])
    writer.writerow(["demo-1.0.dist-info/RECORD", "", ""])
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, when, mode in members:
            info = zipfile.ZipInfo(name, date_time=when)  # type: ignore[arg-type]
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_STORED if mode & 0o100 else zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        zf.writestr("demo-1.0.dist-info/RECORD", rows.getvalue())
    return path


DEMO = [
    ("demo/__init__.py", b"x = 1\n"),
    ("demo/_ext.so", b"\x7fELF not really"),
    ("demo-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n"),
    ("demo-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"),
]


def _record_rows(wheel: Path) -> list[list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read("demo-1.0.dist-info/RECORD").decode()
        for name, digest, size in (row for row in csv.reader(io.StringIO(text)) if row[1]):
            data = zf.read(name)
            assert digest == _record_hash(data) and int(size) == len(data), name
        return list(csv.reader(io.StringIO(text)))


def _config(wh: Path, index: str, names: Sequence[str], targets: Sequence[str]) -> Config:
    return Config(
        requirements=tuple(SourcedRequirement(Requirement(n), "test") for n in names),
        targets=tuple(targets),
        index_urls=(index,),
        output=wh,
        tools=(),
    )


def _sync_twice(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    index: str,
    names: Sequence[str],
    targets: Sequence[str],
    builders: Builders,
) -> tuple[Path, Path, SyncResult]:
    """The same inputs synced into ``a/wh`` and ``b/wh``, each with its own cold cache."""
    results = []
    for side in ("a", "b"):
        cache = tmp_path / side / "cache"
        monkeypatch.setenv("WHEELPORT_CACHE_DIR", str(cache))
        result = sync(_config(tmp_path / side / "wh", index, names, targets), builders=builders)
        assert result.ok, result.coverage.red()
        sdist = next(iter(sorted((tmp_path / side / "wh" / "sdists").iterdir())))
        own, sha = Cache.default(), sha256_file(sdist)
        assert own.root == cache  # each side its own cold cache: it holds the sdist or notes it
        assert own.artifact_path(sha).is_file() or own.placed_note(sha) == sdist
        results.append(result)
    return tmp_path / "a" / "wh", tmp_path / "b" / "wh", results[0]


def _diffoscope(a: Path, b: Path) -> str:
    exe = shutil.which("diffoscope")
    if exe is None:
        return "(diffoscope is not installed here: apt-get install diffoscope)"
    proc = subprocess.run(
        [exe, "--text", "-", "--no-progress", "--exclude-directory-metadata", "recursive",
         "--exclude", "logs", "--exclude", ".wheelport*", str(a), str(b)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    return text if len(text) < 30000 else text[:30000] + "\n… (cut)"


def assert_same_wheelhouse(a: Path, b: Path) -> None:
    """Every file a bundle carries (all but ``logs/`` and hidden files) is byte-identical;
    else the failure shows which files and diffoscope's report."""
    ta = {rel: (a / rel).read_bytes() for rel in bundle_members(a)}
    tb = {rel: (b / rel).read_bytes() for rel in bundle_members(b)}
    if ta == tb:
        return
    differing = sorted(rel for rel in ta.keys() | tb.keys() if ta.get(rel) != tb.get(rel))
    pytest.fail(
        f"the two wheelhouses differ in {differing}\n\ndiffoscope {a} {b}:\n{_diffoscope(a, b)}",
        pytrace=False,
    )


def _wheelport_json(*args: str) -> tuple[int, dict[str, Any], str]:
    """(exit code, the result document, stderr); a failure prints its error document after
    the result on stdout."""
    proc = run_wheelport(*args, "--json", timeout=1800)
    result, _ = json.JSONDecoder().raw_decode(proc.stdout)
    return proc.returncode, result, proc.stderr


def _alter_with_its_records(wh: Path, rel: str, member: str, data: bytes) -> None:
    """What an intruder who knows wheelport would do: replace one member of a built wheel
    (its RECORD row too, so pip takes it) and every sha256 and size the wheelhouse records
    for the wheel (manifest, its locks section, the pylock files)."""
    path = wh / rel
    old_sha, old_size = sha256_file(path), path.stat().st_size
    src = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            content = src.read(info)
            if info.filename == member:
                content = data
            elif info.filename.endswith(".dist-info/RECORD"):
                rows = [r for r in csv.reader(io.StringIO(content.decode())) if r]
                rows = [[member, _record_hash(data), str(len(data))] if r[0] == member else r
                        for r in rows]  # fmt: skip
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(rows)
                content = buf.getvalue().encode()
            out.writestr(info, content)
    new_sha, new_size = sha256_file(path), path.stat().st_size
    manifest = json.loads((wh / "wheelport.json").read_text())
    manifest["artifacts"][rel].update(sha256=new_sha, size=new_size)
    for summary in manifest.get("locks", {}).values():
        for entry in summary["packages"]:
            if entry["path"] == rel:
                entry.update(sha256=new_sha, size=new_size)
    (wh / "wheelport.json").write_text(json.dumps(manifest, indent=2))
    for lock in wh.glob("pylock.*.toml"):
        text = lock.read_text()
        text = text.replace(
            f'path = "{rel}"\nsize = {old_size}\n', f'path = "{rel}"\nsize = {new_size}\n'
        )
        lock.write_text(text.replace(old_sha, new_sha))


# ---------------------------------------------------------------- normalisation, pure


def test_normalised_wheels_depend_only_on_their_members(tmp_path: Path) -> None:
    """Same members, other times, modes and order: byte-identical once normalised; RECORD
    lists every member with its hash, in archive order, and comes last; idempotent."""
    one = _zip(tmp_path / "one" / "demo-1.0-cp311-cp311-linux_x86_64.whl",
               [(n, d, (2024, 5, 6, 7, 8, 10), 0o775 if "ext" in n else 0o664)
                for n, d in DEMO])  # fmt: skip
    two = _zip(tmp_path / "two" / one.name,
               [(n, d, (2031, 1, 2, 3, 4, 6), 0o700 if "ext" in n else 0o600)
                for n, d in reversed(DEMO)])  # fmt: skip
    assert one.read_bytes() != two.read_bytes()
    epoch = 1700000000  # 2023-11-14T22:13:20Z
    for wheel in (one, two):
        normalize_wheel(wheel, epoch)
    assert one.read_bytes() == two.read_bytes()
    with zipfile.ZipFile(one) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == [
        "demo/__init__.py", "demo/_ext.so", "demo-1.0.dist-info/METADATA",
        "demo-1.0.dist-info/WHEEL", "demo-1.0.dist-info/RECORD",
    ]  # fmt: skip
    assert {i.date_time for i in infos} == {(2023, 11, 14, 22, 13, 20)}
    modes = {i.filename: i.external_attr >> 16 for i in infos}
    assert modes["demo/__init__.py"] == 0o100644
    assert modes["demo/_ext.so"] == 0o100755
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}
    rows = _record_rows(one)
    assert [r[0] for r in rows] == [i.filename for i in infos]
    before = one.read_bytes()
    normalize_wheel(one, epoch)
    assert one.read_bytes() == before


def test_no_execute_bit_is_added_and_the_epoch_is_clamped(tmp_path: Path) -> None:
    wheel = _zip(tmp_path / "demo-1.0-py3-none-any.whl",
                 [(n, d, (2024, 1, 1, 0, 0, 0), 0o666) for n, d in DEMO])  # fmt: skip
    normalize_wheel(wheel, 0)  # before 1980: a zip cannot say so
    with zipfile.ZipFile(wheel) as zf:
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert set(modes.values()) == {0o100644}


def test_a_member_its_record_does_not_vouch_for_is_refused(tmp_path: Path) -> None:
    wheel = _zip(tmp_path / "demo-1.0-py3-none-any.whl",
                 [(n, d, (2024, 1, 1, 0, 0, 0), 0o644) for n, d in DEMO])  # fmt: skip
    with zipfile.ZipFile(wheel, "a") as zf:
        zf.writestr("demo/extra.py", b"print('not in RECORD')\n")
    before = wheel.read_bytes()
    with pytest.raises(BuildError, match=r"RECORD does not list demo/extra\.py"):
        normalize_wheel(wheel, ZIP_EPOCH)
    assert wheel.read_bytes() == before  # nothing rewritten


def test_source_date_epoch_is_the_newest_member_of_the_sdist(tmp_path: Path) -> None:
    sdist = tmp_path / "demo-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        for name, mtime in (("demo-1.0/a.py", 1600000000), ("demo-1.0/PKG-INFO", 1700000000)):
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            tf.addfile(info, io.BytesIO(b""))
    assert source_date_epoch(sdist) == 1700000000
    generated = make_sdist(tmp_path / "gen", "demo", "1.0")  # members at 1980-01-01
    assert source_date_epoch(generated) == ZIP_EPOCH
    broken = tmp_path / "broken-1.0.tar.gz"
    broken.write_bytes(b"not an archive")
    with pytest.raises(BuildError, match=r"broken-1\.0\.tar\.gz"):
        source_date_epoch(broken)


def test_first_difference_names_the_member(tmp_path: Path) -> None:
    base = [(n, d, (2024, 1, 1, 0, 0, 0), 0o644) for n, d in DEMO]
    a = _zip(tmp_path / "a" / "demo-1.0-py3-none-any.whl", base)
    changed = [(n, b"x = 2\n" if n.endswith("__init__.py") else d, t, m) for n, d, t, m in base]
    b = _zip(tmp_path / "b" / a.name, changed)
    assert first_difference(a, b) == "demo/__init__.py: content"
    later = _zip(tmp_path / "c" / a.name, [(n, d, (2025, 1, 1, 0, 0, 0), m) for n, d, _, m in base])
    assert first_difference(a, later).startswith("demo/__init__.py: timestamp (2024-01-01")
    assert first_difference(a, _zip(tmp_path / "d" / a.name, base)) == ""


def test_the_build_directory_is_fixed_private_and_removed(tmp_path: Path) -> None:
    key = f"test-{os.getpid()}"
    with build_directory(key) as first:
        (first / "leftover").write_text("x")
        assert oct(first.stat().st_mode & 0o777) == "0o700"
    assert not first.exists()
    with build_directory(key) as second:
        assert second == first and not any(second.iterdir())
    # taken by something this user does not own alone: another (random) directory is used
    first.mkdir(mode=0o777)
    first.chmod(0o777)
    try:
        with build_directory(key) as elsewhere:
            assert elsewhere != first and elsewhere.is_dir()
    finally:
        first.rmdir()


def test_container_builds_get_the_sdist_epoch(tmp_path: Path) -> None:
    env = cibw_env(parse_target(LOCAL_TARGET), image="img", engine="podman", deps_dir=tmp_path,
                   base_env={"SOURCE_DATE_EPOCH": "1"}, source_date_epoch=1700000000)  # fmt: skip
    assert "SOURCE_DATE_EPOCH=1700000000" in env["CIBW_ENVIRONMENT"].split()
    assert "PYTHONHASHSEED=0" in env["CIBW_ENVIRONMENT"].split()
    assert "SOURCE_DATE_EPOCH" not in env or env["SOURCE_DATE_EPOCH"] == "1"  # the host's, unused


# ---------------------------------------------------------------- native builds


def test_native_build_path_does_not_reach_the_wheel(
    tmp_path: Path, tinybackend_wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With debug info the compiler writes the directory it ran in into the extension: the
    build directory is named by the sdist, so two builds still give the same bytes."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("CC", "cc -g")
    sdist = make_sdist(tmp_path / "src", "dbgext", "1.0", c_extension=True)
    deps = tmp_path / "deps"
    deps.mkdir()
    shutil.copy(tinybackend_wheel, deps)
    one = build_native(sdist, wheels_dir=deps, out_dir=tmp_path / "one", log_dir=tmp_path / "logs")
    two = build_native(sdist, wheels_dir=deps, out_dir=tmp_path / "two", log_dir=tmp_path / "logs")
    assert one.name == two.name and one.name.startswith("dbgext-1.0-cp3")
    assert one.read_bytes() == two.read_bytes(), first_difference(one, two)
    with zipfile.ZipFile(one) as zf:
        so = next(zf.read(n) for n in zf.namelist() if n.endswith(".so"))
    assert f"wheelport-build-{sha256_file(sdist)[:16]}".encode() in so  # the path is in there


@pytest.fixture
def native_index(
    index_server: IndexServer, dists_dir: Path, tinybackend_wheel: Path
) -> IndexServer:
    index_server.add(tinybackend_wheel)
    index_server.add(make_wheel(dists_dir, "dep", "1.0"))
    index_server.add(make_sdist(dists_dir, "puresrc", "1.0", deps=["dep"]))
    index_server.add(make_sdist(dists_dir, "cext", "1.0", c_extension=True))
    index_server.add(make_sdist(dists_dir, "cabi", "1.0", c_extension=True, py_limited_api="cp38"))
    return index_server


@pytest.mark.slow
def test_native_syncs_are_byte_identical_and_rebuild(
    native_index: IndexServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, result = _sync_twice(tmp_path, monkeypatch, native_index.url,
                               ["puresrc", "cext", "cabi"], ["host"], Builders())  # fmt: skip
    wheels = {o.package: str(o.wheel) for o in result.builds}
    assert set(wheels) == {"puresrc", "cext", "cabi"}
    assert wheels["puresrc"].endswith("-py3-none-any.whl")
    assert "-cp38-abi3-manylinux" in wheels["cabi"]  # repaired by auditwheel
    assert "-cp3" in wheels["cext"] and "manylinux" in wheels["cext"]
    assert_same_wheelhouse(a, b)
    # what wheelport writes from them: bundles and the SBOM too
    for compression in ("gzip", "zstd"):
        one = create_bundle(a, tmp_path / f"a.{compression}", compression=compression)
        two = create_bundle(b, tmp_path / f"b.{compression}", compression=compression)
        assert one.sha256 == two.sha256, compression
    assert export_sbom(a, None).text == export_sbom(b, None).text
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert json.loads(export_sbom(a, None).text)["metadata"]["timestamp"].startswith(
        "2023-11-14T22:13:20"
    )
    monkeypatch.delenv("SOURCE_DATE_EPOCH")

    start = time.monotonic()
    code, out, err = _wheelport_json("verify", "--rebuild", str(a))
    took = time.monotonic() - start
    assert code == 0, err
    rows = {r["wheel"]: r for r in out["rebuild"]["results"]}
    assert set(rows) == set(wheels.values())
    assert {r["status"] for r in rows.values()} == {"reproduced"}, rows
    assert {r["builder"] for r in rows.values()} == {"native"}
    print(f"verify --rebuild of 3 native wheels: {took:.1f}s")

    # altered after the build, with every recorded hash altered too: plain verify passes…
    _alter_with_its_records(a, wheels["puresrc"], "puresrc/__init__.py", b"import os\n")
    assert run_wheelport("verify", str(a)).returncode == 0
    # …the rebuild does not; only the named package is rebuilt
    code, out, err = _wheelport_json("verify", str(a), "--rebuild", "puresrc")
    assert code == 1
    (row,) = out["rebuild"]["results"]
    assert row["wheel"] == wheels["puresrc"] and row["status"] == "differs"
    assert row["detail"] == "puresrc/__init__.py: content"
    assert f"{wheels['puresrc']} does not rebuild to the same bytes" in err
    assert "Traceback" not in err


def test_rebuild_of_an_unknown_package_is_a_usage_error(
    native_index: IndexServer, tmp_path: Path
) -> None:
    wh = tmp_path / "wh"
    sync(_config(wh, native_index.url, ["puresrc"], ["host"]), builders=Builders())
    proc = run_wheelport("verify", "--rebuild", str(wh), "nosuchpkg")
    assert proc.returncode == 2
    assert "no wheel of nosuchpkg was built in this wheelhouse" in proc.stderr
    proc = run_wheelport("verify", str(wh), "puresrc")  # packages only with --rebuild
    assert proc.returncode == 2 and "--rebuild" in proc.stderr


# ---------------------------------------------------------------- container builds


@pytest.fixture(scope="session")
def local_base_image() -> str:
    """The local manylinux_2_36 base image (shared with test_container_build: the same tag,
    built only when missing)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (run .ci/setup-containers.sh)")
    return images.ensure_local_base_image("podman")


@pytest.mark.container
@pytest.mark.slow
def test_container_syncs_are_byte_identical_and_rebuild(
    tmp_path: Path,
    dists_dir: Path,
    tinybackend_wheel: Path,
    local_base_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with IndexServer() as srv:
        srv.add(tinybackend_wheel)
        srv.add(make_sdist(dists_dir, "fastadd", "1.0", c_extension=True))
        srv.add(make_sdist(dists_dir, "gamma", "1.0", c_extension=True, py_limited_api="cp38"))
        names, targets = ["fastadd", "gamma"], [LOCAL_TARGET]
        local = [LocalImage(local_base_image, "manylinux_2_36", "x86_64", ("cp311",))]
        cfg = _config(tmp_path / "a" / "wh", srv.url, names, targets)
        builders = default_builders(cfg, engine="podman", local=local)
        a, b, result = _sync_twice(tmp_path, monkeypatch, srv.url, names, targets, builders)
    wheels = {o.package: o for o in result.builds}
    assert {o.builder for o in wheels.values()} == {f"container:{local_base_image}"}
    assert "-cp38-abi3-manylinux" in str(wheels["gamma"].wheel)
    assert_same_wheelhouse(a, b)

    start = time.monotonic()
    code, out, err = _wheelport_json("verify", "--rebuild", str(b))  # the index is gone
    took = time.monotonic() - start
    assert code == 0, err
    rows = out["rebuild"]["results"]
    assert sorted(r["wheel"] for r in rows) == sorted(str(o.wheel) for o in wheels.values())
    assert {r["status"] for r in rows} == {"reproduced"}, rows
    print(f"verify --rebuild of 2 container wheels: {took:.1f}s")
