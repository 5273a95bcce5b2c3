"""Provisioning a venv from a hand-made wheelhouse: real interpreters, real pip/uv, no network."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import tomllib
from packaging.pylock import Pylock

import wheelport
from support import bundled_pip_wheel
from support.dists import make_wheel
from wheelport import bootstrap
from wheelport.errors import ProvisionError, UsageError
from wheelport.process import RunResult, subprocess_runner
from wheelport.provision import (
    choose_lock,
    find_interpreter,
    probe_interpreter,
    provision,
    read_lock_choice,
    unpack_uv_wheel,
)
from wheelport.targets import parse_target
from wheelport.wheelhouse import sha256_file

PYENV = os.environ.get("PYENV_ROOT", "/root/.pyenv")
SRC = str(Path(wheelport.__file__).resolve().parent.parent)
BOOTSTRAP_SRC = Path(bootstrap.__file__)


def _python(version: str) -> str:
    found = sorted(glob.glob(f"{PYENV}/versions/{version}.*/bin/python"))
    if not found:
        pytest.skip(f"no Python {version} under {PYENV}")
    return found[-1]


def _pip_wheel() -> Path:
    found = bundled_pip_wheel()
    if found is None:
        pytest.skip("no bundled pip wheel (ensurepip) to put in the index")
    return Path(found)


LINUX = {"sys_platform": "linux", "platform_machine": "x86_64", "libc": "glibc", "policy": [2, 17]}
WINDOWS = {"sys_platform": "win32", "platform_machine": "AMD64", "libc": None, "policy": None}


def _entry(wh: Path, wheel: Path) -> dict[str, Any]:
    name, version = wheel.name.split("-")[:2]
    return {
        "name": name,
        "version": version,
        "path": f"wheels/{wheel.name}",
        "sha256": sha256_file(wheel),
        "size": wheel.stat().st_size,
    }


def write_lock(
    wh: Path, target: str, facts: dict[str, Any], wheels: Sequence[Path], tools: Sequence[Path]
) -> dict[str, Any]:
    """Write ``pylock.<target>.toml`` (validated by packaging.pylock) and return its manifest entry."""
    pyver = f"{target[2]}.{target.split('-')[0][3:]}"
    env = (
        f'sys_platform == "{facts["sys_platform"]}" and '
        f'platform_machine == "{facts["platform_machine"]}" and python_version == "{pyver}"'
    )
    packages = []
    entries = [_entry(wh, w) for w in wheels]
    for e in entries:
        packages.append(
            {
                "name": e["name"],
                "version": e["version"],
                "wheels": [
                    {
                        "name": e["path"].split("/")[-1],
                        "path": e["path"],
                        "size": e["size"],
                        "hashes": {"sha256": e["sha256"]},
                    }
                ],
            }
        )
    tool_entries = [{k: v for k, v in _entry(wh, t).items() if k != "size"} for t in tools]
    data = {
        "lock-version": "1.0",
        "created-by": "wheelport",
        "environments": [env],
        "requires-python": f"=={pyver}.*",
        "packages": packages,
        "tool": {"wheelport": {"target": target, "tools": tool_entries}},
    }
    lock = Pylock.from_dict(data)
    (wh / f"pylock.{target}.toml").write_text(tomli_w.dumps(lock.to_dict()), encoding="utf-8")
    tags = sorted({w.name[:-4].split("-", 2)[2] for w in wheels})
    return {
        "file": f"pylock.{target}.toml",
        "python_version": pyver,
        **facts,
        "tags": tags,
        "packages": [{k: v for k, v in e.items() if k != "size"} for e in entries],
        "tools": tool_entries,
    }


def build_wheelhouse(wh: Path) -> Path:
    """Four locks: cp38, cp311 (alpha 1.0), cp312 (alpha 2.0 + beta, cp312 abi3 linux wheel)
    and cp312-win_amd64 (never fits this host)."""
    wheels = wh / "wheels"
    wheels.mkdir(parents=True)
    pip = Path(shutil.copy2(_pip_wheel(), wheels))
    a1 = make_wheel(wheels, "alpha", "1.0", requires_python=">=3.8")
    a2 = make_wheel(wheels, "alpha", "2.0", deps=["beta"], requires_python=">=3.12")
    b_linux = make_wheel(wheels, "beta", "1.0", tag="cp312-abi3-manylinux_2_17_x86_64")
    b_win = make_wheel(wheels, "beta", "1.0", tag="cp312-abi3-win_amd64")
    locks = {
        "cp38-manylinux_2_17_x86_64": write_lock(
            wh, "cp38-manylinux_2_17_x86_64", LINUX, [a1], [pip]
        ),
        "cp311-manylinux_2_17_x86_64": write_lock(
            wh, "cp311-manylinux_2_17_x86_64", LINUX, [a1], [pip]
        ),
        "cp312-manylinux_2_17_x86_64": write_lock(
            wh, "cp312-manylinux_2_17_x86_64", LINUX, [a2, b_linux], [pip]
        ),
        "cp312-win_amd64": write_lock(wh, "cp312-win_amd64", WINDOWS, [a2, b_win], [pip]),
    }
    manifest = {"version": 1, "targets": sorted(locks), "artifacts": {}, "locks": locks}
    (wh / "wheelport.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    shutil.copy2(BOOTSTRAP_SRC, wh / "bootstrap.py")
    return wh


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention wheelhouse shared by the module's tests."""
    return build_wheelhouse(tmp_path_factory.mktemp("wh") / "wheelhouse")


