"""Where a candidate's dependencies come from: metadata without building.

Order (issue 8): PEP 658 of any wheel of the version → the wheel's METADATA by HTTP range
requests → static sdist PKG-INFO (PEP 643) → static ``[project]`` table (PEP 621) → PEP 517.
Each rule is checked with targets unlike the host, against a real index on 127.0.0.1; sdists
whose backend cannot run prove that no build was attempted.
"""

from __future__ import annotations

import random
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import pytest

from support import run_wheelport
from support.dists import make_sdist, make_wheel
from support.server import Fault, IndexServer
from wheelport import api
from wheelport.config import build_config
from wheelport.errors import WheelportError
from wheelport.index.client import IndexClient
from wheelport.resolve import NullReporter
from wheelport.targets import Target

LINUX = "cp312-manylinux_2_28_x86_64"
WIN = "cp312-win_amd64"
MAC = "cp313-macosx_11_0_arm64"
MUSL_ARM = "cp311-musllinux_1_2_aarch64"

#: an sdist whose metadata cannot be built: its backend is on no index
BROKEN = {"dynamic_deps": True, "metadata_version": "2.1", "backend": "nobackend",
          "backend_requires": ["nobackend"]}  # fmt: skip


class Recorder(NullReporter):
    def __init__(self) -> None:
        self.builds: list[tuple[str, str]] = []
        self.failed: list[tuple[str, WheelportError]] = []

    def metadata_build(self, target: Target, filename: str) -> None:
        self.builds.append((target.identifier, filename))

    def target_failed(self, target: Target, error: WheelportError) -> None:
        self.failed.append((target.identifier, error))


def lock(
    tmp_path: Path, srv: IndexServer, requirements: Sequence[str], targets: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], IndexClient, Recorder]:
    """Lock with a client and reporter the test can inspect; {target: {name: lock entry}}."""
    config = build_config(
        directory=tmp_path,
        requirements=list(requirements),
        index_urls=[srv.url],
        targets=list(targets),
        output=tmp_path / "wh",
        tools=["none"],
    )
    reporter = Recorder()
    with api.make_client(config) as client:
        result = api.lock(config, client=client, reporter=reporter)
    locks = {}
    for path in result.paths:
        data = tomllib.loads(path.read_text())
        locks[data["tool"]["wheelport"]["target"]] = {p["name"]: p for p in data["packages"]}
    return locks, client, reporter


def dist_info_last(wheel: Path) -> None:
    """Rewrite ``wheel`` with its ``.dist-info`` members at the end of the archive."""
    with zipfile.ZipFile(wheel) as zf:
        members = [(i, zf.read(i)) for i in zf.infolist()]
    members.sort(key=lambda m: ".dist-info/" in m[0].filename)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in members:
            zf.writestr(info, data)


def file_requests(srv: IndexServer, filename: str) -> list[dict[str, str]]:
    """Headers of every GET of one file."""
    return [h for m, p, h in srv.requests if m == "GET" and p == f"/files/{filename}"]


