"""A regular install does everything: the wheel carries the container recipes as package data.

The project's wheel is built with ``python -m build --wheel`` (from a copy of the tree, so the
checkout gets no ``build/`` or ``*.egg-info``), installed non-editable into a fresh venv with
its dependencies from the public index (through the ``public_index`` view, pinned to the versions
this test's own environment has), and that install — run from outside the checkout with
a scrubbed environment — builds the local base image, builds a generated C extension from its
sdist in a container (``sync --from-source``) and builds an app image (``docker --build``)
that imports it. The local base image is the one the other container tests use: its tag is a
hash of the recipe's contents, so a checkout and a regular install share it (built once).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import parse_wheel_filename

from support import bundled_pip_wheel, scrubbed_env
from support.dists import make_backend_wheel, make_sdist
from support.public import PublicIndex
from support.server import IndexServer
from wheelport import resources
from wheelport.builders import images
from wheelport.builders.container import engine_env

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[1]
LOCAL_TARGET = "cp311-manylinux_2_36_x86_64"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    python: Path
    wheelport: Path
    site_packages: Path
    work: Path


def _require_podman() -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (run .ci/setup-containers.sh)")
    info = subprocess.run(
        ["podman", "info"], capture_output=True, env={**os.environ, **engine_env()}
    )
    if info.returncode != 0:
        pytest.skip("podman is not usable here")


def _env(cache: Path, index: str | None = None) -> dict[str, str]:
    """No pip/uv configuration of this machine, no path into the checkout; pip's index is the
    public index view ``index`` (pinned versions only) when given."""
    env = scrubbed_env()
    if index is not None:
        env["PIP_INDEX_URL"] = index
    env.pop("CONTAINERS_CONF", None)  # the install must point podman at its own copy
    env["WHEELPORT_CACHE_DIR"] = str(cache)
    if os.environ.get("SSL_CERT_FILE"):
        env["PIP_CERT"] = os.environ["SSL_CERT_FILE"]
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 1200) -> str:
    proc = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{argv[:3]} exit {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc.stdout


def _frozen() -> list[str]:
    """``name==version`` of every distribution in this test run's environment."""
    from importlib.metadata import distributions

    return sorted({f"{d.metadata['Name']}=={d.version}" for d in distributions()})


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, _public_view: PublicIndex) -> Installed:
    """wheelport's wheel, installed non-editable into a fresh venv outside the checkout; its
    dependencies and build backend at exactly the versions this test's environment has (a new
    release of any of them changes nothing here)."""
    _require_podman()
    work = tmp_path_factory.mktemp("regular-install")
    _public_view.reset()
    _public_view.allow(_frozen(), "the test environment")
    _public_view.allow(["setuptools==84.2.1"], "the build backend")
    env = _env(work / "cache", _public_view.url)
    tree = work / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    # isolated: the build backend (setuptools>=77 for the SPDX license) comes from the index
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(tree)],
         env, cwd=work)  # fmt: skip
    (wheel,) = (work / "dist").glob("wheelport-*.whl")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env, cwd=work)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--isolated", "-q", str(wheel)], env, cwd=work)
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                env, cwd=work)  # fmt: skip
    problems = _public_view.problems()
    _public_view.reset()
    if problems:
        pytest.fail(problems, pytrace=False)
    return Installed(wheel, venv, python, venv / "bin" / "wheelport", Path(site.strip()), work)


