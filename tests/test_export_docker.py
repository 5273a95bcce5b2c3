"""``docker``: a build context per target, and a real podman build with the network off."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from support import bundled_pip_wheel
from support.dists import make_wheel
from support.server import IndexServer
from wheelport.config import build_config
from wheelport.errors import UsageError
from wheelport.export.docker import (
    DEFAULT_TEMPLATE,
    parse_copy,
    render_containerfile,
    write_context,
)
from wheelport.sync import sync
from wheelport.wheelhouse import sha256_file

PYENV = os.environ.get("PYENV_ROOT", "/root/.pyenv")
LINUX = "cp311-manylinux_2_17_x86_64"
WIN = "cp312-win_amd64"


def _pip_wheel() -> Path:
    found = bundled_pip_wheel()
    if found is None:
        pytest.skip("no bundled pip wheel (ensurepip) to put in the index")
    return Path(found)


@pytest.fixture
def wheelhouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Locks for a manylinux CPython 3.11 and for Windows, with pip carried per target."""
    monkeypatch.setenv("WHEELPORT_CACHE_DIR", str(tmp_path / "cache"))
    dists = tmp_path / "dists"
    with IndexServer() as index:
        index.add(make_wheel(dists, "alpha", "1.0", deps=["beta"]))
        index.add(make_wheel(dists, "beta", "2.0", tag="cp311-cp311-manylinux_2_17_x86_64",
                             files={"beta/__init__.py": "__version__ = '2.0'\nPLATFORM = 'linux'\n"}))  # fmt: skip
        index.add(make_wheel(dists, "beta", "2.0", tag="cp312-cp312-win_amd64"))
        index.add(_pip_wheel())
        config = build_config(
            directory=tmp_path, requirements=["alpha"], index_urls=[index.url],
            targets=[LINUX, WIN], output=tmp_path / "wh",
        )  # fmt: skip
        sync(config)
    return tmp_path / "wh"


def test_containerfile_is_multi_stage_offline_and_hashed() -> None:
    text = render_containerfile(
        DEFAULT_TEMPLATE, base_image="localhost/base:1", target=LINUX, python="python3",
        venv="/srv/venv", pip_wheel="pip-25.0-py3-none-any.whl", app=[("app/0-src/", "/srv/app/")],
        workdir="/srv/app", cmd=["python", "-m", "alpha"],
    )  # fmt: skip
    assert text.count("FROM localhost/base:1") == 2
    assert "--no-index" in text and "--require-hashes" in text and "--isolated" in text
    assert "COPY --from=wheelport-install /srv/venv /srv/venv" in text
    assert "python3 -m venv --without-pip /srv/venv" in text
    assert (
        "/srv/venv/bin/python /tmp/wheelport/wheels/pip-25.0-py3-none-any.whl/pip install" in text
    )
    # the wheels are copied in the first stage only
    final = text.split("FROM localhost/base:1\n", 1)[1]
    assert "wheels" not in final
    assert "COPY app/0-src/ /srv/app/" in final and 'CMD ["python", "-m", "alpha"]' in final
    with pytest.raises(UsageError):
        render_containerfile(DEFAULT_TEMPLATE, base_image="x; rm -rf /", target=LINUX, python="python3",
                             venv="/opt/venv", pip_wheel=None)  # fmt: skip


