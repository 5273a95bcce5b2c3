"""`wheelport sync` end to end against the local index: fetch, hermetic native builds, index,
verify, provision offline, idempotence and crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import can_unshare, run_wheelport
from support.dists import make_sdist, make_wheel
from support.server import IndexServer
from wheelport.lock import read_lock
from wheelport.wheelhouse import sha256_file

HOST_PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def wheelport(
    *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return run_wheelport(*args, env=env, prefix=prefix, timeout=600)


needs_unshare = pytest.mark.skipif(not can_unshare(), reason="unshare -n is not permitted here")


@pytest.fixture
def source_index(dists_dir: Path, tinybackend_wheel: Path, pip_wheel: Path) -> IndexServer:
    """An index where two projects exist only as sdists whose backend is on the index only."""
    srv = IndexServer().start()
    srv.add(tinybackend_wheel)
    srv.add(pip_wheel)
    srv.add(make_wheel(dists_dir, "dep", "1.0"))
    srv.add(make_wheel(dists_dir, "olddep", "1.0"))
    # static PKG-INFO deps (metadata 2.2) and dynamic deps (PEP 517 prepare_metadata needed)
    srv.add(make_sdist(dists_dir, "puresrc", "1.0", deps=["dep"]))
    srv.add(
        make_sdist(
            dists_dir, "dynsrc", "2.0", deps=['olddep; python_version < "3.12"'], dynamic_deps=True
        )
    )
    yield srv
    if srv._httpd is not None:
        srv.stop()


@pytest.mark.slow
def test_sync_builds_sdists_offline_and_provisions_offline(
    source_index: IndexServer, tmp_path: Path
) -> None:
    wh = tmp_path / "wh"
    targets = ["-t", "host", "-t", "cp312-win_amd64"]
    r = wheelport(
        "sync",
        "puresrc",
        "dynsrc",
        "--index-url",
        source_index.url,
        *targets,
        "-o",
        str(wh),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    built = {b["package"]: b for b in result["builds"]}
    assert set(built) == {"puresrc", "dynsrc"}
    # pure-Python: built once, serving both targets (one wheel, both locks point at it)
    assert sorted(built["puresrc"]["targets"]) == sorted(result["targets"])
    win = read_lock(wh / "pylock.cp312-win_amd64.toml")
    host_lock = next(p for p in wh.glob("pylock.cp3*-manylinux*.toml"))
    pkgs = {p.name: p for p in win.packages}
    w = pkgs["puresrc"].wheels[0]
    assert w.name == "puresrc-1.0-py3-none-any.whl" and w.url is None
    assert w.hashes["sha256"] == sha256_file(wh / w.path)
    # dynsrc's dependency came from the backend's metadata and the target's python_version
    assert "olddep" not in pkgs  # cp312: python_version < "3.12" is false
    host_names = {p.name for p in read_lock(host_lock).packages}
    assert ("olddep" in host_names) == (sys.version_info < (3, 12))
    manifest = json.loads((wh / "wheelport.json").read_text())
    origin = manifest["artifacts"]["wheels/puresrc-1.0-py3-none-any.whl"]["origin"]
    assert origin["kind"] == "build" and origin["builder"] == "native"
    assert origin["sdist_sha256"] == sha256_file(wh / "sdists" / "puresrc-1.0.tar.gz")
    assert (wh / "simple" / "puresrc" / "index.html").exists()
    assert (wh / "bootstrap.py").exists()

    # The wheelhouse rebuilds itself with the network off: drop the built wheels, stop the index.
    url = source_index.url
    source_index.stop()
    for p in list((wh / "wheels").glob("puresrc-*")) + list((wh / "wheels").glob("dynsrc-*")):
        p.unlink()
    # with the network off where this machine allows it; the index is stopped either way, so the
    # rebuild can only use what the wheelhouse holds
    offline = ("unshare", "-n") if can_unshare() else ()
    r = wheelport("sync", "puresrc", "dynsrc", "--index-url", url, *targets, "-o", str(wh),
                  "--json", prefix=offline)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rebuilt = {b["package"] for b in json.loads(r.stdout)["builds"] if not b["skipped"]}
    assert rebuilt == {"puresrc", "dynsrc"}
    assert wheelport("verify", str(wh)).returncode == 0

    # Provision with no network at all, with hostile pip settings in the environment.
    venv = tmp_path / "venv"
    env = hostile_env(tmp_path)
    prefix = ("unshare", "-n") if can_unshare() else ()
    r = wheelport("provision", str(venv), "-w", str(wh), env=env, prefix=prefix)
    assert r.returncode == 0, r.stderr
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import puresrc, dynsrc, dep; print(puresrc.__version__, dynsrc.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    assert out.stdout.split() == ["1.0", "2.0"], out.stderr


def hostile_env(tmp_path: Path) -> dict[str, str]:
    """PIP_* settings that would pull a different version from elsewhere if they leaked in."""
    evil = tmp_path / "evil"
    evil.mkdir(exist_ok=True)
    make_wheel(evil, "dep", "9.9")
    conf = tmp_path / "evil-pip.conf"
    conf.write_text(f"[global]\nindex-url = http://127.0.0.1:9/simple\nfind-links = {evil}\n")
    return dict(
        os.environ,
        PIP_INDEX_URL="http://127.0.0.1:9/simple",
        PIP_EXTRA_INDEX_URL="http://127.0.0.1:9/extra",
        PIP_FIND_LINKS=str(evil),
        PIP_CONFIG_FILE=str(conf),
        UV_INDEX_URL="http://127.0.0.1:9/simple",
        UV_FIND_LINKS=str(evil),
    )


def test_rerun_does_nothing(source_index: IndexServer, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    args = (
        "sync",
        "puresrc",
        "dep",
        "--index-url",
        source_index.url,
        "-t",
        "cp310-macosx_11_0_arm64",
        "-o",
        str(wh),
        "--json",
    )
    assert wheelport(*args).returncode == 0
    before = {p.name: p.stat().st_mtime_ns for p in wh.rglob("*") if p.is_file()}
    n_requests = len(source_index.requests)
    r = wheelport(*args)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["relocked"] is False
    assert result["fetch"]["downloaded"] == [] and result["fetch"]["from_cache"] == []
    assert all(b["skipped"] for b in result["builds"])
    after = {p.name: p.stat().st_mtime_ns for p in wh.rglob("*") if p.is_file()}
    changed = {n for n in after if before.get(n) != after[n]} - {"wheelport.json"}
    assert not changed, changed
    assert len(source_index.requests) == n_requests  # not a single request to the index


def test_only_a_sync_with_sdists_to_build_loads_the_build_machinery(
    source_index: IndexServer, tmp_path: Path
) -> None:
    """A sync whose locks name only wheels (a Windows target's) serves every cell without
    importing the build stage, its planner or the container builder; a sync that has an sdist
    to build for macOS arm64 loads them and builds it."""

    def sync_loading(out: Path, *reqs: str, target: str) -> tuple[dict, set[str]]:
        proc = wheelport("sync", *reqs, "--index-url", source_index.url, "-t", target,
                         "-o", str(out), "--tool", "none", "--json",
                         env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        loaded = {
            line.rsplit("|", 1)[1].strip()
            for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line
        }
        return json.loads(proc.stdout), loaded

    machinery = {
        "wheelport.builders.stage",
        "wheelport.builders.planner",
        "wheelport.builders.container",
    }
    result, loaded = sync_loading(tmp_path / "bin", "dep", target="cp312-win_amd64")
    assert result["coverage"]["dep"]["cp312-win_amd64"]["state"] == "downloaded"
    assert result["builds"] == []
    assert (tmp_path / "bin" / "pylock.cp312-win_amd64.toml").is_file()
    assert "wheelport.builders.plan" in loaded
    assert not machinery & loaded

    result, loaded = sync_loading(tmp_path / "src", "puresrc", target="cp310-macosx_11_0_arm64")
    assert result["coverage"]["puresrc"]["cp310-macosx_11_0_arm64"]["state"] == "built"
    assert machinery <= loaded


def test_a_file_read_ahead_that_the_search_leaves_is_never_placed(
    dists_dir: Path, tmp_path: Path
) -> None:
    """Downloads start before the search settles (a requirement's first choice, a pin); a
    file it then leaves (another requirement rules its version out) stays in the cache: the
    wheelhouse holds exactly the files its lock names, and verify agrees."""
    with IndexServer() as srv:
        for tag in ("cp312-cp312-win_amd64", "cp312-cp312-manylinux_2_28_x86_64"):
            srv.add(make_wheel(dists_dir, "app", "1.0", tag=tag))
            srv.add(make_wheel(dists_dir, "app", "2.0", tag=tag))
        srv.add(make_wheel(dists_dir, "keeper", "1.0", deps=["app<2"]))
        wh = tmp_path / "wh"
        env = {**os.environ, "WHEELPORT_CACHE_DIR": str(tmp_path / "cache")}
        r = wheelport("sync", "app", "keeper", "--index-url", srv.url, "-t", "cp312-win_amd64",
                      "-o", str(wh), "--tool", "none", env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr
        fetched = {  # whole files (a Range request reads metadata)
            p.rsplit("/", 1)[-1]
            for m, p, h in srv.requests
            if m == "GET" and p.endswith(".whl") and "range" not in {k.lower() for k in h}
        }
    assert "app-2.0-cp312-cp312-win_amd64.whl" in fetched  # read ahead, then left
    assert "app-2.0-cp312-cp312-manylinux_2_28_x86_64.whl" not in fetched  # not this target's
    lock = read_lock(wh / "pylock.cp312-win_amd64.toml")
    named = {w.name for p in lock.packages for w in p.wheels or ()}
    assert named == {"app-1.0-cp312-cp312-win_amd64.whl", "keeper-1.0-py3-none-any.whl"}
    assert {p.name for p in (wh / "wheels").glob("*.whl")} == named
    assert wheelport("verify", str(wh)).returncode == 0


def test_tampered_wheel_fails_verify_and_provision(
    source_index: IndexServer, tmp_path: Path
) -> None:
    wh = tmp_path / "wh"
    assert wheelport("sync", "dep", "--index-url", source_index.url, "-o", str(wh)).returncode == 0
    target = wh / "wheels" / "dep-1.0-py3-none-any.whl"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    r = wheelport("verify", str(wh))
    assert r.returncode == 1
    assert "dep-1.0-py3-none-any.whl" in r.stderr and "Traceback" not in r.stderr
    venv = tmp_path / "venv"
    r = wheelport("provision", str(venv), "-w", str(wh))
    assert r.returncode == 1
    assert "dep-1.0-py3-none-any.whl" in r.stderr
    assert not venv.exists()


@pytest.mark.slow
def test_kill_during_downloads_leaves_no_partial_file(dists_dir: Path, tmp_path: Path) -> None:
    srv = IndexServer(delay=0.3).start()
    try:
        for i in range(12):
            # big enough that a download takes a moment
            srv.add(
                make_wheel(
                    dists_dir,
                    f"big{i}",
                    "1.0",
                    files={f"big{i}/blob.bin": os.urandom(2_000_000).hex()},
                )
            )
        reqs = [f"big{i}" for i in range(12)]
        wh = tmp_path / "wh"
        args = [
            sys.executable,
            "-m",
            "wheelport",
            "sync",
            *reqs,
            "--index-url",
            srv.url,
            "-o",
            str(wh),
            "--tool",
            "none",
            "-j",
            "2",
        ]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if sum(1 for _m, p, _h in list(srv.requests) if p.endswith(".whl")) >= 3:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wheels = list((wh / "wheels").glob("*")) if (wh / "wheels").exists() else []

        def locked_wheels() -> dict[str, str]:
            lock = read_lock(next(wh.glob("pylock.*.toml")))
            return {w.name: w.hashes["sha256"] for p in lock.packages for w in p.wheels or []}

        # downloads start while the targets still resolve (prefetch into the cache), so the
        # kill may come before the lock is written: then nothing may be in wheels/ yet
        locked = any(wh.glob("pylock.*.toml"))
        expected = locked_wheels() if locked else {}
        for p in wheels:
            assert p.name in expected, f"unexpected file {p.name}"
            assert sha256_file(p) == expected[p.name], f"partial file {p.name}"
        assert len(wheels) < 12  # it really was interrupted
        r = subprocess.run([*args, "--json"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert wheelport("verify", str(wh)).returncode == 0
        if locked:
            assert locked_wheels() == expected
        assert {p.name for p in (wh / "wheels").glob("*.whl")} == set(locked_wheels())
    finally:
        srv.stop()


@pytest.mark.slow
def test_one_wheelhouse_two_interpreters(dists_dir: Path, tmp_path: Path, pip_wheel: Path) -> None:
    py312 = sorted(Path("/root/.pyenv/versions").glob("3.12*/bin/python"))
    if not py312 or sys.version_info[:2] == (3, 12):
        pytest.skip("needs a Python 3.12 beside the host interpreter")
    srv = IndexServer().start()
    try:
        srv.add(pip_wheel)
        srv.add(make_wheel(dists_dir, "app", "1.0", deps=['backport; python_version < "3.12"']))
        srv.add(make_wheel(dists_dir, "backport", "1.0"))
        wh = tmp_path / "wh"
        from wheelport.targets import host_target

        host = host_target()
        other = f"cp312-{host.platform}"
        r = wheelport(
            "sync", "app", "--index-url", srv.url, "-t", "host", "-t", other, "-o", str(wh)
        )
        assert r.returncode == 0, r.stderr
    finally:
        srv.stop()
    for python, has_backport in ((sys.executable, True), (str(py312[-1]), False)):
        venv = tmp_path / f"venv-{has_backport}"
        r = wheelport("provision", str(venv), "-w", str(wh), "--python", python, "--json")
        assert r.returncode == 0, r.stderr
        names = {p["name"] for p in json.loads(r.stdout)["packages"]}
        assert ("backport" in names) == has_backport
        assert "app" in names


def test_compiled_sdist_for_windows_is_a_red_cell(
    dists_dir: Path, tmp_path: Path, tinybackend_wheel: Path
) -> None:
    srv = IndexServer().start()
    try:
        srv.add(tinybackend_wheel)
        srv.add(make_sdist(dists_dir, "cext", "0.1", c_extension=True))
        wh = tmp_path / "wh"
        base = (
            "sync",
            "cext",
            "--index-url",
            srv.url,
            "-t",
            "host",
            "-t",
            "cp312-win_amd64",
            "-o",
            str(wh),
            "--tool",
            "none",
        )
        r = wheelport(*base, "--json")
        assert r.returncode == 1
        assert "needs a native build host for Windows" in r.stderr
        assert "Traceback" not in r.stderr
        r = wheelport(*base, "--allow-missing", "--json")
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        cells = result["coverage"]["cext"]
        host_id = next(t for t in result["targets"] if t != "cp312-win_amd64")
        assert cells[host_id]["state"] == "built"
        assert "manylinux" in cells[host_id]["detail"]  # auditwheel gave it an honest tag
        assert cells["cp312-win_amd64"]["state"] == "missing"
    finally:
        srv.stop()


def test_build_requirement_that_is_only_an_sdist_is_built_first(
    dists_dir: Path, tmp_path: Path, tinybackend_wheel: Path
) -> None:
    """app's build needs `helper`, which exists only as an sdist: helper is built first (from
    the wheelhouse, network off), then app; a rerun builds neither."""
    srv = IndexServer().start()
    try:
        srv.add(tinybackend_wheel)
        srv.add(make_sdist(dists_dir, "helper", "1.0"))
        srv.add(make_sdist(dists_dir, "app", "1.0", backend_requires=["tinybackend", "helper"]))
        wh = tmp_path / "wh"
        args = ("sync", "app", "--index-url", srv.url, "-o", str(wh), "--tool", "none", "--json")
        r = wheelport(*args)
        assert r.returncode == 0, r.stderr
        builds = {b["package"]: b for b in json.loads(r.stdout)["builds"]}
        assert (
            builds["helper"]["targets"] == []
            and builds["helper"]["wheel"] == "wheels/helper-1.0-py3-none-any.whl"
        )
        assert builds["app"]["wheel"] == "wheels/app-1.0-py3-none-any.whl"
        manifest = json.loads((wh / "wheelport.json").read_text())
        assert (
            manifest["artifacts"]["wheels/helper-1.0-py3-none-any.whl"]["origin"]["for"]
            == "build-requirement"
        )
        lock = read_lock(next(wh.glob("pylock.*.toml")))
        assert {p.name for p in lock.packages} == {"app"}  # a build requirement is not installed
        r = wheelport(*args)
        assert r.returncode == 0, r.stderr
        assert all(b["skipped"] for b in json.loads(r.stdout)["builds"])
    finally:
        srv.stop()


def test_unsatisfiable_build_requirement_is_a_red_cell_naming_it(
    dists_dir: Path, tmp_path: Path, tinybackend_wheel: Path
) -> None:
    """A release whose build needs a newer tool than the index has (lxml 6.2.0 and
    ``Cython>=3.3.2`` on 2026-12-04): that sdist's cells name the missing requirement in one
    line, and the other sdist of the same sync is still built, for a target unlike the host."""
    srv = IndexServer().start()
    try:
        srv.add(tinybackend_wheel)
        srv.add(make_wheel(dists_dir, "cython", "3.3.1"))
        srv.add(make_sdist(dists_dir, "fresh", "6.2.0",
                           backend_requires=["tinybackend", "Cython>=3.3.2"]))  # fmt: skip
        srv.add(make_sdist(dists_dir, "older", "1.0"))
        wh = tmp_path / "wh"
        base = ("sync", "fresh", "older", "--index-url", srv.url, "-o", str(wh), "--tool", "none",
                "-t", "cp310-win_amd64", "-t", "host")  # fmt: skip
        r = wheelport(*base)
        assert r.returncode == 1, r.stderr
        lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert lines[0].startswith("error: fresh cannot be served for ")
        assert "build requirement Cython>=3.3.2 cannot be satisfied from the index" in lines[0]
        assert "3.3.1" in lines[0]  # what the index does have
        r = wheelport(*base, "--allow-missing", "--json")
        assert r.returncode == 0, r.stderr
        cells = json.loads(r.stdout)["coverage"]
        for cell in cells["fresh"].values():
            assert cell["state"] == "missing"
            assert cell["detail"].startswith("not built: fresh 6.2.0: its build requirement "
                                             "Cython>=3.3.2 cannot be satisfied")  # fmt: skip
        assert {c["state"] for c in cells["older"].values()} == {"built"}
        assert (wh / "wheels" / "older-1.0-py3-none-any.whl").is_file()
        assert not list((wh / "wheels").glob("fresh-*"))
    finally:
        srv.stop()


def test_verify_catches_a_manifest_that_disagrees_with_the_lock(
    source_index: IndexServer, tmp_path: Path
) -> None:
    wh = tmp_path / "wh"
    assert wheelport("sync", "dep", "--index-url", source_index.url, "-o", str(wh)).returncode == 0
    manifest = json.loads((wh / "wheelport.json").read_text())
    (summary,) = manifest["locks"].values()
    entry = next(p for p in summary["packages"] if p["name"] == "dep")
    entry["sha256"] = "0" * 64  # what bootstrap.py would check no longer matches the lock
    (wh / "wheelport.json").write_text(json.dumps(manifest))
    r = wheelport("verify", str(wh))
    assert r.returncode == 1
    assert "dep-1.0-py3-none-any.whl" in r.stderr and "conflicting records" in r.stderr