def test_wheel_carries_the_recipes_and_the_install_no_source_path(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as zf:
        names = set(zf.namelist())
    assert {f"wheelport/resources/{n}" for n in resources.NAMES} <= names
    probe = (
        "import json, wheelport, wheelport.resources as r\n"
        "print(json.dumps({'module': wheelport.__file__, 'files': str(r.files()),"
        " 'conf': str(r.path(r.CONTAINERS_CONF)), 'tag': __import__('wheelport.builders.images',"
        " fromlist=['x']).local_base_tag()}))"
    )
    out = json.loads(
        _run(
            [str(installed.python), "-c", probe], _env(installed.work / "cache"), cwd=installed.work
        )
    )
    for key in ("module", "files", "conf"):
        path = Path(out[key]).resolve()
        assert path.is_relative_to(installed.site_packages.resolve()), (key, path)
        assert not path.is_relative_to(ROOT), (key, path)
    assert Path(out["conf"]).read_bytes() == resources.read_bytes(resources.CONTAINERS_CONF)
    # no .pth / editable finder leads back into the checkout
    for pth in installed.site_packages.glob("*.pth"):
        assert str(ROOT) not in pth.read_text(errors="replace"), pth
    # the recipe hash is of contents, not paths: the same image tag as the checkout
    assert out["tag"] == images.local_base_tag()


def test_build_local_from_the_install(installed: Installed) -> None:
    out = _run([str(installed.wheelport), "image", "build-local", "--json"],
               _env(installed.work / "cache"), cwd=installed.work)  # fmt: skip
    image = json.loads(out)["image"]
    assert image == images.local_base_tag()  # shared with the other container tests
    exists = subprocess.run(
        ["podman", "image", "exists", image], env={**os.environ, **engine_env()}
    )
    assert exists.returncode == 0


@pytest.fixture(scope="module")
def synced(installed: Installed) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``wheelport sync --from-source fastadd`` by the install: a container build."""
    dists = installed.work / "dists"
    wh = installed.work / "wh"
    with IndexServer() as index:
        index.add(make_backend_wheel(dists))
        index.add(make_sdist(dists, "fastadd", "1.0", c_extension=True))
        pip = bundled_pip_wheel()
        if pip is not None:
            index.add(Path(pip))
        args = ["sync", "fastadd", "--from-source", "fastadd", "--index-url", index.url,
                "-t", LOCAL_TARGET, "-o", str(wh), "--json"]  # fmt: skip
        if pip is None:
            args += ["--tool", "none"]
        out = _run(
            [str(installed.wheelport), *args], _env(installed.work / "cache"), cwd=installed.work
        )
    yield wh, json.loads(out)


def test_sync_from_source_builds_in_a_container(synced: tuple[Path, dict[str, Any]]) -> None:
    wh, result = synced
    (build,) = [b for b in result["builds"] if b["package"] == "fastadd"]
    assert build["builder"] == f"container:{images.local_base_tag()}"
    assert not build["skipped"]
    wheel = wh / build["wheel"]
    assert wheel.is_file()
    _, _, _, tags = parse_wheel_filename(wheel.name)
    platforms = {tag.platform for tag in tags}
    assert platforms and all(
        p.startswith("manylinux") and p.endswith("_x86_64") for p in platforms
    ), platforms
    assert result["coverage"]["fastadd"][LOCAL_TARGET]["state"] == "built"


def test_docker_build_from_the_install(
    installed: Installed, synced: tuple[Path, dict[str, Any]]
) -> None:
    wh, _ = synced
    tag = f"localhost/wheelport-test-regular:{uuid.uuid4().hex[:12]}"
    podman_env = {**os.environ, **engine_env()}
    try:
        out = _run(
            [str(installed.wheelport), "docker", "-w", str(wh), "-t", LOCAL_TARGET,
             "--base-image", images.local_base_tag(), "--build", "--tag", tag, "--json"],
            _env(installed.work / "cache"), cwd=installed.work,
        )  # fmt: skip
        assert json.loads(out)["image"] == tag
        run = subprocess.run(
            ["podman", "run", "--rm", "--network=none", tag, "python", "-c",
             "import sys, fastadd; from fastadd._speedup import add;"
             " print(add(2, 3), fastadd.__version__, sys.prefix)"],
            capture_output=True, text=True, env=podman_env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == ["5", "1.0", "/opt/venv"]
    finally:
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, env=podman_env)