@pytest.fixture
def own_wheelhouse(tmp_path: Path, wheelhouse: Path) -> Path:
    """A private copy, for tests that damage it."""
    return Path(shutil.copytree(wheelhouse, tmp_path / "wheelhouse", symlinks=True))


def pip_list(venv: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "--isolated", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=bootstrap.scrubbed_env(),
    ).stdout
    return {p["name"]: p["version"] for p in json.loads(out) if p["name"] != "pip"}


def uv_list(venv: Path) -> dict[str, str]:
    uv = shutil.which("uv") or str(Path(sys.prefix) / "bin" / "uv")
    out = subprocess.run(
        [uv, "pip", "list", "--no-config", "--offline", "--format", "json", "--python",
         str(venv / "bin/python")],
        capture_output=True, text=True, check=True, env=bootstrap.scrubbed_env(),
    ).stdout  # fmt: skip
    return {p["name"]: p["version"] for p in json.loads(out) if p["name"] != "pip"}


def imported_version(venv: Path) -> str:
    return subprocess.run(
        [str(venv / "bin/python"), "-c", "import alpha; print(alpha.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def decoy_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose PIP_*/UV_* settings would install alpha 9.0 from elsewhere if they leaked."""
    decoys = tmp_path / "decoys"
    make_wheel(decoys, "alpha", "9.0")
    (tmp_path / "constraints.txt").write_text("alpha==9.0\n")
    conf = tmp_path / "pip.conf"
    conf.write_text(
        f"[global]\nindex-url = http://127.0.0.1:9/simple\nfind-links = {decoys}\n"
        "constraint = " + str(tmp_path / "constraints.txt") + "\n"
    )
    target_dir = tmp_path / "pip-target"
    env = dict(os.environ)
    env.update(
        {
            "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
            "PIP_EXTRA_INDEX_URL": "http://127.0.0.1:9/extra",
            "PIP_FIND_LINKS": str(decoys),
            "PIP_CONFIG_FILE": str(conf),
            "PIP_CONSTRAINT": str(tmp_path / "constraints.txt"),
            "PIP_TARGET": str(target_dir),
            "UV_INDEX_URL": "http://127.0.0.1:9/simple",
            "UV_FIND_LINKS": str(decoys),
            "UV_CONSTRAINT": str(tmp_path / "constraints.txt"),
            "PYTHONPATH": SRC,
        }
    )
    return env, target_dir


def need_unshare() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    proc = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"the kernel forbids a network namespace: {proc.stderr.strip()}")


# --------------------------------------------------------------------------- pure decisions


def _env(**kw: Any) -> dict[str, Any]:
    base = {
        "python_version": "3.12",
        "sys_platform": "linux",
        "platform_machine": "x86_64",
        "libc": "glibc",
        "libc_version": (2, 27),
        "macos_version": None,
        "free_threaded": False,
    }
    base.update(kw)
    return base


LOCKS: dict[str, dict[str, Any]] = {
    "cp312-manylinux_2_17_x86_64": {"python_version": "3.12", **LINUX},
    "cp312-manylinux_2_28_x86_64": {"python_version": "3.12", **LINUX, "policy": [2, 28]},
    "cp312-musllinux_1_2_x86_64": {
        "python_version": "3.12", **LINUX, "libc": "musl", "policy": [1, 2]
    },
    "cp312-win_amd64": {"python_version": "3.12", **WINDOWS},
    "cp313-macosx_11_0_arm64": {
        "python_version": "3.13", "sys_platform": "darwin", "platform_machine": "arm64",
        "libc": None, "policy": [11, 0],
    },
}  # fmt: skip


def test_select_lock_takes_newest_glibc_policy_the_machine_meets() -> None:
    assert bootstrap.select_lock(LOCKS, _env(libc_version=(2, 35))) == (
        "cp312-manylinux_2_28_x86_64"
    )
    # glibc 2.27 is older than manylinux_2_28: only the 2_17 lock fits
    assert bootstrap.select_lock(LOCKS, _env()) == "cp312-manylinux_2_17_x86_64"


def test_select_lock_musl_windows_and_macos() -> None:
    assert bootstrap.select_lock(LOCKS, _env(libc="musl", libc_version=(1, 2))) == (
        "cp312-musllinux_1_2_x86_64"
    )
    win = _env(sys_platform="win32", platform_machine="AMD64", libc=None, libc_version=None)
    assert bootstrap.select_lock(LOCKS, win) == "cp312-win_amd64"
    mac = _env(
        python_version="3.13", sys_platform="darwin", platform_machine="arm64", libc=None,
        libc_version=None, macos_version=(14, 2),
    )  # fmt: skip
    assert bootstrap.select_lock(LOCKS, mac) == "cp313-macosx_11_0_arm64"
    with pytest.raises(bootstrap.BootstrapError) as err:
        bootstrap.select_lock(LOCKS, {**mac, "macos_version": (10, 15)})
    assert err.value.code == 2
    assert "cp313-macosx_11_0_arm64" in err.value.message


def test_select_lock_none_fits_lists_targets_and_target_overrides() -> None:
    with pytest.raises(bootstrap.BootstrapError) as err:
        bootstrap.select_lock(LOCKS, _env(python_version="3.10"))
    assert err.value.code == 2
    assert all(name in err.value.message for name in LOCKS)
    assert bootstrap.select_lock(LOCKS, _env(python_version="3.10"), "cp312-win_amd64") == (
        "cp312-win_amd64"
    )
    with pytest.raises(bootstrap.BootstrapError, match="cp99-nothing"):
        bootstrap.select_lock(LOCKS, _env(), "cp99-nothing")


def test_scrubbed_env_drops_pip_uv_and_pythonpath() -> None:
    env = bootstrap.scrubbed_env(
        {"PIP_INDEX_URL": "x", "UV_INDEX_URL": "y", "PYTHONPATH": "z", "HOME": "/root"}
    )
    assert "PIP_INDEX_URL" not in env and "UV_INDEX_URL" not in env and "PYTHONPATH" not in env
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert env["HOME"] == "/root"


def test_choose_lock_for_a_windows_target_and_for_host(wheelhouse: Path) -> None:
    locks = [read_lock_choice(p) for p in sorted(wheelhouse.glob("pylock.*.toml"))]
    win = choose_lock(locks, parse_target("cp312-win_amd64"))
    assert win.target == "cp312-win_amd64"
    assert {p["name"] for p in win.packages} == {"alpha", "beta"}
    linux = choose_lock(locks, parse_target("cp312-manylinux_2_28_x86_64"))
    assert linux.target == "cp312-manylinux_2_17_x86_64"
    with pytest.raises(UsageError, match="cp312-win_amd64"):
        choose_lock(locks, parse_target("cp313-macosx_11_0_arm64"))


# one lock rule for bootstrap.py, provision and docker, for interpreters unlike this host

MUSL = {"sys_platform": "linux", "platform_machine": "x86_64", "libc": "musl", "policy": [1, 2]}
#: interpreter → (bootstrap.py's facts of it, the lock all three callers choose; None: no lock)
MIXED_CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "cp311-manylinux_2_35_x86_64": (_env(python_version="3.11", libc_version=(2, 35)),
                                    "cp311-manylinux_2_28_x86_64"),
    "cp311-manylinux_2_27_x86_64": (_env(python_version="3.11", libc_version=(2, 27)),
                                    "cp311-manylinux_2_17_x86_64"),
    "cp311-musllinux_1_2_x86_64": (_env(python_version="3.11", libc="musl", libc_version=(1, 2)),
                                   "cp311-musllinux_1_2_x86_64"),
    "cp312-win_amd64": (_env(sys_platform="win32", platform_machine="AMD64", libc=None,
                             libc_version=None), "cp312-win_amd64"),
    # glibc older than every manylinux lock: the musllinux lock holds only pure wheels, yet a
    # glibc machine must not get it (the rule of the libc, not only of the wheel tags)
    "cp311-manylinux_2_12_x86_64": (_env(python_version="3.11", libc_version=(2, 12)), None),
}  # fmt: skip


