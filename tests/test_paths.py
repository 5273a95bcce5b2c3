"""Contained paths: a path read from a lock, the manifest, a bundle or a merge input never leaves
its root — ``verify`` fails naming it, ``provision`` and ``bootstrap.py`` refuse it and create no
venv, ``unbundle`` and ``merge`` refuse it."""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from packaging.pylock import Pylock

from support import bundled_pip_wheel, run_wheelport
from support.dists import make_wheel
from wheelport import bootstrap
from wheelport.errors import ExportError, ProvisionError, VerifyError
from wheelport.export.bundle import create_bundle, unbundle
from wheelport.export.merge import merge
from wheelport.fetch import recheck
from wheelport.provision import provision
from wheelport.verify import verify
from wheelport.wheelhouse import Wheelhouse, contained, sha256_file

PYENV = os.environ.get("PYENV_ROOT", "/root/.pyenv")
TARGET = "cp312-win_amd64"  # never this host: every decision is the lock's, not the machine's
WINDOWS = {"sys_platform": "win32", "platform_machine": "AMD64", "libc": None, "policy": None}


def _entry(path: str, wheel: Path) -> dict[str, Any]:
    name, version = wheel.name.split("-")[:2]
    return {"name": name, "version": version, "path": path, "sha256": sha256_file(wheel),
            "size": wheel.stat().st_size}  # fmt: skip