def test_sdist_target_takes_pep658_metadata_of_another_targets_wheel(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """Only win_amd64 has a wheel of pkg 2.0: the Linux target installs from the sdist, but its
    dependencies come from the wheel's PEP 658 file — no sdist download, no build."""
    index_server.add(
        make_wheel(dists_dir, "pkg", "2.0", deps=["dep>=1"], tag="cp312-cp312-win_amd64")
    )
    index_server.add(make_sdist(dists_dir, "pkg", "2.0", **BROKEN))  # type: ignore[arg-type]
    index_server.add(make_wheel(dists_dir, "dep", "1.5"))
    locks, client, reporter = lock(tmp_path, index_server, ["pkg"], [LINUX, WIN])
    assert locks[LINUX]["pkg"]["sdist"]["name"] == "pkg-2.0.tar.gz"
    assert locks[LINUX]["dep"]["version"] == "1.5"
    assert locks[WIN]["pkg"]["wheels"][0]["name"] == "pkg-2.0-cp312-cp312-win_amd64.whl"
    assert client.stats.get("metadata_builds", 0) == 0
    assert reporter.builds == []
    assert file_requests(index_server, "pkg-2.0-cp312-cp312-win_amd64.whl.metadata")
    assert file_requests(index_server, "pkg-2.0.tar.gz") == []


def test_without_pep658_a_wheel_is_read_by_range_requests_not_downloaded(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """The index serves no metadata files (as this machine's registry): METADATA comes out of the
    wheel's central directory and one member, by ranges. The wheel is large, so reading it whole
    would show up in the bytes served."""
    blob = random.Random(3).randbytes(600_000).hex()  # ~1.2 MB, incompressible-ish hex
    wheel = make_wheel(dists_dir, "big", "1.0", deps=["dep"], tag="cp311-cp311-musllinux_1_2_aarch64",
                       files={"big/blob.txt": blob})  # fmt: skip
    index_server.add(wheel, metadata=False)
    index_server.add(make_sdist(dists_dir, "big", "1.0", **BROKEN), metadata=False)  # type: ignore[arg-type]
    index_server.add(make_wheel(dists_dir, "dep", "1.0"), metadata=False)
    locks, client, _ = lock(tmp_path, index_server, ["big"], [MUSL_ARM, MAC])
    assert locks[MUSL_ARM]["big"]["wheels"][0]["name"] == wheel.name
    assert locks[MAC]["big"]["sdist"]["name"] == "big-1.0.tar.gz"
    assert set(locks[MAC]) == {"big", "dep"}
    gets = file_requests(index_server, wheel.name)
    assert gets, "the wheel was never asked for"
    assert all("Range" in h for h in gets), "a GET without Range downloads the whole wheel"
    assert len(gets) <= 3  # the tail (central directory), then the METADATA member
    assert client.stats.get("metadata_builds", 0) == 0
    assert file_requests(index_server, "big-1.0.tar.gz") == []


def test_a_big_wheel_is_read_by_one_range_request(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """A wheel of thousands of members (numpy's kind) has a central directory larger than 64 KiB
    and its METADATA just before it: the first request asks for enough of its end (a part of
    the listed size) that no second round trip is needed."""
    rng = random.Random(5)  # 2,000 members of ~4 KiB compressed: a wheel of ~9 MB
    files = {f"many/m{i:04d}.txt": rng.randbytes(4096).hex() for i in range(2000)}
    wheel = make_wheel(dists_dir, "many", "1.0", deps=["dep"], tag="cp311-cp311-win_amd64",
                       files=files)  # fmt: skip
    dist_info_last(wheel)  # as bdist_wheel writes it
    index_server.add(wheel, metadata=False)
    index_server.add(make_wheel(dists_dir, "dep", "1.0"), metadata=False)
    locks, client, _ = lock(tmp_path, index_server, ["many"], ["cp311-win_amd64"])
    assert set(locks["cp311-win_amd64"]) == {"many", "dep"}
    gets = file_requests(index_server, wheel.name)
    assert len(gets) == 1 and gets[0]["Range"].startswith("bytes=-")
    assert int(gets[0]["Range"][len("bytes=-") :]) > 64 * 1024  # more than the small default
    assert client.stats.get("range_requests") == 2  # this wheel and dep's


def test_a_range_answered_with_more_than_asked_is_not_read_on(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """A hostile server answers the tail request with the whole (big) file: the answer is
    refused by its Content-Range before the body is read, and the metadata comes from the
    next source (here the whole wheel, the last resort before a build)."""
    blob = random.Random(4).randbytes(400_000).hex()
    wheel = make_wheel(dists_dir, "big", "1.0", deps=["dep"], tag="cp313-cp313-macosx_11_0_arm64",
                       files={"big/blob.txt": blob})  # fmt: skip
    index_server.add(wheel, metadata=False)
    index_server.add(make_wheel(dists_dir, "dep", "1.0"), metadata=False)
    index_server.inject(Fault(f"/files/{wheel.name}", kind="overlong", ranged=True, count=None))
    locks, client, _ = lock(tmp_path, index_server, ["big"], [MAC])
    assert set(locks[MAC]) == {"big", "dep"}
    ranged = [h for h in file_requests(index_server, wheel.name) if "Range" in h]
    assert len(ranged) == 1  # refused at once: no second range request
    assert client.stats.get("range_requests", 0) == 1  # only dep's counted


def test_server_without_ranges_falls_back_to_the_sdist_before_building(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """Static PKG-INFO (PEP 643, Metadata-Version 2.2) answers when ranges cannot: still no build."""
    index_server.add(make_sdist(dists_dir, "stat", "1.0", deps=["dep; sys_platform == 'win32'"],
                                backend="nobackend", backend_requires=["nobackend"]))  # fmt: skip
    index_server.add(make_wheel(dists_dir, "dep", "1.0"))
    locks, client, reporter = lock(tmp_path, index_server, ["stat"], [WIN, LINUX])
    assert set(locks[WIN]) == {"stat", "dep"}
    assert set(locks[LINUX]) == {"stat"}
    assert client.stats.get("metadata_builds", 0) == 0 and reporter.builds == []


def test_static_project_table_gives_dependencies_and_extras(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """PKG-INFO 2.1 says nothing reliable; pyproject's [project] lists dependencies and
    optional-dependencies (not dynamic): they are used, markers per target, no build."""
    project = {
        "name": "proj",
        "version": "1.0",
        "dependencies": ["dep>=1"],
        "optional-dependencies": {"fast": ["speed; sys_platform == 'win32'", "always"]},
    }
    index_server.add(make_sdist(dists_dir, "proj", "1.0", project=project, **BROKEN))  # type: ignore[arg-type]
    for name in ("dep", "speed", "always"):
        index_server.add(make_wheel(dists_dir, name, "1.0"))
    locks, client, reporter = lock(tmp_path, index_server, ["proj[fast]"], [WIN, MAC])
    assert set(locks[WIN]) == {"proj", "dep", "speed", "always"}
    assert set(locks[MAC]) == {"proj", "dep", "always"}
    assert client.stats.get("metadata_builds", 0) == 0 and reporter.builds == []


def test_dynamic_project_table_is_built_once_for_all_targets_and_cached(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, tinybackend_wheel: Path
) -> None:
    """``dynamic = ["dependencies"]``: PEP 517 is the only way. Two targets need the sdist; the
    build runs once, is reported, and a later lock (new client, same cache) builds nothing."""
    index_server.add(tinybackend_wheel)
    project = {"name": "dyn", "version": "1.0", "dynamic": ["dependencies"]}
    index_server.add(make_sdist(dists_dir, "dyn", "1.0", deps=["dep"], dynamic_deps=True,
                                metadata_version="2.1", project=project))  # fmt: skip
    index_server.add(make_wheel(dists_dir, "dep", "1.0"))
    locks, client, reporter = lock(tmp_path, index_server, ["dyn"], [WIN, MAC])
    assert set(locks[WIN]) == set(locks[MAC]) == {"dyn", "dep"}
    assert client.stats["metadata_builds"] == 1
    assert len(reporter.builds) == 1 and reporter.builds[0][1] == "dyn-1.0.tar.gz"
    (tmp_path / "wh" / f"pylock.{WIN}.toml").unlink()
    _, client2, reporter2 = lock(tmp_path, index_server, ["dyn"], [WIN, MAC])
    assert client2.stats.get("metadata_builds", 0) == 0 and reporter2.builds == []


def test_no_metadata_build_for_any_version_with_a_wheel(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """Many versions and targets, every version with one wheel for one platform only: five
    targets resolve with zero metadata builds (every sdist's backend is broken)."""
    tags = ["cp312-cp312-win_amd64", "cp313-cp313-macosx_11_0_arm64", "py3-none-any"]
    for i, version in enumerate(["1.0", "1.1", "2.0"]):
        index_server.add(
            make_wheel(dists_dir, "multi", version, deps=[f"leaf=={version}"], tag=tags[i])
        )
        index_server.add(make_sdist(dists_dir, "multi", version, **BROKEN))  # type: ignore[arg-type]
        index_server.add(make_wheel(dists_dir, "leaf", version))
    targets = [LINUX, WIN, MAC, MUSL_ARM, "cp310-manylinux_2_17_aarch64"]
    locks, client, reporter = lock(tmp_path, index_server, ["multi<2", "leaf"], targets)
    for t in targets:
        assert locks[t]["multi"]["version"] == "1.1"
        assert locks[t]["leaf"]["version"] == "1.1"
    assert client.stats.get("metadata_builds", 0) == 0 and reporter.builds == []


def _failing_backend(dists_dir: Path) -> Path:
    """A real PEP 517 backend whose get_requires_for_build_wheel hook raises."""
    source = (
        "def get_requires_for_build_wheel(config_settings=None):\n"
        "    raise RuntimeError('boom: no compiler for this sdist')\n"
        "def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):\n"
        "    raise RuntimeError('unreachable')\n"
        "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
        "    raise RuntimeError('unreachable')\n"
    )
    return make_wheel(dists_dir, "failbackend", "1.0", files={"failbackend/__init__.py": source})


def _serve_app_needing_native_on_linux(index_server: IndexServer, dists_dir: Path) -> None:
    """``app`` needs ``native`` on Linux only; ``native`` is an sdist with dynamic metadata whose
    backend's get_requires_for_build_wheel hook raises."""
    index_server.add(_failing_backend(dists_dir))
    index_server.add(make_wheel(dists_dir, "app", "1.0", deps=["native; sys_platform == 'linux'"]))
    index_server.add(make_sdist(dists_dir, "native", "1.0", dynamic_deps=True, metadata_version="2.1",
                                backend="failbackend", backend_requires=["failbackend"]))  # fmt: skip


def test_one_targets_failure_is_that_targets(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, clean_env: dict[str, str]
) -> None:
    """Only the Linux target needs ``native`` (sdist only, dynamic, its backend's hook fails).
    Without --allow-missing: exit 1, one line naming the target, the package, the hook and the
    log, and no lock at all. With it: the Windows lock is written, Linux is reported."""
    _serve_app_needing_native_on_linux(index_server, dists_dir)
    out = tmp_path / "wh"
    args = ["lock", "app", "--index-url", index_server.url, "-o", str(out), "--tool", "none",
            "-t", LINUX, "-t", WIN]  # fmt: skip
    proc = run_wheelport(*args, env=clean_env, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = lines[0]
    assert LINUX in line and "native-1.0.tar.gz" in line
    assert "get_requires_for_build_wheel" in line and "failbackend" in line
    log_path = Path(line.split("(log: ", 1)[1].split(")", 1)[0])
    assert log_path.is_file() and "boom: no compiler" in log_path.read_text()
    assert not list(out.glob("pylock.*.toml"))

    proc = run_wheelport(*args, "--allow-missing", "--json", env=clean_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / f"pylock.{WIN}.toml").is_file()
    assert not (out / f"pylock.{LINUX}.toml").exists()
    import json

    data = json.loads(proc.stdout)
    assert set(data["failed"]) == {LINUX}
    assert data["failed"][LINUX]["target"] == LINUX
    assert "native" in data["failed"][LINUX]["message"]


@pytest.mark.slow
def test_sync_allow_missing_syncs_the_other_targets(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, clean_env: dict[str, str]
) -> None:
    """sync --allow-missing: the failing target is a red cell with the reason, the other target's
    wheels are fetched and indexed, and verify passes. Without the flag: exit 1 naming both."""
    _serve_app_needing_native_on_linux(index_server, dists_dir)
    out = tmp_path / "wh"
    args = ["sync", "app", "--index-url", index_server.url, "-o", str(out), "--tool", "none",
            "-t", LINUX, "-t", WIN]  # fmt: skip
    proc = run_wheelport(*args, env=clean_env, cwd=tmp_path)
    assert proc.returncode == 1
    assert LINUX in proc.stderr and "native" in proc.stderr
    assert not (out / "wheels").exists()
    proc = run_wheelport(*args, "--allow-missing", "--json", env=clean_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import json

    data = json.loads(proc.stdout)
    missing = {(m["package"], m["target"]) for m in data["missing"]}
    assert missing == {("native", LINUX)}
    assert (out / "wheels" / "app-1.0-py3-none-any.whl").is_file()
    assert (out / "simple" / "app" / "index.html").is_file()
    verify = run_wheelport("verify", str(out), env=clean_env)
    assert verify.returncode == 0, verify.stderr


def test_a_versions_metadata_is_looked_for_on_disk_once_not_once_per_target(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each target reads its own wheel of pkg 1.0 (12 wheels: four serve the four targets);
    every wheel of a version gives the same metadata. Looking for kept metadata tries each
    wheel's cache entry — once per version for the whole run, not once per target — and an
    entry kept by one target's read is found by the others from memory. A second run (a new
    client, the same cache) finds it on disk: no range request, no PEP 658 file."""
    from wheelport.index import sources

    tags = [
        "cp312-cp312-manylinux_2_28_x86_64", "cp312-cp312-win_amd64",
        "cp313-cp313-macosx_11_0_arm64", "cp311-cp311-musllinux_1_2_aarch64",
        *(f"cp3{m}-cp3{m}-win32" for m in range(4, 12)),
    ]  # fmt: skip
    for tag in tags:
        index_server.add(make_wheel(dists_dir, "pkg", "1.0", deps=["dep>=1"], tag=tag))
    index_server.add(make_wheel(dists_dir, "dep", "1.0"))
    looked: list[str | None] = []
    real = sources.cached_metadata

    def counted(cache: Any, sha256: str | None) -> bytes | None:
        looked.append(sha256)
        return real(cache, sha256)

    monkeypatch.setattr(sources, "cached_metadata", counted)
    targets = [LINUX, WIN, MAC, MUSL_ARM]
    locks, client, _ = lock(tmp_path, index_server, ["pkg"], targets)
    assert all(locks[t]["dep"]["version"] == "1.0" for t in targets)
    assert client.stats.get("metadata_cache", 0) == 0  # a cold cache: read from the index once
    # one look at each of the 12 entries (4 targets would make 48), and dep's one
    assert len(looked) <= len(tags) + 1
    assert len(set(looked)) == len(looked)

    def metadata_reads(requests: Sequence[tuple[str, str, dict[str, str]]]) -> int:
        return sum(
            p.endswith(".metadata") or any(k.lower() == "range" for k in h) for _, p, h in requests
        )

    assert metadata_reads(index_server.requests) >= 2  # pkg's and dep's, read from the index
    looked.clear()
    before = len(index_server.requests)
    locks, client, _ = lock(tmp_path / "again", index_server, ["pkg"], targets)
    assert all(locks[t]["pkg"]["version"] == "1.0" for t in targets)
    assert client.stats.get("metadata_cache", 0) >= len(targets)
    assert metadata_reads(index_server.requests[before:]) == 0
    assert len(looked) <= len(tags) + 1 + len(targets)
