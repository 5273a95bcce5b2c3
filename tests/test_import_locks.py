"""``wheelport lock --from``: locks written by real uv, poetry, pipenv and pdm (and a pylock.toml
that uv exports) against a local index, imported without re-resolving.

The project pins older versions than the index has (``dep<2`` while dep 2.0 exists), has
platform- and Python-specific dependencies and an extra, and is imported for targets unlike the
host: each target's lock must hold exactly the source lock's versions that apply there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from support import one_error_line, run_wheelport, scrubbed_env
from support.dists import make_sdist, make_wheel
from support.server import IndexServer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

WIN = "cp312-win_amd64"
MAC = "cp313-macosx_11_0_arm64"
LIN310 = "cp310-manylinux_2_28_x86_64"
TARGETS = (WIN, MAC, LIN310)
BIN = Path(sys.executable).parent

PROJECT = """\
[project]
name = "app"
version = "0.1"
requires-python = ">=3.10"
dependencies = ["dep<2", 'winonly<2; sys_platform == "win32"', 'linuxonly; sys_platform == "linux"',
                'oldpy<2; python_version < "3.11"']
[project.optional-dependencies]
fast = ["speedup<1.1"]
[dependency-groups]
dev = ["devtool<2"]
"""

#: what every graph-recording lock (with the extra and the group) must give per target
COMMON = {"dep": "1.5", "sub": "1.1", "speedup": "1.0", "devtool": "1.0"}
EXPECTED = {
    WIN: {**COMMON, "winonly": "1.0"},
    MAC: dict(COMMON),
    LIN310: {**COMMON, "linuxonly": "2.0", "oldpy": "1.0"},
}
SPEEDUP_FILE = {
    WIN: "speedup-1.0-cp312-cp312-win_amd64.whl",
    MAC: "speedup-1.0-cp313-cp313-macosx_11_0_arm64.whl",
    LIN310: "speedup-1.0-cp310-cp310-manylinux_2_17_x86_64.whl",
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    d = tmp_path_factory.mktemp("dists")
    with IndexServer() as server:
        for v in ("1.0", "1.5", "2.0"):
            server.add(make_wheel(d, "dep", v, deps=["sub>=1"]))
        for v in ("1.0", "1.1"):
            server.add(make_wheel(d, "sub", v))
        for v in ("1.0", "2.0"):
            server.add(make_wheel(d, "winonly", v, tag="py3-none-win_amd64"))
            server.add(make_wheel(d, "linuxonly", v, tag="py3-none-manylinux_2_17_x86_64"))
            server.add(make_wheel(d, "oldpy", v))
            server.add(make_wheel(d, "devtool", v))
        for v in ("1.0", "1.1"):
            for tag in SPEEDUP_FILE.values():
                server.add(make_wheel(d, "speedup", v, tag=tag.split("-", 2)[2][: -len(".whl")]))
            # a pure wheel too, which pipenv (resolving on this machine) installs; the tagged
            # wheels rank above it for their targets
            server.add(make_wheel(d, "speedup", v))
            server.add(make_sdist(d, "speedup", v))
        yield server


def tool_env(home: Path) -> dict[str, str]:
    env = scrubbed_env()
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        UV_CACHE_DIR=str(home / "uv"),
        POETRY_CACHE_DIR=str(home / "poetry-cache"),
        POETRY_CONFIG_DIR=str(home / "poetry-config"),
        POETRY_DATA_DIR=str(home / "poetry-data"),
        POETRY_VIRTUALENVS_CREATE="false",
        POETRY_NO_INTERACTION="1",
        PIPENV_VENV_IN_PROJECT="1",
        PIPENV_NOSPIN="1",
        PIPENV_YES="1",
        PIPENV_IGNORE_VIRTUALENVS="1",
        PIPENV_CACHE_DIR=str(home / "pipenv"),
        PIPENV_PYTHON=sys.executable,
        PDM_CHECK_UPDATE="false",
        PDM_CACHE_DIR=str(home / "pdm"),
        PDM_CONFIG_FILE=str(home / "pdm.toml"),
        PDM_PYTHON=sys.executable,
        PDM_IGNORE_SAVED_PYTHON="1",
        PDM_NON_INTERACTIVE="1",
        PDM_USE_VENV="false",
        PATH=f"{BIN}:/usr/bin:/bin",
    )
    env.pop("VIRTUAL_ENV", None)
    return env


def tool(args: list[str], cwd: Path, home: Path) -> None:
    proc = subprocess.run(
        args, cwd=cwd, env=tool_env(home), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def locks(srv: IndexServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tool's lock of the same project, written by the tool itself."""
    root = tmp_path_factory.mktemp("sources")
    home = root / "home"
    out: dict[str, Path] = {}

    uvp = root / "uv"
    uvp.mkdir()
    (uvp / "pyproject.toml").write_text(PROJECT)
    tool([str(BIN / "uv"), "lock", "--no-config", "--index-url", srv.url], uvp, home)
    out["uv.lock"] = uvp / "uv.lock"
    tool([str(BIN / "uv"), "export", "--no-config", "--frozen", "--format", "pylock.toml",
          "--extra", "fast", "-o", "pylock.toml"], uvp, home)  # fmt: skip
    out["pylock.toml"] = uvp / "pylock.toml"

    poe = root / "poetry"
    poe.mkdir()
    (poe / "pyproject.toml").write_text(
        PROJECT + "[tool.poetry]\npackage-mode = false\n"
        f'[[tool.poetry.source]]\nname = "local"\nurl = "{srv.url}"\npriority = "primary"\n'
    )
    tool([str(BIN / "poetry"), "lock"], poe, home)
    out["poetry.lock"] = poe / "poetry.lock"

    pdmp = root / "pdm"
    pdmp.mkdir()
    (pdmp / "pyproject.toml").write_text(
        PROJECT + f'[[tool.pdm.source]]\nname = "pypi"\nurl = "{srv.url}"\nverify_ssl = false\n'
    )
    tool([str(BIN / "pdm"), "lock", "-G", ":all"], pdmp, home)
    out["pdm.lock"] = pdmp / "pdm.lock"

    pip = root / "pipenv"
    pip.mkdir()
    (pip / "Pipfile").write_text(
        f'[[source]]\nurl = "{srv.url}"\nverify_ssl = false\nname = "local"\n\n'
        '[packages]\ndep = "<2"\nspeedup = "<1.1"\n'
        'winonly = {version = "*", markers = "sys_platform == \'win32\'"}\n'
        'linuxonly = {version = "*", markers = "sys_platform == \'linux\'"}\n'
        '\n[dev-packages]\ndevtool = "<2"\n'
    )
    tool([str(BIN / "pipenv"), "lock"], pip, home)
    out["Pipfile.lock"] = pip / "Pipfile.lock"
    return out