def make_wheelhouse(tmp_path: Path, evil_path: str | None) -> tuple[Path, Path]:
    """A wheelhouse whose win_amd64 lock names a good wheel and (when ``evil_path``) a wheel at
    ``evil_path``; the evil wheel exists outside the wheelhouse with the right sha256, so only
    containment can stop it. Returns (wheelhouse, the outside wheel)."""
    wh = tmp_path / "wh"
    wheels = wh / "wheels"
    wheels.mkdir(parents=True)
    pip_src = bundled_pip_wheel()
    if pip_src is None:
        pytest.skip("no bundled pip wheel")
    pip = Path(shutil.copy2(pip_src, wheels))
    good = make_wheel(wheels, "good", "1.0", tag="cp312-cp312-win_amd64")
    outside = tmp_path / "outside"
    evil = make_wheel(outside, "evil", "1.0")
    entries = [_entry(f"wheels/{good.name}", good)]
    if evil_path is not None:
        entries.append(_entry(evil_path, evil))
    pip_entry = {k: v for k, v in _entry(f"wheels/{pip.name}", pip).items() if k != "size"}
    packages = [
        {"name": e["name"], "version": e["version"],
         "wheels": [{"name": Path(e["path"]).name, "path": e["path"], "size": e["size"],
                     "hashes": {"sha256": e["sha256"]}}]}
        for e in entries
    ]  # fmt: skip
    data = {
        "lock-version": "1.0",
        "created-by": "wheelport",
        "environments": ['sys_platform == "win32" and platform_machine == "AMD64"'],
        "requires-python": "==3.12.*",
        "packages": packages,
        "tool": {"wheelport": {"target": TARGET, "tools": [pip_entry]}},
    }
    lock = Pylock.from_dict(data)
    (wh / f"pylock.{TARGET}.toml").write_text(tomli_w.dumps(lock.to_dict()), encoding="utf-8")
    summary = {"file": f"pylock.{TARGET}.toml", "python_version": "3.12", **WINDOWS,
               "tags": ["cp312-cp312-win_amd64", "py3-none-any"],
               "packages": [{k: v for k, v in e.items() if k != "size"} for e in entries],
               "tools": [pip_entry]}  # fmt: skip
    artifacts = {
        e["path"]: {"sha256": e["sha256"], "size": e["size"], "origin": {"kind": "download",
                    "url": f"https://example.invalid/{Path(e['path']).name}"}}
        for e in [*entries, _entry(f"wheels/{pip.name}", pip)]
        if e["path"].startswith("wheels/") and ".." not in e["path"]
    }  # fmt: skip
    manifest = {"version": 1, "inputs_digest": None, "targets": [TARGET],
                "artifacts": artifacts, "locks": {TARGET: summary}}  # fmt: skip
    (wh / "wheelport.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    shutil.copy2(bootstrap.__file__, wh / "bootstrap.py")
    return wh, evil


def _symlinked(tmp_path: Path) -> tuple[Path, str]:
    wh, evil = make_wheelhouse(tmp_path, "wheels/evil-1.0-py3-none-any.whl")
    os.symlink(evil, wh / "wheels" / "evil-1.0-py3-none-any.whl")
    return wh, "wheels/evil-1.0-py3-none-any.whl"


def escaping(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A wheelhouse whose lock names a path escaping it; returns (wheelhouse, that path)."""
    if kind == "dotdot":
        wh, _ = make_wheelhouse(tmp_path, "../outside/evil-1.0-py3-none-any.whl")
        return wh, "../outside/evil-1.0-py3-none-any.whl"
    if kind == "absolute":
        path = str(tmp_path / "outside" / "evil-1.0-py3-none-any.whl")
        wh, _ = make_wheelhouse(tmp_path, path)
        return wh, path
    return _symlinked(tmp_path)


KINDS = ["dotdot", "absolute", "symlink"]


def test_contained_helper(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "wheels").mkdir(parents=True)
    assert contained(root, "wheels/a.whl", "x") == root / "wheels/a.whl"
    os.symlink(tmp_path, root / "wheels" / "out")
    for rel, why in [
        ("../a.whl", "'..'"),
        ("wheels/../../a.whl", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/x.whl", "absolute"),
        ("wheels/out/a.whl", "symlink"),
        ("", "not a relative"),
    ]:
        with pytest.raises(VerifyError) as err:
            contained(root, rel, "pylock.x.toml")
        assert why in str(err.value) and "pylock.x.toml" in str(err.value), rel
        assert err.value.return_code == 1


@pytest.mark.parametrize("kind", KINDS)
def test_verify_fails_naming_the_escaping_path(tmp_path: Path, kind: str) -> None:
    wh, rel = escaping(tmp_path, kind)
    report = verify(wh)
    assert not report.ok
    assert set(report.unsafe) == {rel}  # named by the lock and the manifest's locks section
    lines = [t for t in report.tampered if t.startswith(rel)]
    assert all("escapes the wheelhouse" in line for line in lines)
    assert any(f"pylock.{TARGET}.toml" in line for line in lines)
    assert any(f"wheelport.json locks[{TARGET}]" in line for line in lines)
    proc = run_wheelport("verify", str(wh), timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert rel in proc.stderr and "escapes the wheelhouse" in proc.stderr
    # the same wheelhouse without the escaping entry verifies: the check is about that path
    clean, _ = make_wheelhouse(tmp_path / "clean", None)
    assert verify(clean).ok


@pytest.mark.parametrize("kind", KINDS)
def test_provision_refuses_and_creates_no_venv(tmp_path: Path, kind: str) -> None:
    wh, rel = escaping(tmp_path, kind)
    venv = tmp_path / "venv"
    with pytest.raises(ProvisionError) as err:
        provision(venv, wheelhouse=wh, target=TARGET)
    assert rel in str(err.value) and f"pylock.{TARGET}.toml" in str(err.value)
    assert "\n" not in str(err.value)
    assert not venv.exists()
    proc = run_wheelport("provision", str(venv), "-w", str(wh), "-t", TARGET, timeout=120)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and rel in errors[0], proc.stderr
    assert not venv.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_bootstrap_refuses_on_the_oldest_python(tmp_path: Path, kind: str) -> None:
    found = sorted(glob.glob(f"{PYENV}/versions/3.8.*/bin/python"))
    if not found:
        pytest.skip("no Python 3.8 under pyenv")
    wh, rel = escaping(tmp_path, kind)
    venv = tmp_path / "v38"
    proc = subprocess.run(
        [found[-1], str(wh / "bootstrap.py"), str(venv), "--target", TARGET],
        capture_output=True, text=True, check=False, env=bootstrap.scrubbed_env(),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert rel in lines[0] and f"locks[{TARGET}]" in lines[0] and "escapes" in lines[0]
    assert not venv.exists()


def test_sync_recheck_refuses_an_escaping_lock(tmp_path: Path) -> None:
    wh, rel = escaping(tmp_path, "dotdot")
    with pytest.raises(VerifyError) as err:
        recheck(Wheelhouse(wh))
    assert rel in str(err.value) and f"locks[{TARGET}]" in str(err.value)


def test_unbundle_refuses_a_wheelhouse_with_an_escaping_lock(tmp_path: Path) -> None:
    wh, rel = escaping(tmp_path, "dotdot")
    bundle = tmp_path / "wh.tar.gz"
    create_bundle(wh, bundle, compression="gzip")
    with pytest.raises(ExportError) as err:
        unbundle(bundle, tmp_path / "out")
    assert rel in str(err.value)
    assert not (tmp_path / "out").exists()


def _tar_bundle(path: Path, members: dict[str, bytes], listed: dict[str, bytes]) -> None:
    files = {
        n: {"sha256": __import__("hashlib").sha256(d).hexdigest(), "size": len(d)}
        for n, d in listed.items()
    }
    head = json.dumps({"format": "wheelport-bundle", "version": 1, "files": files}).encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [("BUNDLE-MANIFEST.json", head), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt", "wheels/../../evil.txt"])
def test_unbundle_refuses_escaping_members(tmp_path: Path, name: str) -> None:
    bundle = tmp_path / "b.tar.gz"
    # listed in the manifest: refused when the manifest is read
    _tar_bundle(bundle, {name: b"x"}, {name: b"x"})
    with pytest.raises(ExportError) as err:
        unbundle(bundle, tmp_path / "out")
    assert name in str(err.value) and "unsafe" in str(err.value)
    # not listed: refused as a member
    _tar_bundle(bundle, {name: b"x"}, {})
    with pytest.raises(ExportError) as err:
        unbundle(bundle, tmp_path / "out")
    assert name in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_merge_refuses_an_escaping_input(tmp_path: Path) -> None:
    wh, rel = escaping(tmp_path, "symlink")
    with pytest.raises(VerifyError) as err:
        merge([wh], tmp_path / "merged")
    assert rel in str(err.value) and str(wh) in str(err.value)
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_an_escaping_manifest_key(tmp_path: Path) -> None:
    wh, _ = make_wheelhouse(tmp_path, None)
    manifest = json.loads((wh / "wheelport.json").read_text())
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    manifest["artifacts"]["../secret.txt"] = {"sha256": sha256_file(outside), "size": 6}
    (wh / "wheelport.json").write_text(json.dumps(manifest))
    with pytest.raises(VerifyError) as err:
        merge([wh], tmp_path / "merged")
    assert "../secret.txt" in str(err.value) and "wheelport.json" in str(err.value)
    assert not (tmp_path / "merged").exists()
    assert "../secret.txt" in verify(wh).unsafe


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("symlink and flock semantics are tested on Linux")


def test_a_file_index_page_linking_out_of_its_tree_is_refused(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """A static (file://) index whose page links ``../../../outside/…`` — a wheel with the right
    sha256, outside the index's tree — is refused in one line naming the page; nothing written."""
    outside = make_wheel(tmp_path / "outside", "evil", "1.0")
    page = tmp_path / "idx" / "simple" / "evil" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text(
        f'<a href="../../../outside/{outside.name}#sha256={sha256_file(outside)}">'
        f"{outside.name}</a>\n"
    )
    out = tmp_path / "wh"
    proc = run_wheelport("lock", "evil", "--index-url", (tmp_path / "idx" / "simple").as_uri(),
                         "-o", str(out), "--tool", "none", "-t", TARGET, env=clean_env)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "leaves the index's tree" in lines[0] and str(page) in lines[0]
    assert not out.exists()


def test_serve_never_follows_a_symlink_out_of_the_wheelhouse(tmp_path: Path) -> None:
    """``serve`` answers 404 for a symlink in wheels/ that points outside the wheelhouse, and
    still serves the wheelhouse's own files."""
    import threading
    import urllib.error
    import urllib.request

    from wheelport.serve import make_server

    wh = tmp_path / "wh"
    (wh / "wheels").mkdir(parents=True)
    (wh / "simple").mkdir()
    (wh / "simple" / "index.html").write_text("<html></html>\n")
    own = make_wheel(wh / "wheels", "own", "1.0")
    secret = tmp_path / "secret.whl"
    secret.write_bytes(b"not for the index")
    (wh / "wheels" / "leak-1.0-py3-none-any.whl").symlink_to(secret)
    server = make_server(wh, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/wheels/"
        with urllib.request.urlopen(base + own.name) as resp:
            assert resp.read() == own.read_bytes()
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "leak-1.0-py3-none-any.whl")
        assert info.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_a_lock_path_altered_alone_is_refused_by_verify_provision_and_bootstrap(
    tmp_path: Path,
) -> None:
    """Only ``pylock.<target>.toml`` names ``../../../etc/passwd`` (the manifest's ``locks``
    section, which bootstrap.py installs from, is intact): all three refuse, naming it."""
    wh, _ = make_wheelhouse(tmp_path, None)
    lock = wh / f"pylock.{TARGET}.toml"
    text = lock.read_text()
    assert 'path = "wheels/good-1.0-cp312-cp312-win_amd64.whl"' in text
    lock.write_text(text.replace("wheels/good-1.0-cp312-cp312-win_amd64.whl",
                                 "../../../etc/passwd", 1))  # fmt: skip
    evil = "../../../etc/passwd"
    assert evil in verify(wh).unsafe
    with pytest.raises(ProvisionError) as err:
        provision(tmp_path / "venv", wheelhouse=wh, target=TARGET)
    assert evil in str(err.value)
    pythons = [sys.executable, *sorted(glob.glob(f"{PYENV}/versions/3.8.*/bin/python"))[-1:]]
    for python in pythons:  # tomllib, and the oldest Python's reading of the keys
        venv = tmp_path / f"v-{Path(python).parent.parent.name}"
        proc = subprocess.run(
            [python, str(wh / "bootstrap.py"), str(venv), "--target", TARGET],
            capture_output=True, text=True, check=False, env=bootstrap.scrubbed_env(),
        )  # fmt: skip
        assert proc.returncode == 1, (python, proc.stderr)
        (line,) = proc.stderr.strip().splitlines()
        assert f"'{evil}' in pylock.{TARGET}.toml escapes the wheelhouse" in line, line
        assert not venv.exists()
