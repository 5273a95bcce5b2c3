"""End to end against the public index: the main job, offline provisioning, lxml from source.

Marked ``network`` (and ``container`` for the container build); they run in CI too. They see
the public index through the ``public_index`` view, which serves exactly the versions pinned in
``tests/data/public-index/e2e.toml`` (build requirements included): the same answer next year.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import can_unshare, run_wheelport
from support.public import PublicIndex

pytestmark = pytest.mark.network


wheelport = run_wheelport


def offline_prefix() -> tuple[str, ...]:
    if not can_unshare():
        pytest.skip("unshare -n is not permitted here")
    return ("unshare", "-n")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("public-cache")


@pytest.mark.slow
def test_real_set_synced_and_provisioned_offline(
    tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch, public_index: PublicIndex
) -> None:
    monkeypatch.setenv("WHEELPORT_CACHE_DIR", str(shared_cache))
    wh = tmp_path / "wh"
    r = wheelport("sync", "lxml==6.1.3", "cryptography==50.0.2", "numpy==2.4.6", "-o", str(wh),
                  "--index-url", public_index.url, "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    host = result["targets"][0]
    cells = result["coverage"]
    assert {"lxml", "cryptography", "numpy", "cffi"} <= set(cells)
    assert all(row[host]["state"] == "downloaded" for row in cells.values())
    assert wheelport("verify", str(wh)).returncode == 0

    venv = tmp_path / "venv"
    hostile = dict(
        os.environ, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_FIND_LINKS=str(tmp_path)
    )
    r = wheelport("provision", str(venv), "-w", str(wh), prefix=offline_prefix(), env=hostile)
    assert r.returncode == 0, r.stderr
    code = (
        "import lxml.etree, cryptography.fernet, numpy;"
        "k = cryptography.fernet.Fernet.generate_key();"
        "print(lxml.etree.fromstring('<a><b/></a>')[0].tag, numpy.arange(4).sum(),"
        " cryptography.fernet.Fernet(k).decrypt(cryptography.fernet.Fernet(k).encrypt(b'x')).decode())"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["b", "6", "x"], out.stderr


@pytest.mark.container
@pytest.mark.slow
def test_lxml_from_source_in_container(
    tmp_path: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch, public_index: PublicIndex
) -> None:
    """--from-source lxml: built by cibuildwheel in the derived local image (libxml2/libxslt
    headers), network off, repaired by auditwheel; provisioned offline; a rerun builds nothing."""
    if shutil.which("podman") is None:  # the local image is built with podman (a docker
        pytest.skip(
            "podman is not installed (run .ci/setup-containers.sh)"
        )  # client alone is not enough)
    monkeypatch.setenv("WHEELPORT_CACHE_DIR", str(shared_cache))
    wh = tmp_path / "wh"
    args = (
        "sync",
        "lxml==6.1.3",
        "--from-source",
        "lxml",
        "-t",
        "cp311-manylinux_2_36_x86_64",
        "--index-url",
        public_index.url,
        "-o",
        str(wh),
        "--json",
    )
    r = wheelport(*args)
    assert r.returncode == 0, r.stderr + r.stdout[-3000:]
    result = json.loads(r.stdout)
    (build,) = [b for b in result["builds"] if b["package"] == "lxml"]
    assert build["builder"].startswith("container:localhost/wheelport-builder")
    assert not build["skipped"]
    wheel = Path(build["wheel"]).name
    assert "manylinux" in wheel and wheel.startswith("lxml-6.1.3-")
    manifest = json.loads((wh / "wheelport.json").read_text())
    origin = manifest["artifacts"][build["wheel"]]["origin"]
    assert origin["kind"] == "build" and origin["sdist"].startswith("sdists/lxml-")

    r2 = wheelport(*args)
    assert r2.returncode == 0, r2.stderr
    assert all(b["skipped"] for b in json.loads(r2.stdout)["builds"])  # a rerun rebuilds nothing

    venv = tmp_path / "venv"
    python311 = sorted(Path("/root/.pyenv/versions").glob("3.11*/bin/python"))
    python = str(python311[-1]) if python311 else sys.executable
    r = wheelport(
        "provision", str(venv), "-w", str(wh), "--python", python, prefix=offline_prefix()
    )
    assert r.returncode == 0, r.stderr
    code = "import lxml.etree as e; print(e.fromstring('<doc><p>hi</p></doc>').findtext('p'))"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "hi", out.stderr
