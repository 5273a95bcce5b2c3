"""`wheelport export requirements` and plain installers reading the wheelhouse: real pip (from a
hash-pinned requirements.txt and straight from pylock.<target>.toml) and uv, with the network off."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
import tomllib

from support import can_unshare, run_wheelport, scrubbed_env
from support.dists import make_wheel
from support.server import IndexServer
from wheelport.errors import ExportError
from wheelport.export.requirements import build_requirements
from wheelport.wheelhouse import sha256_file

needs_unshare = pytest.mark.skipif(not can_unshare(), reason="unshare -n is not permitted here")
OFF = ("unshare", "-n")
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synced wheelhouse for the host and cp312-win_amd64: app → dep, and a Windows-only dep."""
    root = tmp_path_factory.mktemp("req")
    dists = root / "dists"
    with IndexServer() as srv:
        srv.add(make_wheel(dists, "dep", "1.0"))
        srv.add(make_wheel(dists, "winonly", "1.0"))
        srv.add(make_wheel(dists, "app", "2.0", deps=["dep", 'winonly; sys_platform == "win32"']))
        wh = root / "wh"
        r = run_wheelport("sync", "app", "--index-url", srv.url, "-t", "host", "-t",
                          "cp312-win_amd64", "--tool", "none", "-o", str(wh), timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stderr
    return wh


def host_target(wh: Path) -> str:
    return next(p.name[7:-5] for p in wh.glob("pylock.*.toml") if "win" not in p.name)


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This interpreter's real pip, installing into ``python``'s venv, network off."""
    cmd = [
        *OFF,
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--isolated",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=scrubbed_env(), timeout=300)


def installed(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m, json; print(json.dumps("
                          "{d.metadata['Name']: d.version for d in m.distributions()}))"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return dict(json.loads(out))


def test_requirements_lines_hashes_and_markers(wheelhouse: Path, tmp_path: Path) -> None:
    win = build_requirements(wheelhouse, "cp312-win_amd64")
    lines = {r.name: r for r in win.lines}
    assert set(lines) == {"app", "dep", "winonly"}
    assert lines["winonly"].marker == 'sys_platform == "win32"' and lines["app"].marker is None
    assert lines["dep"].hashes == (sha256_file(wheelhouse / "wheels" / "dep-1.0-py3-none-any.whl"),)
    text = win.text()
    assert 'winonly==1.0 ; sys_platform == "win32" \\\n    --hash=sha256:' in text
    # written with -o; the JSON result names the file
    out = tmp_path / "req.txt"
    r = run_wheelport("export", "requirements", "-w", str(wheelhouse), "-t", "cp312-win_amd64",
                      "-o", str(out), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert out.read_text() == text and json.loads(r.stdout)["output"] == str(out)
    # several locks and no -t: a usage error naming the targets
    r = run_wheelport("export", "requirements", "-w", str(wheelhouse))
    assert r.returncode == 2 and "cp312-win_amd64" in r.stderr


def test_every_wheel_that_serves_the_target_is_listed(wheelhouse: Path, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    shutil.copytree(wheelhouse, wh)
    # a second build of dep 1.0 that Windows accepts, recorded in the manifest; and one it does not
    extra = make_wheel(tmp_path / "x", "dep", "1.0", tag="cp312-cp312-win_amd64")
    other = make_wheel(tmp_path / "x", "dep", "1.0", tag="cp312-cp312-macosx_11_0_arm64")
    manifest = json.loads((wh / "wheelport.json").read_text())
    for w in (extra, other):
        shutil.copy(w, wh / "wheels" / w.name)
        manifest["artifacts"][f"wheels/{w.name}"] = {"sha256": sha256_file(w), "size": 1,
                                                     "origin": {"kind": "download", "url": "x"}}  # fmt: skip
    (wh / "wheelport.json").write_text(json.dumps(manifest))
    dep = next(r for r in build_requirements(wh, "cp312-win_amd64").lines if r.name == "dep")
    assert dep.hashes == (
        sha256_file(wh / "wheels" / "dep-1.0-py3-none-any.whl"),  # the lock's own first
        sha256_file(extra),
    )
    host = next(r for r in build_requirements(wh, host_target(wh)).lines if r.name == "dep")
    assert len(host.hashes) == 1


def test_a_package_without_a_wheel_is_refused(wheelhouse: Path, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    shutil.copytree(wheelhouse, wh)
    lock = wh / "pylock.cp312-win_amd64.toml"
    data = tomllib.loads(lock.read_text())
    pkg = next(p for p in data["packages"] if p["name"] == "winonly")
    wheel = pkg.pop("wheels")[0]
    pkg["sdist"] = {**wheel, "name": "winonly-1.0.tar.gz", "path": "sdists/winonly-1.0.tar.gz"}
    lock.write_text(tomli_w.dumps(data))
    with pytest.raises(ExportError, match="winonly has no wheel"):
        build_requirements(wh, "cp312-win_amd64")


@needs_unshare
def test_plain_pip_installs_the_requirements_offline_and_refuses_a_tampered_wheel(
    wheelhouse: Path, tmp_path: Path
) -> None:
    wh = tmp_path / "wh"
    shutil.copytree(wheelhouse, wh)
    req = tmp_path / "requirements.txt"
    r = run_wheelport(
        "export", "requirements", "-w", str(wh), "-t", host_target(wh), "-o", str(req)
    )
    assert r.returncode == 0, r.stderr
    python = fresh_venv(tmp_path / "v")
    r = pip(
        python, "--no-index", "--find-links", str(wh / "wheels"), "--require-hashes", "-r", str(req)
    )
    assert r.returncode == 0, r.stderr
    got = installed(python)
    assert got.get("app") == "2.0" and got.get("dep") == "1.0" and "winonly" not in got

    # one changed byte in a wheel: pip refuses it
    wheel = wh / "wheels" / "dep-1.0-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    python = fresh_venv(tmp_path / "v2")
    r = pip(
        python, "--no-index", "--find-links", str(wh / "wheels"), "--require-hashes", "-r", str(req)
    )
    assert r.returncode != 0
    assert "DO NOT MATCH THE HASHES" in r.stderr and "dep" in r.stderr
    assert "dep" not in installed(python)


def _pip_reads_pylock() -> bool:
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--help"], capture_output=True, text=True
    )
    return "pylock.toml" in r.stdout


@needs_unshare
@pytest.mark.skipif(
    not _pip_reads_pylock(), reason="this pip cannot install from pylock.toml (pip >= 25.1 needed)"
)
def test_pip_installs_straight_from_the_lock_offline(wheelhouse: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "v")
    lock = wheelhouse / f"pylock.{host_target(wheelhouse)}.toml"
    r = pip(python, "--no-index", "-r", str(lock))
    assert r.returncode == 0, r.stderr
    assert {"app": "2.0", "dep": "1.0"}.items() <= installed(python).items()


@needs_unshare
@pytest.mark.skipif(UV is None, reason="uv is not installed")
def test_uv_installs_straight_from_the_lock_offline(wheelhouse: Path, tmp_path: Path) -> None:
    assert UV is not None
    python = fresh_venv(tmp_path / "v")
    lock = wheelhouse / f"pylock.{host_target(wheelhouse)}.toml"
    cmd = [
        *OFF,
        UV,
        "pip",
        "install",
        "--no-config",
        "--offline",
        "--python",
        str(python),
        "-r",
        str(lock),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=scrubbed_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert {"app": "2.0", "dep": "1.0"}.items() <= installed(python).items()
