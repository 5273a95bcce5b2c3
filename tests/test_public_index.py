"""Against the public index (pypi.org): uv as the oracle, and real manylinux wheels for the host.

Both tools see the public index through the ``public_index`` view: the resolution set has every
file uploaded before the snapshot of ``tests/data/public-index/resolution.toml`` (real choices,
never a new release), the host lock exact pins of ``e2e.toml``.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.public import PublicIndex

pytestmark = pytest.mark.network

UV = Path(sys.executable).parent / "uv"
REQUIREMENTS = [
    "requests[socks]",
    "rich",
    "httpx",
    "click",
    'colorama; sys_platform == "win32"',
    'tomli; python_version < "3.11"',
    "exceptiongroup",
    "numpy",
]
# wheelport target -> (uv --python-platform, uv --python-version)
TARGETS = {
    "cp312-manylinux_2_28_x86_64": ("x86_64-manylinux_2_28", "3.12"),
    "cp312-win_amd64": ("x86_64-pc-windows-msvc", "3.12"),
    "cp310-macosx_11_0_arm64": ("aarch64-apple-darwin", "3.10"),
}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["UV_CACHE_DIR"] = str(tmp_path / "uv-cache")
    env["WHEELPORT_CACHE_DIR"] = str(tmp_path / "wp-cache")
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def wheelport_lock(
    tmp_path: Path, requirements: list[str], targets: list[str], index: str
) -> dict[str, dict[str, str]]:
    """{target: {name: version}} from ``wheelport lock --json``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    args = [a for t in targets for a in ("-t", t)]
    proc = subprocess.run(
        [sys.executable, "-m", "wheelport", "lock", *requirements, *args, "--index-url", index,
         "-o", str(tmp_path / "wh"), "--tool", "none", "--json"],
        capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    return {
        t: {name: info["version"] for name, info in pins.items()}
        for t, pins in data["targets"].items()
    }


def uv_compile(
    tmp_path: Path, requirements: list[str], platform: str, python: str, index: str
) -> dict[str, str]:
    req = tmp_path / "requirements.in"
    req.write_text("\n".join(requirements) + "\n")
    proc = subprocess.run(
        [str(UV), "pip", "compile", "--no-config", "--python-platform", platform, "--python-version", python,
         "--no-header", "--no-annotate", "--index-url", index, str(req)],
        capture_output=True, text=True, env=_env(tmp_path), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        line = line.split(";", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        from packaging.utils import canonicalize_name

        out[canonicalize_name(name.split("[", 1)[0])] = version.strip()
    return out


@pytest.mark.slow
@pytest.mark.skipif(not UV.exists(), reason="uv is not installed in the venv")
def test_same_resolution_as_uv(tmp_path: Path, public_index: PublicIndex) -> None:
    ours = wheelport_lock(tmp_path / "wp", REQUIREMENTS, list(TARGETS), public_index.url)
    theirs = {t: uv_compile(tmp_path, REQUIREMENTS, *TARGETS[t], public_index.url) for t in TARGETS}
    for target in TARGETS:
        assert ours[target] == theirs[target], target
    # the rules the set exercises really differ between targets
    assert (
        "colorama" in ours["cp312-win_amd64"]
        and "colorama" not in ours["cp312-manylinux_2_28_x86_64"]
    )
    assert "tomli" in ours["cp310-macosx_11_0_arm64"] and "tomli" not in ours["cp312-win_amd64"]
    assert "pysocks" in ours["cp312-manylinux_2_28_x86_64"]


def test_host_lock_picks_manylinux_wheels(tmp_path: Path, public_index: PublicIndex) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wheelport", "lock", "lxml==6.1.3", "cryptography==50.0.2",
         "numpy==2.4.6", "-t", "host", "--index-url", public_index.url, "-o", str(tmp_path / "wh"),
         "--tool", "none"],
        capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (lock,) = (tmp_path / "wh").glob("pylock.*.toml")
    packages = {p["name"]: p for p in tomllib.loads(lock.read_text())["packages"]}
    for name in ("lxml", "cryptography", "numpy"):
        wheels = packages[name].get("wheels")
        assert wheels, f"{name}: no wheel chosen"
        assert "manylinux" in wheels[0]["name"] and "x86_64" in wheels[0]["name"], wheels[0]["name"]
        assert len(wheels[0]["hashes"]["sha256"]) == 64
    # cryptography's wheel is abi3: a cp311 host takes an older-minor abi3 wheel
    assert "-abi3-" in packages["cryptography"]["wheels"][0]["name"]