@pytest.fixture(scope="module")
def mixed_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Locks for cp312-win_amd64, cp311 manylinux_2_17 and 2_28 (each with its own platform
    wheel of beta) and cp311-musllinux_1_2 (pure wheels only), with the manifest's locks."""
    wh = tmp_path_factory.mktemp("mixed") / "wheelhouse"
    wheels = wh / "wheels"
    alpha = make_wheel(wheels, "alpha", "1.0")
    locks = {}
    for target, facts, beta_tag in (
        ("cp312-win_amd64", WINDOWS, "cp312-cp312-win_amd64"),
        ("cp311-manylinux_2_17_x86_64", LINUX, "cp311-cp311-manylinux_2_17_x86_64"),
        ("cp311-manylinux_2_28_x86_64", {**LINUX, "policy": [2, 28]},
         "cp311-cp311-manylinux_2_28_x86_64"),
        ("cp311-musllinux_1_2_x86_64", MUSL, None),
    ):  # fmt: skip
        own = [make_wheel(wheels, "beta", "1.0", tag=beta_tag)] if beta_tag else []
        locks[target] = write_lock(wh, target, facts, [alpha, *own], [])
    manifest = {"version": 1, "targets": sorted(locks), "artifacts": {}, "locks": locks}
    (wh / "wheelport.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return wh


def _probe_answer(target: str) -> RunResult:
    """What the interpreter probe prints when run by an interpreter that ``target`` describes."""
    t = parse_target(target)
    info = {"tags": [str(tag) for tag in t.tags], "markers": t.markers, "free_threaded": False}
    return RunResult(0, "a warning on stderr\n" + json.dumps(info) + "\n")


@pytest.mark.parametrize("interpreter", sorted(MIXED_CASES))
def test_one_lock_rule_for_bootstrap_provision_and_docker(
    mixed_wheelhouse: Path, tmp_path: Path, interpreter: str
) -> None:
    from wheelport.export.docker import write_context

    env, expected = MIXED_CASES[interpreter]
    manifest_locks = bootstrap.load_locks(str(mixed_wheelhouse))
    choices = [read_lock_choice(p) for p in sorted(mixed_wheelhouse.glob("pylock.*.toml"))]
    probe = probe_interpreter(
        "/opt/far/python", runner=lambda argv, **kw: _probe_answer(interpreter)
    )
    assert probe.identifier == interpreter

    def docker_probe(argv: Sequence[str], **kw: Any) -> RunResult:
        assert argv[:4] == ["podman", "run", "--rm", "--network=none"]
        return _probe_answer(interpreter)

    def docker() -> str:
        return write_context(mixed_wheelhouse, tmp_path / "ctx", base_image="far:1",
                             engine="podman", runner=docker_probe).target  # fmt: skip

    if expected is None:
        with pytest.raises(bootstrap.BootstrapError, match="no lock fits"):
            bootstrap.select_lock(manifest_locks, env)
        with pytest.raises(UsageError, match="musllinux_1_2_x86_64: libc is glibc, not musl"):
            choose_lock(choices, probe)
        with pytest.raises(UsageError, match="no lock in the wheelhouse fits"):
            docker()
        assert not (tmp_path / "ctx").exists()
        return
    assert bootstrap.select_lock(manifest_locks, env) == expected
    assert choose_lock(choices, probe).target == expected
    assert docker() == expected
    assert (tmp_path / "ctx" / f"pylock.{expected}.toml").is_file()


def test_best_lock_prefers_a_libc_policy_then_the_newest() -> None:
    facts = {
        "cp311-linux_x86_64": {"libc": None, "policy": None},
        "cp311-manylinux_2_17_x86_64": {"libc": "glibc", "policy": [2, 17]},
        "cp311-manylinux_2_28_x86_64": {"libc": "glibc", "policy": [2, 28]},
    }
    assert bootstrap.best_lock(facts, facts) == "cp311-manylinux_2_28_x86_64"
    assert bootstrap.best_lock(facts, ["cp311-linux_x86_64", "cp311-manylinux_2_17_x86_64"]) == (
        "cp311-manylinux_2_17_x86_64"
    )
    assert bootstrap.best_lock(facts, ["cp311-linux_x86_64"]) == "cp311-linux_x86_64"


def test_find_interpreter_names_what_it_tried(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        find_interpreter("3.99", environ={"PATH": str(tmp_path), "PYENV_ROOT": str(tmp_path)})
    assert "python3.99 on PATH" in str(err.value)
    assert str(tmp_path) in str(err.value)
    assert err.value.return_code == 2
    assert find_interpreter("3.12", environ={"PATH": "", "PYENV_ROOT": PYENV}).startswith(PYENV)


# --------------------------------------------------------------------------- real installs


@pytest.mark.slow
def test_same_wheelhouse_serves_311_and_312(wheelhouse: Path, tmp_path: Path) -> None:
    r311 = provision(tmp_path / "v311", wheelhouse=wheelhouse, python="3.11")
    r312 = provision(tmp_path / "v312", wheelhouse=wheelhouse, python="3.12")
    assert r311.target == "cp311-manylinux_2_17_x86_64"
    assert r312.target == "cp312-manylinux_2_17_x86_64"
    assert pip_list(tmp_path / "v311") == {"alpha": "1.0"}
    assert pip_list(tmp_path / "v312") == {"alpha": "2.0", "beta": "1.0"}
    assert imported_version(tmp_path / "v311") == "1.0"
    assert imported_version(tmp_path / "v312") == "2.0"
    assert r311.check_ok and r312.check_ok
    assert r312.packages == (("alpha", "2.0"), ("beta", "1.0"))


def test_explicit_target_must_exist(wheelhouse: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        provision(tmp_path / "v", wheelhouse=wheelhouse, target="cp313-win_amd64")
    assert "pylock.cp311-manylinux_2_17_x86_64.toml" in str(err.value)
    assert not (tmp_path / "v").exists()


def test_tampered_wheel_is_refused_before_anything_is_created(
    own_wheelhouse: Path, tmp_path: Path
) -> None:
    wheel = own_wheelhouse / "wheels" / "alpha-2.0-py3-none-any.whl"
    good = sha256_file(wheel)
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0x01
    wheel.write_bytes(bytes(data))
    with pytest.raises(ProvisionError) as err:
        provision(tmp_path / "venv", wheelhouse=own_wheelhouse, python="3.12")
    message = str(err.value)
    assert "alpha-2.0-py3-none-any.whl" in message
    assert good in message and sha256_file(wheel) in message
    assert err.value.return_code == 1
    assert not (tmp_path / "venv").exists()
    # bootstrap.py refuses the same way, exit 1, naming the file
    proc = subprocess.run(
        [_python("3.12"), str(own_wheelhouse / "bootstrap.py"), str(tmp_path / "venv2")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "wheels/alpha-2.0-py3-none-any.whl" in proc.stderr
    assert not (tmp_path / "venv2").exists()


def test_sdist_only_package_is_named(own_wheelhouse: Path, tmp_path: Path) -> None:
    path = own_wheelhouse / "pylock.cp311-manylinux_2_17_x86_64.toml"
    text = path.read_text()
    data = tomllib.loads(text)
    data["packages"].append(
        {
            "name": "gamma",
            "version": "1.0",
            "sdist": {"name": "gamma-1.0.tar.gz", "path": "sdists/gamma-1.0.tar.gz",
                      "size": 1, "hashes": {"sha256": "0" * 64}},
        }
    )  # fmt: skip
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(ProvisionError, match="gamma"):
        provision(tmp_path / "v", wheelhouse=own_wheelhouse, target="cp311-manylinux_2_17_x86_64")
    assert not (tmp_path / "v").exists()


@pytest.mark.slow
def test_air_gap_bootstrap_and_provision_ignore_pip_settings(
    wheelhouse: Path, tmp_path: Path
) -> None:
    need_unshare()
    env, pip_target = decoy_env(tmp_path)
    boot = subprocess.run(
        ["unshare", "-n", _python("3.12"), str(wheelhouse / "bootstrap.py"), str(tmp_path / "b")],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert boot.returncode == 0, boot.stderr
    assert "cp312-manylinux_2_17_x86_64" in boot.stdout
    assert pip_list(tmp_path / "b") == {"alpha": "2.0", "beta": "1.0"}
    assert imported_version(tmp_path / "b") == "2.0"

    prov = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "wheelport.provision", str(tmp_path / "p"),
         "-w", str(wheelhouse), "--python", "3.11"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert prov.returncode == 0, prov.stderr
    assert json.loads(prov.stdout)["target"] == "cp311-manylinux_2_17_x86_64"
    assert pip_list(tmp_path / "p") == {"alpha": "1.0"}
    assert not pip_target.exists()


@pytest.mark.slow
def test_bootstrap_under_python38_picks_cp38_and_310_gets_exit_2(
    wheelhouse: Path, tmp_path: Path
) -> None:
    py38 = _python("3.8")
    proc = subprocess.run(
        [py38, str(wheelhouse / "bootstrap.py"), str(tmp_path / "v38")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cp38-manylinux_2_17_x86_64" in proc.stdout
    assert pip_list(tmp_path / "v38") == {"alpha": "1.0"}
    assert subprocess.run(
        [str(tmp_path / "v38/bin/python"), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip() == "(3, 8)"  # fmt: skip

    proc = subprocess.run(
        [_python("3.10"), str(wheelhouse / "bootstrap.py"), str(tmp_path / "v310")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "cp311-manylinux_2_17_x86_64" in proc.stderr and "cp312-win_amd64" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "v310").exists()


def test_uv_installer_offline(wheelhouse: Path, tmp_path: Path) -> None:
    need_unshare()
    env, _ = decoy_env(tmp_path)
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "wheelport.provision", str(tmp_path / "u"),
         "-w", str(wheelhouse), "--python", "3.12", "--installer", "uv"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["installer"] == "uv" and report["check_ok"] is True
    assert uv_list(tmp_path / "u") == {"alpha": "2.0", "beta": "1.0"}
    assert imported_version(tmp_path / "u") == "2.0"


def test_existing_venv_is_refused_untouched(wheelhouse: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists"):
        provision(venv, wheelhouse=wheelhouse, target="cp311-manylinux_2_17_x86_64")
    assert [p.name for p in venv.iterdir()] == ["keep.txt"]


def test_uv_executable_is_unpacked_from_a_uv_wheel(tmp_path: Path) -> None:
    uv = shutil.which("uv") or str(Path(sys.prefix) / "bin" / "uv")
    wheel = tmp_path / "uv-0.13.9-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        zf.write(uv, "uv-0.13.9.data/scripts/uv")
        zf.writestr("uv-0.13.9.dist-info/METADATA", "Metadata-Version: 2.1\nName: uv\n")
    out = tmp_path / "bin"
    out.mkdir()
    unpacked = unpack_uv_wheel(wheel, out)
    version = subprocess.run([unpacked, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("uv ")
    with pytest.raises(ProvisionError, match="no uv executable"):
        unpack_uv_wheel(make_wheel(tmp_path / "other", "notuv", "1.0"), out)


def test_failed_install_removes_the_venv(wheelhouse: Path, tmp_path: Path) -> None:
    def failing_install(argv: Sequence[str], **kw: Any) -> RunResult:
        if "install" in argv:
            return RunResult(1, "ERROR: disk on fire\n")
        return subprocess_runner(argv, **kw)

    venv = tmp_path / "venv"
    with pytest.raises(ProvisionError, match="disk on fire"):
        provision(venv, wheelhouse=wheelhouse, python="3.12", runner=failing_install)
    assert not venv.exists()


def test_probe_of_a_python_without_pip_uses_the_wheelhouse_pip(
    wheelhouse: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "bare"
    subprocess.run([_python("3.12"), "-m", "venv", "--without-pip", str(bare)], check=True)
    pip_wheel = next((wheelhouse / "wheels").glob("pip-*.whl"))
    target = probe_interpreter(str(bare / "bin/python"), pip_wheel=pip_wheel)
    assert target.python_version == (3, 12)
    assert target.identifier.startswith("cp312-")
    assert any(str(t).startswith("cp312-abi3-manylinux") for t in target.tags)
    with pytest.raises(ProvisionError, match="cannot compute the wheel tags"):
        probe_interpreter(str(bare / "bin/python"))