def test_context_holds_exactly_the_target_lock(wheelhouse: Path, tmp_path: Path) -> None:
    app = tmp_path / "src"
    app.mkdir()
    (app / "main.py").write_text("print('hi')\n")
    ctx = write_context(wheelhouse, tmp_path / "ctx", base_image="python:3.12-windowsservercore",
                        target=WIN, app=[parse_copy(f"{app}:/app/")])  # fmt: skip
    wheels = sorted(p.name for p in (ctx.directory / "wheels").iterdir())
    pip = [w for w in wheels if w.startswith("pip-")]
    assert wheels == sorted(
        ["alpha-1.0-py3-none-any.whl", "beta-2.0-cp312-cp312-win_amd64.whl", *pip]
    )
    assert len(pip) == 1
    reqs = (ctx.directory / "requirements.txt").read_text().splitlines()
    beta_sha = sha256_file(wheelhouse / "wheels" / "beta-2.0-cp312-cp312-win_amd64.whl")
    assert f"beta==2.0 --hash=sha256:{beta_sha}" in reqs
    assert len(reqs) == 3 and all("--hash=sha256:" in r for r in reqs)
    assert (ctx.directory / f"pylock.{WIN}.toml").read_bytes() == (
        wheelhouse / f"pylock.{WIN}.toml"
    ).read_bytes()
    assert (ctx.directory / "app" / "0-src" / "main.py").is_file()
    assert "COPY app/0-src/ /app/" in ctx.containerfile.read_text()
    assert ctx.target == WIN and ("beta", "2.0") in ctx.packages

    with pytest.raises(UsageError, match="no lock for cp313-win_amd64"):
        write_context(wheelhouse, tmp_path / "ctx2", base_image="b", target="cp313-win_amd64")
    with pytest.raises(UsageError, match="not empty"):
        write_context(wheelhouse, tmp_path / "ctx", base_image="b", target=WIN)
    with pytest.raises(UsageError, match="--copy"):
        parse_copy("only-a-source")


def _podman_ready() -> str | None:
    if shutil.which("podman") is None:
        return None
    from wheelport.builders.container import engine_env

    env = {**os.environ, **engine_env()}
    ok = subprocess.run(["podman", "info"], capture_output=True, env=env).returncode == 0
    return "podman" if ok else None


@pytest.mark.container
@pytest.mark.slow
def test_podman_build_offline_then_import(wheelhouse: Path, tmp_path: Path) -> None:
    engine = _podman_ready()
    if engine is None:
        pytest.skip("podman is not usable here")
    from wheelport.builders.container import engine_env
    from wheelport.builders.images import ensure_local_base_image
    from wheelport.export.docker import build_image

    base = ensure_local_base_image(engine)
    # no -t: the target comes from the base image's Python (CPython 3.11, glibc 2.36)
    ctx = write_context(wheelhouse, tmp_path / "ctx", base_image=base, engine=engine)
    assert ctx.target == LINUX
    tag = f"localhost/wheelport-test-app:{uuid.uuid4().hex[:12]}"
    env = {**os.environ, **engine_env()}
    try:
        build_image(ctx, tag=tag, engine=engine, log=tmp_path / "build.log")
        run = subprocess.run(
            [engine, "run", "--rm", "--network=none", tag, "python", "-c",
             "import alpha, beta, sys; print(alpha.__version__, beta.PLATFORM, sys.prefix)"],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == ["1.0", "linux", "/opt/venv"]
        gone = subprocess.run([engine, "run", "--rm", "--network=none", tag, "test", "-e", "/tmp/wheelport"],
                              capture_output=True, env=env)  # fmt: skip
        assert gone.returncode == 1  # the wheels stayed in the build stage
    finally:
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, env=env)


def test_cli_docker_writes_context(
    wheelhouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wheelport.cli import cli, main
    from wheelport.export.commands import COMMANDS

    for command in COMMANDS:
        if command.name not in cli.commands:
            cli.add_command(command)
    ctx = tmp_path / "ctx"
    main(["docker", "-w", str(wheelhouse), "-t", LINUX, "--base-image", "localhost/img:1",
          "-o", str(ctx), "--cmd", "python -m alpha", "--json"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert data["target"] == LINUX and data["image"] is None
    assert 'CMD ["python", "-m", "alpha"]' in (ctx / "Containerfile").read_text()
    with pytest.raises(SystemExit) as info:
        main(
            [
                "docker",
                "-w",
                str(wheelhouse),
                "-t",
                "cp312-nonsense",
                "--base-image",
                "b",
                "-o",
                str(tmp_path / "c2"),
            ]
        )
    assert info.value.code == 2
