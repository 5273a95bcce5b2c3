"""Local images for several Debian releases, CPythons and architectures (issue 9, items 1–2).

Pure checks (release mapping, ELF glibc needs, fit check, emulation check, labels) run
everywhere. The container tests build their own images with debootstrap — never pulled —
once per recipe hash (session fixtures; a rerun finds them by tag):

- bookworm x86_64 with the pyenv CPythons 3.9, 3.10, 3.12, 3.13 present copied in;
- bullseye x86_64 (no pyenv CPython built on bookworm fits its glibc 2.31);
- bookworm aarch64, under qemu-user-static.

trixie is built only when ``WHEELPORT_TEST_TRIXIE=1`` (its mapping is unit-tested).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from support.runners import RecordingRunner
from wheelport.builders import images
from wheelport.builders.container import engine_env
from wheelport.errors import BuildError, UsageError
from wheelport.process import RunResult

PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
WHEELPORT = Path(sys.executable).parent / "wheelport"
#: the CPythons the bookworm image gets from pyenv (3.11 is Debian's own)
COPIED = ("3.9", "3.10", "3.12", "3.13")


def _pyenv(minor: str) -> Path | None:
    found = sorted(
        (p for p in PYENV.glob(f"{minor}.*") if re.fullmatch(rf"{re.escape(minor)}\.\d+", p.name)),
        key=lambda p: int(p.name.rsplit(".", 1)[1]),
    )
    return found[-1] if found else None


def _interp(**changes: object) -> images.Interpreter:
    values: dict[str, object] = {
        "prefix": Path("/opt/fake/3.12.9"),
        "tag": "cp312",
        "version": "3.12.9",
        "arch": "x86_64",
        "glibc": (2, 35),
        "identity": "0123456789abcdef",
    }
    values.update(changes)
    return images.Interpreter(**values)  # type: ignore[arg-type]


class Recording(RecordingRunner):
    """Records every command and answers from a table (or runs it for real)."""

    def __init__(self, answers: Mapping[str, RunResult] | None = None, real: bool = False):
        super().__init__()
        self.answers = dict(answers or {})
        self.real = real

    def answer(self, argv: list[str], **kw: Any) -> RunResult:
        if self.real:
            return super().answer(argv, **kw)
        for key, answer in self.answers.items():
            if " ".join(argv).startswith(key):
                return answer
        return RunResult(1, "")


# ---------------------------------------------------------------- pure


def test_releases_map_to_their_glibc_policy_and_python() -> None:
    assert images.RELEASES == {
        "bullseye": ("manylinux_2_31", (2, 31), "cp39"),
        "bookworm": ("manylinux_2_36", (2, 36), "cp311"),
        "trixie": ("manylinux_2_41", (2, 41), "cp313"),
    }
    tags = {
        (release, arch): images.local_image_tag(release, arch)
        for release in images.RELEASES
        for arch in ("x86_64", "aarch64")
    }
    assert len(set(tags.values())) == 6
    assert tags["trixie", "aarch64"].startswith("localhost/wheelport-manylinux_2_41_aarch64:")
    assert tags["bookworm", "x86_64"] == images.local_base_tag()
    with pytest.raises(UsageError, match="unknown Debian release 'buster'"):
        images.local_image_tag("buster")
    with pytest.raises(UsageError, match="unknown architecture 'riscv64'"):
        images.local_image_tag("bookworm", "riscv64")


def test_interpreter_glibc_needs_match_objdump() -> None:
    prefix = _pyenv("3.12")
    if prefix is None or shutil.which("objdump") is None:
        pytest.skip("needs a pyenv CPython 3.12 and objdump")
    interp = images.inspect_interpreter(prefix)
    assert (interp.tag, interp.directory) == ("cp312", "cp312-cp312")
    assert interp.version.startswith("3.12.") and interp.arch == os.uname().machine
    files = [prefix / "bin" / "python3.12", *(prefix / "lib").glob("libpython3.12.so.1.0")]
    files += (prefix / "lib" / "python3.12" / "lib-dynload").glob("*.so")
    dump = subprocess.run(
        ["objdump", "-T", *map(str, files)], capture_output=True, text=True, check=True
    ).stdout
    versions = {tuple(map(int, m)) for m in re.findall(r"GLIBC_(\d+)\.(\d+)", dump)}
    assert interp.glibc == max(versions)
    # the identity follows the file list, not bytecode caches
    assert images.inspect_interpreter(prefix).identity == interp.identity


def test_not_a_cpython_prefix_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"not a CPython prefix") as err:
        images.inspect_interpreter(tmp_path)
    assert err.value.return_code == 2


def test_fit_check_names_interpreter_and_both_glibcs() -> None:
    images.check_interpreter(_interp(glibc=(2, 36)), "bookworm", "x86_64")
    images.check_interpreter(_interp(glibc=None), "bullseye", "x86_64")
    with pytest.raises(UsageError) as err:
        images.check_interpreter(_interp(glibc=(2, 39)), "bookworm", "x86_64")
    line = str(err.value)
    assert "\n" not in line and err.value.return_code == 2
    assert "/opt/fake/3.12.9" in line and "CPython 3.12.9" in line
    assert "needs glibc 2.39" in line and "glibc 2.36" in line and "--release trixie" in line
    with pytest.raises(
        UsageError, match=r"built for aarch64, so it cannot go into the bookworm x86_64"
    ):
        images.check_interpreter(_interp(arch="aarch64"), "bookworm", "x86_64")


def test_recipe_hash_covers_the_copied_interpreters() -> None:
    base = images.local_image_tag()
    one = images.local_image_tag(pythons=[_interp()])  # type: ignore[list-item]
    other = images.local_image_tag(pythons=[_interp(identity="fedcba9876543210")])  # type: ignore[list-item]
    assert len({base, one, other}) == 3
    assert one == images.local_image_tag(pythons=[_interp()])  # type: ignore[list-item]
    with pytest.raises(UsageError, match=r"already has cp311 \(bookworm's own python3\)"):
        images.local_image_tag(pythons=[_interp(tag="cp311", version="3.11.7")])  # type: ignore[list-item]


def test_emulation_check_with_a_fake_binfmt_root(tmp_path: Path) -> None:
    binfmt, no_qemu = tmp_path / "binfmt_misc", tmp_path / "bin"
    binfmt.mkdir()
    no_qemu.mkdir()
    (binfmt / "register").write_text("")
    # same architecture: nothing to emulate
    images.emulation_for("x86_64", binfmt_dir=binfmt, host_arch="x86_64", qemu_dir=no_qemu)
    with pytest.raises(BuildError) as err:
        images.emulation_for("aarch64", binfmt_dir=binfmt, host_arch="x86_64", qemu_dir=no_qemu)
    assert str(err.value) == (
        f"cannot run aarch64 containers on this x86_64 machine: no qemu-aarch64 binfmt_misc "
        f"handler in {binfmt} — as root: apt-get install qemu-user-static binfmt-support"
    )
    # installed but disabled, and we may not register: say how to enable it
    (no_qemu / "qemu-aarch64-static").write_text("")
    (binfmt / "qemu-aarch64").write_text("disabled\ninterpreter /usr/libexec/qemu-binfmt/x\n")
    with pytest.raises(
        BuildError, match=r"not enabled — as root: update-binfmts --enable qemu-aarch64"
    ):
        images.emulation_for(
            "aarch64", binfmt_dir=binfmt, host_arch="x86_64", qemu_dir=no_qemu, register=False
        )
    (binfmt / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/x\n")
    images.emulation_for("aarch64", binfmt_dir=binfmt, host_arch="x86_64", qemu_dir=no_qemu)


def test_local_images_come_from_labels() -> None:
    inspect = [
        {
            "Id": "aaa",
            "RepoTags": ["localhost/mine:1", "localhost/wheelport-manylinux_2_31_x86_64:abc"],
            "Labels": {
                "io.wheelport.policy": "manylinux_2_31",
                "io.wheelport.arch": "x86_64",
                "io.wheelport.pythons": "cp39",
                "io.wheelport.recipe": "abc",
            },
        },
        {"Id": "bbb", "RepoTags": ["localhost/other:1"], "Config": {"Labels": {}}},
        {
            "Id": "ccc",
            "RepoTags": ["localhost/wheelport-manylinux_2_36_x86_64:def"],
            "Labels": {
                "io.wheelport.policy": "manylinux_2_36",
                "io.wheelport.arch": "x86_64",
                "io.wheelport.pythons": "cp311",
                "io.wheelport.recipe": "def",
                "io.wheelport.recipe-files": images.recipe_files_digest(),
            },
        },
    ]
    runner = Recording(
        {
            "podman images": RunResult(0, "aaa\nbbb\naaa\nccc\n"),
            "podman image inspect": RunResult(0, json.dumps(inspect)),
        }
    )
    assert images.local_images("podman", runner) == [
        # no recipe-files label: an older wheelport's image
        images.LocalImage(
            "localhost/wheelport-manylinux_2_31_x86_64:abc", "manylinux_2_31", "x86_64", ("cp39",),
            current=False,
        ),
        images.LocalImage(
            "localhost/wheelport-manylinux_2_36_x86_64:def", "manylinux_2_36", "x86_64", ("cp311",)
        ),
    ]  # fmt: skip
    assert runner.calls[1] == ["podman", "image", "inspect", "aaa", "bbb", "ccc"]
    assert images.local_images("podman", Recording({"podman images": RunResult(0, "")})) == []


def test_present_image_is_not_rebuilt() -> None:
    runner = Recording({"podman image exists": RunResult(0, "")})
    image = images.ensure_local_image("podman", release="bullseye", runner=runner)
    assert image.tag == images.local_image_tag("bullseye")
    assert (image.policy, image.arch, image.pythons) == ("manylinux_2_31", "x86_64", ("cp39",))
    assert runner.calls == [["podman", "image", "exists", image.tag]]


# ---------------------------------------------------------------- real podman and debootstrap


def _require_builder() -> None:
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        pytest.skip("podman/debootstrap are not installed (run .ci/setup-containers.sh)")
    if os.geteuid() != 0:
        pytest.skip("building local images needs root (debootstrap)")


def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, env={**os.environ, **engine_env()}
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WHEELPORT), *args], capture_output=True, text=True, env={**os.environ, **engine_env()}
    )


def _build(*args: str) -> dict[str, object]:
    started = time.monotonic()
    proc = _cli("image", "build-local", *args, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    print(f"image build-local {' '.join(args)}: {time.monotonic() - started:.0f} s")
    return dict(out)


def _copied_args() -> list[str]:
    args = []
    for minor in COPIED:
        prefix = _pyenv(minor)
        if prefix is not None:
            args += ["--python", str(prefix)]
    return args


@pytest.fixture(scope="session")
def bookworm_pythons() -> dict[str, object]:
    """bookworm x86_64 with the pyenv CPythons present copied in (built once per hash)."""
    _require_builder()
    if not _copied_args():
        pytest.skip(f"no pyenv CPython {', '.join(COPIED)} under {PYENV}")
    return _build(*_copied_args())


@pytest.fixture(scope="session")
def bookworm_arm64() -> dict[str, object]:
    _require_builder()
    images.emulation_for("aarch64")  # registers qemu-user-static when it can
    return _build("--arch", "aarch64")


@pytest.mark.container
@pytest.mark.slow
def test_bookworm_image_serves_cp39_to_cp313(bookworm_pythons: dict[str, object]) -> None:
    expected = ["cp39", "cp310", "cp311", "cp312", "cp313"]
    present = ["cp311", *(f"cp3{m[2:]}" for m in COPIED if _pyenv(m) is not None)]
    if sorted(present) != sorted(expected):
        pytest.skip(f"pyenv has only {present}")
    assert bookworm_pythons["pythons"] == expected
    proc = _cli("image", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {entry["tag"]: entry for entry in json.loads(proc.stdout)}
    assert listed[str(bookworm_pythons["image"])] == {
        "tag": bookworm_pythons["image"],
        "policy": "manylinux_2_36",
        "arch": "x86_64",
        "pythons": expected,
    }
    for tag in expected:
        run = _podman(
            "run", "--rm", "--network=none", str(bookworm_pythons["image"]),
            f"/opt/python/{tag}-{tag}/bin/python", "-c",
            "import ssl, sqlite3, zlib, ctypes, build, sys; print(sys.version_info[:2])",
        )  # fmt: skip
        assert run.returncode == 0, (tag, run.stderr)
        assert run.stdout.strip() == f"(3, {tag[3:]})", tag
    # what cibuildwheel looks for: pip beside each python, auditwheel and patchelf on PATH
    tools = _podman(
        "run", "--rm", "--network=none", str(bookworm_pythons["image"]), "sh", "-c",
        "for t in /opt/python/*/bin; do test -x $t/pip || echo no pip in $t; done;"
        " auditwheel --version && patchelf --version",
    )  # fmt: skip
    assert tools.returncode == 0 and "no pip" not in tools.stdout, tools.stdout + tools.stderr


@pytest.mark.container
@pytest.mark.slow
def test_rerun_builds_nothing(bookworm_pythons: dict[str, object]) -> None:
    started = time.monotonic()
    again = _build(*_copied_args())
    assert again["image"] == bookworm_pythons["image"]
    assert time.monotonic() - started < 30
    recording = Recording(real=True)
    prefixes = [Path(a) for a in _copied_args() if a != "--python"]
    image = images.ensure_local_image("podman", pythons=prefixes, runner=recording)
    assert image.tag == bookworm_pythons["image"]
    assert recording.calls == [["podman", "image", "exists", image.tag]]


@pytest.mark.container
def test_interpreter_needing_a_newer_glibc_is_refused() -> None:
    prefix = _pyenv("3.12")
    if prefix is None or shutil.which("podman") is None:
        pytest.skip("needs podman and a pyenv CPython 3.12")
    needs = images.inspect_interpreter(prefix).glibc
    if needs is None or needs <= (2, 31):
        pytest.skip(f"{prefix} fits bullseye's glibc 2.31 (the pure check covers the refusal)")
    proc = _cli("image", "build-local", "--release", "bullseye", "--python", str(prefix))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert str(prefix) in lines[0] and f"needs glibc {needs[0]}.{needs[1]}" in lines[0]
    assert "glibc 2.31" in lines[0] or "manylinux_2_31" in lines[0]


@pytest.mark.container
@pytest.mark.slow
def test_bullseye_image_has_its_own_cpython_only() -> None:
    _require_builder()
    out = _build("--release", "bullseye")
    assert (out["policy"], out["arch"], out["pythons"]) == ("manylinux_2_31", "x86_64", ["cp39"])
    run = _podman(
        "run", "--rm", "--network=none", str(out["image"]), "sh", "-c",
        "ldd --version | head -n 1; /opt/python/cp39-cp39/bin/python -c"
        " 'import ssl, sqlite3, build, sys; print(sys.version_info[:2])'",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "2.31" in run.stdout.splitlines()[0] and run.stdout.splitlines()[1] == "(3, 9)"


@pytest.mark.container
@pytest.mark.slow
@pytest.mark.timeout(3600)  # a fresh build runs debootstrap's second stage and pip under qemu
def test_arm64_image_runs_emulated(bookworm_arm64: dict[str, object]) -> None:
    assert (bookworm_arm64["policy"], bookworm_arm64["arch"]) == ("manylinux_2_36", "aarch64")
    assert bookworm_arm64["pythons"] == ["cp311"]
    image = str(bookworm_arm64["image"])
    assert _podman("run", "--rm", "--arch", "arm64", image, "uname", "-m").stdout.strip() == (
        "aarch64"
    )
    machine = _podman(
        "run", "--rm", "--arch", "arm64", "--network=none", image,
        "/opt/python/cp311-cp311/bin/python", "-c",
        "import platform, build, ssl; print(platform.machine())",
    )  # fmt: skip
    assert machine.returncode == 0, machine.stderr
    assert machine.stdout.strip() == "aarch64"


@pytest.mark.container
@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("WHEELPORT_TEST_TRIXIE") != "1",
    reason="set WHEELPORT_TEST_TRIXIE=1 to build trixie",
)
def test_trixie_image() -> None:
    _require_builder()
    out = _build("--release", "trixie")
    assert (out["policy"], out["pythons"]) == ("manylinux_2_41", ["cp313"])