def lock_from(tmp_path: Path, source: Path, *args: str, targets: tuple[str, ...] = TARGETS,
              index: str | None = None, env: Mapping[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    cmd = [sys.executable, "-m", "wheelport", "lock", "--from", str(source), "-o", str(tmp_path / "wh"),
           "--tool", "none", *args]  # fmt: skip
    if index:
        cmd += ["--index-url", index]
    for t in targets:
        cmd += ["-t", t]
    run_env = {
        **scrubbed_env(env),
        "WHEELPORT_CACHE_DIR": str(tmp_path / "cache"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        cmd, capture_output=True, text=True, env=run_env, cwd=tmp_path, timeout=300
    )


def locked(tmp_path: Path, target: str) -> dict[str, tuple[str, str]]:
    data = tomllib.loads((tmp_path / "wh" / f"pylock.{target}.toml").read_text())
    out = {}
    for pkg in data["packages"]:
        art = (pkg.get("wheels") or [pkg.get("sdist")])[0]
        out[pkg["name"]] = (pkg["version"], art["name"])
    return out


def source_versions(path: Path) -> dict[str, str]:
    """name → version as the source lock writes it (read independently of wheelport)."""
    text = path.read_text()
    if path.name == "Pipfile.lock":
        doc = json.loads(text)
        return {
            n: e["version"].lstrip("=") for s in ("default", "develop") for n, e in doc[s].items()
        }
    doc = tomllib.loads(text)
    return {p["name"]: p["version"] for p in doc.get("package", doc.get("packages", []))}


@pytest.mark.parametrize(
    ("fmt", "flags"),
    [
        ("uv.lock", ["--extra", "fast", "--group", "dev"]),
        ("poetry.lock", ["--extra", "fast", "--group", "dev"]),
        ("pdm.lock", ["--extra", "fast", "--group", "dev"]),
        ("pylock.toml", []),  # uv exported it with the extra and the (default) dev group
    ],
)
def test_import_keeps_pins_per_target(
    tmp_path: Path, srv: IndexServer, locks: dict[str, Path], fmt: str, flags: list[str]
) -> None:
    source = locks[fmt]
    proc = lock_from(tmp_path, source, *flags)
    assert proc.returncode == 0, proc.stderr
    recorded = source_versions(source)
    assert recorded["dep"] == "1.5"  # dep 2.0 is on the index: a re-resolve would take it
    for target in TARGETS:
        got = locked(tmp_path, target)
        assert {n: v for n, (v, _) in got.items()} == EXPECTED[target], target
        assert all(recorded[n] == v for n, (v, _) in got.items())
        assert got["speedup"][1] == SPEEDUP_FILE[target]
    # the written lock is current for these inputs
    check = lock_from(tmp_path, source, *flags, "--check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_extras_and_groups_are_opt_in(
    tmp_path: Path, srv: IndexServer, locks: dict[str, Path]
) -> None:
    for fmt in ("uv.lock", "poetry.lock", "pdm.lock"):
        proc = lock_from(tmp_path, locks[fmt], targets=(WIN,))
        assert proc.returncode == 0, proc.stderr
        assert set(locked(tmp_path, WIN)) == {"dep", "sub", "winonly"}, fmt
    proc = lock_from(tmp_path, locks["uv.lock"], "--extra", "nope", targets=(WIN,))
    assert proc.returncode == 2
    assert "no extra 'nope'" in one_error_line(proc)


def test_check_notices_a_changed_source_lock(
    tmp_path: Path, srv: IndexServer, locks: dict[str, Path]
) -> None:
    source = tmp_path / "uv.lock"
    source.write_bytes(locks["uv.lock"].read_bytes())
    assert lock_from(tmp_path, source, targets=(MAC,)).returncode == 0
    assert lock_from(tmp_path, source, "--check", targets=(MAC,)).returncode == 0
    source.write_text(source.read_text() + "\n# edited\n")
    assert lock_from(tmp_path, source, "--check", targets=(MAC,)).returncode == 1


def test_pipfile_lock_pins_only_what_pipenv_could(
    tmp_path: Path, srv: IndexServer, locks: dict[str, Path]
) -> None:
    source = locks["Pipfile.lock"]
    proc = lock_from(tmp_path, source, "--group", "dev", targets=(MAC, LIN310))
    assert proc.returncode == 0, proc.stderr
    assert {n: v for n, (v, _) in locked(tmp_path, MAC).items()} == {
        "dep": "1.5", "sub": "1.1", "speedup": "1.0", "devtool": "1.0"}  # fmt: skip
    assert locked(tmp_path, LIN310)["linuxonly"][0] == "2.0"
    assert locked(tmp_path, LIN310)["speedup"][1] == SPEEDUP_FILE[LIN310]
    # pipenv ran on Linux: winonly is written as version "*" with no hash — not a pin
    proc = lock_from(tmp_path, source, targets=(WIN, MAC))
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "winonly" in line and WIN in line
    proc = lock_from(tmp_path, source, "--allow-missing", targets=(WIN, MAC))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "wh" / f"pylock.{WIN}.toml").exists()
    assert (tmp_path / "wh" / f"pylock.{MAC}.toml").exists()
    assert "not locked" in proc.stdout + proc.stderr and "winonly" in proc.stdout + proc.stderr


def test_environment_yml_pip_section(tmp_path: Path, srv: IndexServer) -> None:
    env_yml = tmp_path / "environment.yml"
    env_yml.write_text(
        "name: demo\nchannels: [conda-forge]\ndependencies:\n  - python=3.12\n  - pip\n  - pip:\n"
        f"    - --index-url {srv.url}\n    - dep==1.0\n"
        "    - 'winonly==1.0; sys_platform == \"win32\"'\n"
    )
    proc = lock_from(tmp_path, env_yml, targets=(WIN, MAC))
    assert proc.returncode == 0, proc.stderr
    assert {n: v for n, (v, _) in locked(tmp_path, WIN).items()} == {
        "dep": "1.0", "sub": "1.1", "winonly": "1.0"}  # fmt: skip
    assert set(locked(tmp_path, MAC)) == {"dep", "sub"}


def test_bad_inputs_one_line_nothing_written(
    tmp_path: Path, srv: IndexServer, locks: dict[str, Path]
) -> None:
    wh = tmp_path / "wh"
    cases: list[tuple[str, str, int, str]] = []
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "uv.lock").write_text("version = 1\n[[package]\nname = ")
    cases.append(("malformed", str(bad / "uv.lock"), 2, "malformed uv.lock"))
    (bad / "deps.lock").write_text("just some text\n")
    cases.append(("unknown", str(bad / "deps.lock"), 2, "not a lock format"))
    tampered = bad / "tampered" / "uv.lock"
    tampered.parent.mkdir()
    text = locks["uv.lock"].read_text()
    m = re.search(r'dep-1\.5-py3-none-any\.whl", hash = "sha256:([0-9a-f]{64})"', text)
    assert m
    tampered.write_text(text.replace(m.group(1), "0" * 64))
    cases.append(("tampered", str(tampered), 1, "hash mismatch for dep-1.5-py3-none-any.whl"))
    empty = bad / "pylock.toml"
    doc = locks["pylock.toml"].read_text().split("[[packages]]", 1)[0]
    empty.write_text(doc + "packages = []\n")
    cases.append(("empty pylock", str(empty), 2, "no packages"))
    for label, path, code, words in cases:
        proc = lock_from(tmp_path, Path(path), index=srv.url)
        assert proc.returncode == code, (label, proc.stderr)
        assert words in one_error_line(proc), label
        assert not wh.exists() or not list(wh.glob("pylock.*.toml")), label


def pipenv_project(directory: Path, index: str, packages: str, dev_packages: str,
                   extra: str = "") -> Path:  # fmt: skip
    directory.mkdir(parents=True)
    (directory / "Pipfile").write_text(
        f'[[source]]\nurl = "{index}"\nverify_ssl = false\nname = "local"\n\n'
        f"[packages]\n{packages}\n[dev-packages]\n{dev_packages}\n{extra}"
    )
    return directory


def test_pipfile_lock_with_dependency_groups_markers(tmp_path: Path, srv: IndexServer) -> None:
    """Current pipenv writes PEP 751 lock-file markers into Pipfile.lock: with ``use_pylock`` it
    keeps a pylock.toml beside it, and entries it carries over from there (here on ``pipenv
    upgrade`` after Pipfile.lock was removed) keep markers such as
    ``('dev' in dependency_groups) and (sys_platform == 'linux')``. They are evaluated with what
    is selected (``--group dev``, or pipenv's own name ``develop``) and never reach wheelport's
    lock, whose plain-installer readers select no group."""
    project = pipenv_project(
        tmp_path / "pipenv", srv.url, 'dep = "<2"\n',
        'devtool = "<2"\nlinuxonly = {version = "<2", markers = "sys_platform == \'linux\'"}\n'
        'winonly = {version = "*", markers = "sys_platform == \'win32\'"}\n',
        "\n[pipenv]\nuse_pylock = true\n",
    )  # fmt: skip
    home = tmp_path / "home"
    tool([str(BIN / "pipenv"), "lock"], project, home)
    (project / "Pipfile.lock").unlink()
    tool([str(BIN / "pipenv"), "upgrade", "sub"], project, home)
    source = project / "Pipfile.lock"
    develop = json.loads(source.read_text())["develop"]
    # what pipenv wrote (asserted, so that a pipenv that stops writing them fails here)
    assert develop["devtool"]["markers"] == "'dev' in dependency_groups"
    assert develop["linuxonly"]["markers"] == (
        "('dev' in dependency_groups) and (sys_platform == 'linux')"
    )
    recorded = source_versions(source)
    assert recorded["dep"] == "1.5" and recorded["linuxonly"] == "1.0"
    expected = {
        MAC: {"dep": "1.5", "sub": "1.1", "devtool": "1.0"},
        LIN310: {"dep": "1.5", "sub": "1.1", "devtool": "1.0", "linuxonly": "1.0"},
    }
    for name in ("dev", "develop"):
        out = tmp_path / name
        out.mkdir()
        proc = lock_from(out, source, "--group", name, targets=(MAC, LIN310))
        assert proc.returncode == 0, proc.stderr
        for target, versions in expected.items():
            got = locked(out, target)
            assert {n: v for n, (v, _) in got.items()} == versions, (name, target)
            assert all(recorded[n] == v for n, (v, _) in got.items())
        lock = tomllib.loads((out / "wh" / f"pylock.{LIN310}.toml").read_text())
        markers = {p["name"]: p.get("marker") for p in lock["packages"]}
        assert markers["linuxonly"] == 'sys_platform == "linux"'
        assert markers["devtool"] is None
    # Windows needs winonly, which pipenv (on this machine) could not pin: a red cell, as before
    proc = lock_from(tmp_path / "dev", source, "--group", "dev", targets=(WIN,))
    assert proc.returncode == 1
    assert "winonly" in one_error_line(proc)
    # without the group the markers keep the develop entries out
    proc = lock_from(tmp_path, source, targets=(WIN, LIN310))
    assert proc.returncode == 0, proc.stderr
    for target in (WIN, LIN310):
        assert {n: v for n, (v, _) in locked(tmp_path, target).items()} == {
            "dep": "1.5",
            "sub": "1.1",
        }
    proc = lock_from(tmp_path, source, "--group", "docs", targets=(MAC,))
    assert proc.returncode == 2
    assert "no group 'docs'" in one_error_line(proc)


def test_index_url_wins_over_an_unreachable_recorded_index(
    tmp_path: Path, srv: IndexServer
) -> None:
    """A Pipfile.lock names an index that is gone (its server stopped after pipenv locked from
    it): ``--index-url`` replaces it and every pin is kept; without the flag the one error line
    names the recorded index and the flag. The default index, given explicitly, wins too."""
    home = tmp_path / "home"
    with IndexServer() as old:
        for project in srv.projects():
            for f in srv.files_of(project):
                old.add(f.path)
        gone, gone_port = old.url.rstrip("/"), old.port
        pip = pipenv_project(
            tmp_path / "pipenv", old.url, 'dep = "<2"\nspeedup = "<1.1"\n', 'devtool = "<2"\n'
        )
        tool([str(BIN / "pipenv"), "lock"], pip, home)
        env_yml = tmp_path / "environment.yml"
        env_yml.write_text(
            f"dependencies:\n  - pip:\n    - --index-url {old.url}\n    - dep==1.0\n"
        )
    source = pip / "Pipfile.lock"
    assert json.loads(source.read_text())["_meta"]["sources"][0]["url"].rstrip("/") == gone
    recorded = source_versions(source)

    proc = lock_from(tmp_path, source, "--group", "dev", targets=(WIN, LIN310), index=srv.url)
    assert proc.returncode == 0, proc.stderr
    for target in (WIN, LIN310):
        got = locked(tmp_path, target)
        assert {n: v for n, (v, _) in got.items()} == {n: recorded[n] for n in got}
        assert set(got) == {"dep", "sub", "speedup", "devtool"}
        assert got["speedup"][1] == SPEEDUP_FILE[target]
        lock = tomllib.loads((tmp_path / "wh" / f"pylock.{target}.toml").read_text())
        assert {p["index"] for p in lock["packages"]} == {srv.url.rstrip("/")}
    (tmp_path / "yml").mkdir()
    proc = lock_from(tmp_path / "yml", env_yml, targets=(MAC,), index=srv.url)
    assert proc.returncode == 0, proc.stderr
    assert {n: v for n, (v, _) in locked(tmp_path / "yml", MAC).items()} == {
        "dep": "1.0",
        "sub": "1.1",
    }

    none = tmp_path / "none"
    none.mkdir()
    for path in (source, env_yml):
        proc = lock_from(none, path, targets=(WIN,))
        assert proc.returncode == 1
        line = one_error_line(proc)
        assert f"{path.name}'s recorded index {gone} cannot be reached" in line, line
        assert "pass --index-url URL to use another index" in line
        assert not (none / "wh").exists() or not list((none / "wh").glob("pylock.*.toml"))

    # https://pypi.org/simple given by flag is not "no flag": it is asked, not the recorded
    # index (through a proxy that is not there, so nothing leaves this machine)
    proxy = f"http://127.0.0.1:{gone_port}"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(HTTPS_PROXY=proxy, https_proxy=proxy, NO_PROXY="", no_proxy="")
    proc = lock_from(none, source, targets=(WIN,), index="https://pypi.org/simple", env=env)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "https://pypi.org/simple/" in line and gone not in line, line

    # and --help says so
    help_text = " ".join(run_wheelport("lock", "--help", env=scrubbed_env()).stdout.split())
    assert "wins over the config file and over every index a --from lock records" in help_text
