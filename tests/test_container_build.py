"""Container builds with cibuildwheel: images per policy, hermetic builds, clear failures.

The unit tests use fake runners (no engine). The ``container`` tests use real podman and the
local manylinux_2_36 base image, which they build when missing (cached by recipe hash: only
the first run pays about a minute and a half).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.utils import parse_wheel_filename

from support import scrubbed_env
from support.dists import make_backend_wheel, make_sdist
from support.public import PublicIndex
from support.runners import RecordingRunner
from wheelport import resources
from wheelport.builders import container, images
from wheelport.builders.container import build_in_container
from wheelport.errors import BuildError
from wheelport.process import RunResult, StrPath
from wheelport.targets import parse_target

PY311 = Path("/root/.pyenv/versions/3.11.7/bin/python")
LOCAL_TARGET = "cp311-manylinux_2_36_x86_64"


class FakeRunner(RecordingRunner):
    """Records every command; answers with a fixed result (and writes the log like the real one)."""

    def __init__(self, returncode: int = 0, output: str = "", exists: bool = True) -> None:
        super().__init__()
        self.returncode = returncode
        self.output = output
        self.exists = exists

    def answer(self, argv: list[str], *, log: StrPath | None, **kw: Any) -> RunResult:
        if argv[1:3] in (["image", "exists"], ["image", "inspect"]):
            return RunResult(0 if self.exists else 1, "")
        if log is not None:
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            Path(log).write_text(self.output)
        return RunResult(self.returncode, self.output)


# ---------------------------------------------------------------- pure decisions, fake runner


def test_identifier_drops_policy_and_keeps_abi() -> None:
    assert container.cibw_identifier(parse_target("cp311-manylinux_2_36_x86_64")) == (
        "cp311-manylinux_x86_64"
    )
    assert container.cibw_identifier(parse_target("cp313t-musllinux_1_2_aarch64")) == (
        "cp313t-musllinux_aarch64"
    )
    with pytest.raises(BuildError, match="cp312-win_amd64"):
        container.cibw_identifier(parse_target("cp312-win_amd64"))


def test_environment_is_hermetic(tmp_path: Path) -> None:
    target = parse_target("cp310-musllinux_1_2_aarch64")
    host_env = {
        "PATH": "/usr/bin",
        "PIP_FIND_LINKS": "/opt/wheels",
        "CIBW_SKIP": "*",
        "UV_INDEX_URL": "http://x",
    }
    env = container.cibw_env(
        target, image="img:1", engine="podman", deps_dir=tmp_path, base_env=host_env
    )
    assert "PIP_FIND_LINKS" not in env and "CIBW_SKIP" not in env and "UV_INDEX_URL" not in env
    assert env["CIBW_BUILD"] == "cp310-musllinux_aarch64"
    assert env["CIBW_MUSLLINUX_AARCH64_IMAGE"] == "img:1"
    assert env["CIBW_ARCHS_LINUX"] == "aarch64"
    engine = env["CIBW_CONTAINER_ENGINE"]
    assert engine.startswith("podman;") and "--network=none" in engine
    assert f"--volume={tmp_path}:/wheelport-deps:ro" in engine
    assert "disable_host_mount: true" in engine
    assert "PIP_NO_INDEX=1" in env["CIBW_ENVIRONMENT"]
    assert "PIP_FIND_LINKS=/wheelport-deps" in env["CIBW_ENVIRONMENT"]
    assert env["CONTAINERS_CONF"].endswith("wheelport/resources/containers.conf")
    assert Path(env["CONTAINERS_CONF"]).is_file()


def test_detect_engine_prefers_podman() -> None:
    assert container.detect_engine({"podman": "/usr/bin/podman", "docker": "/d"}) == "podman"
    assert container.detect_engine({"podman": None, "docker": "/d"}) == "docker"
    assert container.detect_engine({}) is None


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (2, "configuration"),
        (3, "nothing to build"),
        (5, "pure-Python wheel"),
        (7, "engine is too old"),
        (10, "produced no wheel"),
        (42, "exited with code 42"),
    ],
)
def test_exit_codes_map_to_messages(tmp_path: Path, code: int, words: str) -> None:
    sdist = make_sdist(tmp_path / "src", "fastadd", "1.0", c_extension=True)
    runner = FakeRunner(returncode=code, output="some cibuildwheel output\n")
    with pytest.raises(BuildError) as info:
        build_in_container(
            sdist,
            parse_target("cp312-manylinux_2_28_aarch64"),
            image="img",
            deps_dir=tmp_path,
            out_dir=tmp_path / "out",
            log_dir=tmp_path / "logs",
            engine="podman",
            runner=runner,
        )
    log = tmp_path / "logs" / "fastadd-1.0.cp312-manylinux_2_28_aarch64.log"
    message = str(info.value)
    assert words in message
    assert str(log) in message and log.read_text() == "some cibuildwheel output\n"
    assert f"exit {code};" in message
    argv, env = runner.calls[0], runner.envs[0]
    assert argv[1:3] == ["-m", "cibuildwheel"] and argv[-1] == str(sdist)
    config = Path(argv[argv.index("--config-file") + 1])
    assert config.is_absolute()
    assert env["CIBW_BUILD"] == "cp312-manylinux_aarch64"


def test_missing_build_dependency_is_named_from_the_log(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "src", "fastadd", "1.0", c_extension=True)
    log = (
        "ERROR: Could not find a version that satisfies the requirement tinybackend (from versions: none)\n"
        "ERROR: No matching distribution found for tinybackend\n"
    )
    with pytest.raises(BuildError, match="build dependency tinybackend is not in the wheelhouse"):
        build_in_container(
            sdist,
            parse_target(LOCAL_TARGET),
            image="img",
            deps_dir=tmp_path,
            out_dir=tmp_path / "out",
            log_dir=tmp_path / "logs",
            engine="podman",
            runner=FakeRunner(returncode=1, output=log),
        )
    assert (
        container.missing_build_dependency(
            "  × No solution found\n  ╰─▶ Because cython was not found in the provided package locations"
        )
        == "cython"
    )
    assert container.missing_build_dependency("error: command 'gcc' failed") is None


def test_policy_images_come_from_cibuildwheel() -> None:
    pinned = images.pinned_images()
    image = images.policy_image(parse_target("cp312-manylinux_2_28_aarch64"))
    assert image == pinned["aarch64"]["manylinux_2_28"]
    assert image.startswith("quay.io/pypa/manylinux_2_28_aarch64@sha256:")
    assert images.policy_image(parse_target("cp39-manylinux2014_x86_64")).startswith(
        "quay.io/pypa/manylinux2014_x86_64@"
    )
    assert images.policy_image(parse_target("cp313-musllinux_1_2_x86_64")).startswith(
        "quay.io/pypa/musllinux_1_2_x86_64@"
    )
    assert images.policy_image(parse_target("cp312-manylinux_2_34_x86_64")).startswith(
        "quay.io/pypa/manylinux_2_34_x86_64@"
    )
    overrides = {"manylinux_2_28": "my/img:1", "manylinux_2_28_x86_64": "my/img:x86"}
    assert (
        images.policy_image(parse_target("cp312-manylinux_2_28_aarch64"), overrides) == "my/img:1"
    )
    assert images.policy_image(parse_target("cp312-manylinux_2_28_x86_64"), overrides) == (
        "my/img:x86"
    )


def test_local_policy_and_missing_policies() -> None:
    local = images.policy_image(parse_target(LOCAL_TARGET))
    assert local == images.local_base_tag()
    assert local.startswith("localhost/wheelport-manylinux_2_36_x86_64:")
    assert images.is_local_base(local)
    with pytest.raises(BuildError, match=r"only CPython 3\.11"):
        images.policy_image(parse_target("cp312-manylinux_2_36_x86_64"))
    with pytest.raises(BuildError, match="no container image for policy manylinux_2_31"):
        images.policy_image(parse_target("cp312-manylinux_2_31_x86_64"))
    with pytest.raises(BuildError, match="manylinux_2_36"):
        images.policy_image(parse_target("cp311-manylinux_2_36_aarch64"))
    with pytest.raises(BuildError, match="no manylinux/musllinux policy"):
        images.policy_image(parse_target("cp311-macosx_11_0_arm64"))


def test_local_base_tag_follows_the_recipe(tmp_path: Path) -> None:
    resources.copy_to(tmp_path, images.LOCAL_BASE_RECIPE)
    assert images.local_base_tag(tmp_path) == images.local_base_tag()
    with (tmp_path / "local-base.packages").open("a") as fh:
        fh.write("libffi-dev\n")
    assert images.local_base_tag(tmp_path) != images.local_base_tag()


def test_existing_local_base_is_not_rebuilt_and_can_be_tagged() -> None:
    runner = FakeRunner(exists=True)
    tag = images.ensure_local_base_image("podman", runner=runner, extra_tag="localhost/mine:1")
    assert tag == images.local_base_tag()
    assert runner.calls == [
        ["podman", "image", "exists", tag],
        ["podman", "tag", tag, "localhost/mine:1"],
    ]


def test_builder_image_is_cached_by_content(tmp_path: Path) -> None:
    runner = FakeRunner(exists=False)
    tag = images.ensure_builder_image(
        "base:1", ["libxslt1-dev", "libxml2-dev"], "podman", runner=runner, log_dir=tmp_path
    )
    builds = [argv for argv in runner.calls if argv[1] == "build"]
    assert len(builds) == 1 and "--network=host" in builds[0]
    assert (
        tag.startswith("localhost/wheelport-builder:")
        and builds[0][builds[0].index("-t") + 1] == tag
    )
    # same set in another order: same tag; another base: another tag
    present = FakeRunner(exists=True)
    assert (
        images.ensure_builder_image("base:1", ["libxml2-dev", "libxslt1-dev"], runner=present)
        == tag
    )
    assert not [argv for argv in present.calls if argv[1] == "build"]
    assert images.ensure_builder_image("base:2", ["libxml2-dev"], runner=present) != tag
    assert images.ensure_builder_image("base:1", [], runner=present) == "base:1"
    with pytest.raises(BuildError, match="invalid system package"):
        images.ensure_builder_image("base:1", ["libxml2-dev; rm -rf /"], runner=present)
    text = images.builder_containerfile(
        "base:1", ["libxml2-dev"], "FROM @BASE_IMAGE@\nRUN @INSTALL@\n"
    )
    assert (
        text.startswith("FROM base:1\n")
        and "apt-get install -y --no-install-recommends libxml2-dev" in text
    )


# ---------------------------------------------------------------- real podman


def _require_podman() -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (run .ci/setup-containers.sh)")


@pytest.fixture(scope="session")
def local_base_image() -> str:
    """The local manylinux_2_36 base image, built when missing (cached by recipe hash)."""
    _require_podman()
    return images.ensure_local_base_image("podman")


def _offline_venv(tmp_path: Path, wheel: Path) -> Path:
    """A fresh CPython 3.11 venv with ``wheel`` installed from a local file only."""
    if not PY311.exists():
        pytest.skip(f"{PY311} is missing")
    env_dir = tmp_path / "venv"
    subprocess.run([str(PY311), "-m", "venv", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--isolated",
            "--no-index",
            "-q",
            "--find-links",
            str(wheel.parent),
            str(wheel),
        ],
        check=True,
        env=clean,
    )
    return python


@pytest.mark.container
def test_c_extension_builds_offline_and_imports(tmp_path: Path, local_base_image: str) -> None:
    target = parse_target(LOCAL_TARGET)
    sdist = make_sdist(tmp_path / "src", "fastadd", "1.0", c_extension=True)
    deps = tmp_path / "deps"
    make_backend_wheel(deps)
    wheel = build_in_container(
        sdist,
        target,
        image=local_base_image,
        deps_dir=deps,
        out_dir=tmp_path / "wheels",
        log_dir=tmp_path / "logs",
        engine="podman",
    )
    assert wheel.parent == tmp_path / "wheels" and wheel.is_file()
    _, _, _, tags = parse_wheel_filename(wheel.name)
    platforms = {tag.platform for tag in tags}
    assert any(p.startswith("manylinux_2_") for p in platforms)
    assert all(p.startswith("manylinux") and p.endswith("_x86_64") for p in platforms)
    assert all(target.supports(tag) for tag in tags)  # manylinux_2_36 or lower
    log = (tmp_path / "logs" / f"fastadd-1.0.{LOCAL_TARGET}.log").read_text()
    assert "create_args: ('--network=none'" in log
    python = _offline_venv(tmp_path, wheel)
    out = subprocess.run(
        [str(python), "-c", "from fastadd._speedup import add; print(add(2, 3))"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "5"


@pytest.mark.container
def test_missing_build_dependency_fails_naming_it(tmp_path: Path, local_base_image: str) -> None:
    sdist = make_sdist(
        tmp_path / "src",
        "fastadd",
        "1.0",
        c_extension=True,
        backend_requires=["tinybackend", "wheelport-absent-dep>=1"],
    )
    with pytest.raises(BuildError) as info:
        _build_local(sdist, tmp_path, local_base_image)
    assert "build dependency wheelport-absent-dep is not in the wheelhouse" in str(info.value)
    assert not list((tmp_path / "wheels").glob("*.whl"))


@pytest.mark.container
def test_local_base_image_is_reused(local_base_image: str) -> None:
    recording = RecordingRunner()  # runs the commands for real
    start = time.monotonic()
    assert images.ensure_local_base_image("podman", runner=recording) == local_base_image
    assert time.monotonic() - start < 10
    assert recording.calls == [["podman", "image", "exists", local_base_image]]
    ident = images.image_id("podman", local_base_image)
    assert ident is not None and re.fullmatch(r"sha256:[0-9a-f]{64}", ident)
    assert images.image_id("podman", "localhost/wheelport-no-such-image:0") is None


@pytest.mark.container
def test_pure_python_sdist_is_refused(tmp_path: Path, local_base_image: str) -> None:
    sdist = make_sdist(tmp_path / "src", "plainpkg", "1.0")
    with pytest.raises(BuildError, match="pure-Python wheel") as info:
        _build_local(sdist, tmp_path, local_base_image)
    assert "exit 5" in str(info.value)


def _build_local(sdist: Path, tmp_path: Path, image: str) -> Path:
    """build_in_container on the local base image with only tinybackend in the deps dir."""
    deps = tmp_path / "deps"
    make_backend_wheel(deps)
    return build_in_container(
        sdist,
        parse_target(LOCAL_TARGET),
        image=image,
        deps_dir=deps,
        out_dir=tmp_path / "wheels",
        log_dir=tmp_path / "logs",
        engine="podman",
    )


def _download_sdist(index: PublicIndex, project: str, version: str, directory: Path) -> Path:
    """The sdist of ``project==version`` as the public index view lists it, sha256 checked.

    Not ``pip download --no-binary``: that would prepare metadata and build the build
    dependencies from source too.
    """
    page = index.page(project)
    assert page is not None, index.problems()
    (entry,) = [f for f in page["files"] if f["filename"] == f"{project}-{version}.tar.gz"]
    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    with urllib.request.urlopen(entry["url"], context=context, timeout=300) as resp:
        data = resp.read()
    assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / entry["filename"]
    path.write_bytes(data)
    return path


LXML_DOC = "<root><item n='1'>a</item><item n='2'>b</item></root>"


@pytest.mark.container
@pytest.mark.network
@pytest.mark.slow
def test_lxml_from_source_in_derived_image(
    tmp_path: Path, local_base_image: str, public_index: PublicIndex
) -> None:
    clean = scrubbed_env()  # no pip.conf (its extra indexes) and no PIP_* of this machine
    pip = [
        sys.executable,
        "-m",
        "pip",
        "--isolated",
        "download",
        "-q",
        "--index-url",
        public_index.url,
        *(["--cert", os.environ["SSL_CERT_FILE"]] if os.environ.get("SSL_CERT_FILE") else []),
    ]
    src, deps = tmp_path / "src", tmp_path / "deps"
    sdist = _download_sdist(public_index, "lxml", "6.1.3", src)
    with tarfile.open(sdist) as tar:
        member = next(
            m
            for m in tar.getmembers()
            if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml")
        )
        extracted = tar.extractfile(member)
        assert extracted is not None
        requires = tomllib.loads(extracted.read().decode())["build-system"]["requires"]
    # lxml's build-system.requires (setuptools, Cython) as wheels for the build's Python 3.11
    subprocess.run(
        [
            *pip,
            "--only-binary",
            ":all:",
            "--python-version",
            "3.11",
            "--platform",
            "manylinux_2_36_x86_64",
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "linux_x86_64",
            *requires,
            "wheel",
            "-d",
            str(deps),
        ],
        check=True,
        env=clean,
    )
    image = images.ensure_builder_image(
        local_base_image, ["libxml2-dev", "libxslt1-dev"], "podman", log_dir=tmp_path
    )
    assert image != local_base_image
    wheel = build_in_container(
        sdist,
        parse_target(LOCAL_TARGET),
        image=image,
        deps_dir=deps,
        out_dir=tmp_path / "wheels",
        log_dir=tmp_path / "logs",
        engine="podman",
    )
    assert wheel.name.startswith("lxml-") and "manylinux_2_" in wheel.name
    # the sdist's [tool.cibuildwheel] (static libxml2 download) did not apply
    log = next((tmp_path / "logs").glob("lxml-*.log")).read_text()
    assert "STATIC_DEPS" not in log.split("Build options", 1)[-1].split("Here we go", 1)[0]
    python = _offline_venv(tmp_path, wheel)
    out = subprocess.run(
        [
            str(python),
            "-c",
            f"from lxml import etree; r = etree.fromstring({LXML_DOC!r}); "
            "print(','.join(i.get('n') + i.text for i in r.iter('item')))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "1a,2b"
