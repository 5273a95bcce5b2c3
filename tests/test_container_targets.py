"""Linux targets from local images: which image builds a target, why a target has none, and
one build per interpreter (or one for all, abi3) instead of one per target.

The unit tests are pure decisions (no engine). The ``container`` tests use real podman and
build their images with :func:`images.ensure_local_image` (shared by tag, built once).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

from support import can_unshare, run_wheelport, scrubbed_env
from support.dists import make_sdist
from support.public import PublicIndex
from support.server import IndexServer
from wheelport.builders import images
from wheelport.builders.container import engine_env, failed_pull
from wheelport.builders.images import LocalImage
from wheelport.builders.plan import ImageSlot, group_container_builds, read_sdist_info
from wheelport.builders.stage import Builders, default_builders
from wheelport.config import Config, SourcedRequirement
from wheelport.sync import SyncResult, sync
from wheelport.targets import Target, parse_target

PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
BOOKWORM = LocalImage("localhost/wheelport-manylinux_2_36_x86_64:b", "manylinux_2_36", "x86_64",
                      ("cp311", "cp312"))  # fmt: skip
BULLSEYE = LocalImage("localhost/wheelport-manylinux_2_31_x86_64:a", "manylinux_2_31", "x86_64",
                      ("cp39",))  # fmt: skip
ARM = LocalImage("localhost/wheelport-manylinux_2_36_aarch64:c", "manylinux_2_36", "aarch64",
                 ("cp311",))  # fmt: skip
PINNED = {"x86_64": {"manylinux_2_28": "quay.io/pypa/manylinux_2_28_x86_64@sha256:0"}}


def t(text: str) -> Target:
    return parse_target(text)


# ---------------------------------------------------------------- pure decisions


def test_override_beats_local_beats_pinned() -> None:
    local = [BOOKWORM, BULLSEYE, ARM]
    # a local image serves a newer policy: glibc 2.36 <= 2.39
    choice = images.choose_image(t("cp312-manylinux_2_39_x86_64"), local=local, pinned=PINNED)
    assert (choice.source, choice.image) == ("local", BOOKWORM.tag)
    # the highest policy that fits wins; bullseye is the only one at <= 2_31 (and has cp39)
    choice = images.choose_image(t("cp39-manylinux_2_36_x86_64"), local=local, pinned=PINNED)
    assert choice.image == BULLSEYE.tag  # bookworm lacks cp39
    assert images.choose_image(t("cp311-manylinux_2_41_x86_64"), local=local).image == BOOKWORM.tag
    # 2_28: no local image is old enough, so the pinned one
    choice = images.choose_image(t("cp312-manylinux_2_28_x86_64"), local=local, pinned=PINNED)
    assert (choice.source, choice.image) == ("pinned", PINNED["x86_64"]["manylinux_2_28"])
    # an override (policy_arch before policy) beats a serving local image
    overrides = {"manylinux_2_36": "mirror/m:1", "manylinux_2_36_aarch64": "mirror/arm:1"}
    assert images.policy_image(t("cp312-manylinux_2_36_x86_64"), overrides, local=local) == (
        "mirror/m:1"
    )
    assert images.policy_image(t("cp311-manylinux_2_36_aarch64"), overrides, local=local) == (
        "mirror/arm:1"
    )
    assert images.policy_image(t("cp311-manylinux_2_36_aarch64"), local=local) == ARM.tag
    # among equal policies the plainest image; a derived builder image (same labels) never
    plain = LocalImage("localhost/wheelport-manylinux_2_36_x86_64:z", "manylinux_2_36", "x86_64",
                       ("cp311",))  # fmt: skip
    derived = LocalImage("localhost/wheelport-builder:0", "manylinux_2_36", "x86_64", ("cp311",))
    assert images.policy_image(t("cp311-manylinux_2_36_x86_64"),
                               local=[derived, BOOKWORM, plain]) == plain.tag  # fmt: skip
    # an image an older wheelport built (another recipe) loses to this one's, whatever its tag
    stale = dataclasses.replace(plain, tag="localhost/wheelport-manylinux_2_36_x86_64:a",
                                current=False)  # fmt: skip
    assert images.policy_image(t("cp311-manylinux_2_36_x86_64"),
                               local=[stale, plain]) == plain.tag  # fmt: skip
    assert images.policy_image(t("cp311-manylinux_2_36_x86_64"), local=[stale]) == stale.tag
    # musllinux: no Debian image serves it; cibuildwheel's pinned image does
    assert images.choose_image(t("cp312-musllinux_1_2_x86_64"), local=local).source == "pinned"


def test_no_image_names_the_missing_piece_and_the_command() -> None:
    py312 = images.Interpreter(prefix=Path("/root/.pyenv/versions/3.12.1"), tag="cp312",
                               version="3.12.1", arch="x86_64", glibc=(2, 34), identity="x")  # fmt: skip
    with pytest.raises(images.BuildError) as info:
        images.choose_image(
            t("cp312-manylinux_2_36_x86_64"), local=[], pinned=PINNED, interpreter=py312
        )
    text = str(info.value)
    assert "no container image for policy manylinux_2_36 (x86_64)" in text
    assert "no local x86_64 image" in text
    assert (
        "wheelport image build-local --release bookworm --python /root/.pyenv/versions/3.12.1"
        in text
    )
    assert "[tool.wheelport] images" in text
    with pytest.raises(images.BuildError, match="no interpreter cp310 in the local images"):
        images.choose_image(t("cp310-manylinux_2_36_x86_64"), local=[BOOKWORM], pinned=PINNED)
    with pytest.raises(images.BuildError) as info:
        images.choose_image(t("cp311-manylinux_2_36_aarch64"), local=[BOOKWORM], pinned=PINNED)
    assert "no local aarch64 image" in str(info.value)
    assert "wheelport image build-local --release bookworm --arch aarch64" in str(info.value)
    # bullseye's glibc 2.31 is older than this CPython needs: no false suggestion
    with pytest.raises(images.BuildError) as info:
        images.choose_image(t("cp312-manylinux_2_31_x86_64"), local=[], interpreter=py312)
    assert "--release bullseye --python <a CPython 3.12 built for glibc <= 2.31>" in str(info.value)
    # no Debian release is old enough for manylinux_2_28: say so, point at the setting
    assert "no Debian release wheelport builds is old enough for manylinux_2_28" in (
        images.image_hint(t("cp312-manylinux_2_28_x86_64"))
    )
    with pytest.raises(images.BuildError, match=r"newer than manylinux_2_28"):
        images.choose_image(t("cp311-manylinux_2_28_x86_64"), local=[BOOKWORM], pinned={})


def test_one_build_per_interpreter_and_one_for_abi3() -> None:
    pinned = {
        "x86_64": {
            "manylinux_2_28": "quay.io/pypa/manylinux_2_28_x86_64@sha256:1",
            "manylinux_2_34": "quay.io/pypa/manylinux_2_34_x86_64@sha256:2",
        }
    }
    targets = [t(x) for x in ("cp312-manylinux_2_34_x86_64", "cp312-manylinux_2_28_x86_64",
                              "cp311-manylinux_2_28_x86_64", "cp312-manylinux_2_28_aarch64")]  # fmt: skip
    slots = {}
    for target in targets:
        c = images.choose_image(target, local=[], pinned=pinned | {"aarch64": pinned["x86_64"]})
        slots[target.identifier] = ImageSlot(c.image, "", images.policy_glibc(c.policy), c.pythons)
    groups = group_container_builds(targets, slots, abi3=False)
    by_lead = {members[0].identifier: [m.identifier for m in members] for _, members in groups}
    # one manylinux_2_28 build of cp312 serves the 2_34 target too, in the 2_28 image
    assert by_lead["cp312-manylinux_2_28_x86_64"] == [
        "cp312-manylinux_2_28_x86_64",
        "cp312-manylinux_2_34_x86_64",
    ]
    assert by_lead["cp311-manylinux_2_28_x86_64"] == ["cp311-manylinux_2_28_x86_64"]
    assert len(groups) == 3  # and the aarch64 one on its own
    abi3 = group_container_builds(targets, slots, abi3=True)
    assert sorted(len(m) for _, m in abi3) == [1, 3]
    # an image that lacks an interpreter does not take that target
    local_slots = {
        "cp311-manylinux_2_36_x86_64": ImageSlot("img:311", "", (2, 36), ("cp311",)),
        "cp312-manylinux_2_36_x86_64": ImageSlot("img:312", "", (2, 36), ("cp312",)),
        "cp312-manylinux_2_17_x86_64": ImageSlot(None, "no image"),
    }
    grouped = group_container_builds(
        [t(x) for x in local_slots], local_slots, abi3=True
    )  # fmt: skip
    assert [[m.identifier for m in ms] for _, ms in grouped] == [
        ["cp311-manylinux_2_36_x86_64"],
        ["cp312-manylinux_2_36_x86_64"],
    ]
    # ... but an image of one of them that carries both takes both (abi3: built once)
    local_slots["cp312-manylinux_2_36_x86_64"] = ImageSlot("img:both", "", (2, 36),
                                                          ("cp311", "cp312"))  # fmt: skip
    grouped = group_container_builds([t(x) for x in local_slots], local_slots, abi3=True)
    assert [(s.label, [m.identifier for m in ms]) for s, ms in grouped] == [
        ("img:both", ["cp312-manylinux_2_36_x86_64", "cp311-manylinux_2_36_x86_64"])
    ]


def test_abi3_is_read_from_the_build_files(tmp_path: Path) -> None:
    plain = make_sdist(tmp_path / "a", "plain", "1.0", c_extension=True)
    stable = make_sdist(tmp_path / "b", "stable", "1.0", c_extension=True, py_limited_api="cp38")
    pure = make_sdist(tmp_path / "c", "pure", "1.0")
    assert not read_sdist_info(plain).abi3
    assert read_sdist_info(stable).abi3 and read_sdist_info(stable).compiled
    assert not read_sdist_info(pure).abi3


def test_failed_pull_is_recognised() -> None:
    podman = (
        "Trying to pull quay.io/pypa/manylinux_2_28_x86_64@sha256:e0ad...\n"
        "Error: initializing source docker://quay.io/pypa/manylinux_2_28_x86_64@sha256:e0ad: "
        'pinging container registry quay.io: Get "https://quay.io/v2/": dial tcp: no such host\n'
    )
    assert failed_pull(podman) == "quay.io/pypa/manylinux_2_28_x86_64@sha256:e0ad"
    assert failed_pull("Trying to pull x\nWriting manifest to image destination\n") is None


# ---------------------------------------------------------------- real podman

needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="podman is missing")


def _python(version: str) -> Path:
    found = sorted(PYENV.glob(f"{version}.*"))
    if not found:
        pytest.skip(f"no CPython {version} in {PYENV}")
    return found[-1]


@pytest.fixture(scope="session")
def bookworm_image() -> LocalImage:
    """bookworm x86_64 with its CPython 3.11 and pyenv's 3.12 (built once, shared by tag)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is missing")
    return images.ensure_local_image("podman", release="bookworm", pythons=[_python("3.12")])


@pytest.fixture(scope="session")
def bullseye_image() -> LocalImage:
    """bullseye x86_64 with its own CPython 3.9 (pyenv's CPythons need glibc 2.34)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is missing")
    return images.ensure_local_image("podman", release="bullseye")


@pytest.fixture(scope="session")
def arm_image() -> LocalImage:
    """bookworm aarch64 (its own CPython 3.11), run under qemu."""
    if shutil.which("podman") is None:
        pytest.skip("podman is missing")
    try:
        images.emulation_for("aarch64")
    except images.BuildError as exc:
        pytest.skip(str(exc))
    return images.ensure_local_image("podman", release="bookworm", arch="aarch64")


class Recording:
    """Wraps a container builder: records each call's targets and (start, end) time."""

    def __init__(self, builders: Builders) -> None:
        assert builders.container is not None
        self.inner = builders.container
        self.calls: list[tuple[list[str], float, float]] = []
        self.lock = threading.Lock()
        self.builders = Builders(
            native=builders.native, container=self, container_slot=builders.container_slot
        )

    def __call__(
        self, sdist: Path, targets: Sequence[Target], wheels: Path, out: Path, logs: Path
    ) -> Mapping[str, Path]:
        start = time.monotonic()
        try:
            return self.inner(sdist, targets, wheels, out, logs)
        finally:
            with self.lock:
                self.calls.append(([t.identifier for t in targets], start, time.monotonic()))


def _config(wh: Path, index: str, names: Sequence[str], targets: Sequence[str],
            **kw: Any) -> Config:  # fmt: skip
    return Config(
        requirements=tuple(SourcedRequirement(Requirement(n), "test") for n in names),
        targets=tuple(targets),
        index_urls=(index,),
        output=wh,
        from_source=frozenset({":all:"}),
        tools=(),
        **kw,
    )


def _elf_machine(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as zf:
        so = next(n for n in zf.namelist() if n.endswith(".so"))
        header = zf.read(so)[:20]
    assert header[:4] == b"\x7fELF"
    return int.from_bytes(header[18:20], "little")


@pytest.mark.container
@needs_podman
def test_no_image_is_a_red_cell_naming_what_to_add(
    tmp_path: Path, dists_dir: Path, tinybackend_wheel: Path
) -> None:
    """Hermetic: no local image, and the 'pinned' image is a local name that is absent (the
    engine's pull goes to localhost only)."""
    with IndexServer() as srv:
        srv.add(tinybackend_wheel)
        srv.add(make_sdist(dists_dir, "fastadd", "1.0", c_extension=True))
        cfg = _config(tmp_path / "wh", srv.url, ["fastadd"],
                      ["cp312-manylinux_2_28_x86_64", "cp312-manylinux_2_31_x86_64"])  # fmt: skip
        pinned = {"x86_64": {"manylinux_2_28": "localhost/wheelport-absent-pinned:0"}}
        builders = default_builders(cfg, engine="podman", local=[], pinned=pinned)
        result = sync(cfg, builders=builders, allow_missing=True)
    cells = result.coverage.to_json()["fastadd"]
    pulled = cells["cp312-manylinux_2_28_x86_64"]
    assert pulled["state"] == "missing"
    assert (
        "no image: localhost/wheelport-absent-pinned:0 is not here and could not be pulled"
        in (pulled["detail"])
    )
    assert "old enough for manylinux_2_28" in pulled["detail"]  # no local image can serve it
    assert "[tool.wheelport] images" in pulled["detail"]
    none = cells["cp312-manylinux_2_31_x86_64"]
    assert none["state"] == "missing"
    assert "no container image for policy manylinux_2_31 (x86_64)" in none["detail"]
    assert "no local x86_64 image" in none["detail"]
    assert "wheelport image build-local --release bullseye --python" in none["detail"]
    assert not list((tmp_path / "wh" / "wheels").glob("fastadd-*.whl"))


@pytest.mark.container
@pytest.mark.slow
def test_one_build_per_interpreter_concurrent_and_rerun_builds_nothing(
    tmp_path: Path, dists_dir: Path, tinybackend_wheel: Path, bookworm_image: LocalImage
) -> None:
    targets = ["cp311-manylinux_2_36_x86_64", "cp312-manylinux_2_36_x86_64",
               "cp312-manylinux_2_39_x86_64"]  # fmt: skip
    with IndexServer() as srv:
        srv.add(tinybackend_wheel)
        for name in ("alpha", "beta"):
            srv.add(make_sdist(dists_dir, name, "1.0", c_extension=True))
        srv.add(make_sdist(dists_dir, "gamma", "1.0", c_extension=True, py_limited_api="cp38"))
        cfg = _config(tmp_path / "wh", srv.url, ["alpha", "beta", "gamma"], targets)
        rec = Recording(default_builders(cfg, engine="podman"))
        result = sync(cfg, builders=rec.builders)
        assert result.ok, result.coverage.red()
        # alpha, beta: one build per interpreter (cp312 serves 2_36 and 2_39); gamma: one
        assert len(rec.calls) == 5, rec.calls
        assert sorted(len(tids) for tids, _s, _e in rec.calls) == [1, 1, 2, 2, 3]
        built = [b for b in result.builds if not b.skipped]
        gamma = [b for b in built if b.package == "gamma"]
        assert len(gamma) == 1 and sorted(gamma[0].targets) == sorted(targets)
        assert "-cp38-abi3-manylinux" in gamma[0].wheel  # type: ignore[operator]
        alpha = {b.wheel: b.targets for b in built if b.package == "alpha"}
        assert len(alpha) == 2
        assert sorted(len(v) for v in alpha.values()) == [1, 2]
        # independent builds overlapped (2 workers)
        spans = sorted((s, e) for _t, s, e in rec.calls)
        assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), spans
        manifest = json.loads((tmp_path / "wh" / "wheelport.json").read_text())
        gamma_rec = manifest["artifacts"][str(gamma[0].wheel)]
        assert sorted(gamma_rec["origin"]["targets"]) == sorted(targets)
        for tid in targets:  # every served target's lock points at the one wheel
            lock = (tmp_path / "wh" / f"pylock.{tid}.toml").read_text()
            assert Path(gamma[0].wheel).name in lock  # type: ignore[arg-type]
        # a rerun builds nothing
        rerun = Recording(default_builders(cfg, engine="podman"))
        again = sync(cfg, builders=rerun.builders)
    assert again.ok and rerun.calls == []
    assert all(b.skipped for b in again.builds)


@pytest.mark.container
@pytest.mark.slow
def test_pinned_name_present_locally_is_used_without_a_pull(
    tmp_path: Path, dists_dir: Path, tinybackend_wheel: Path, bookworm_image: LocalImage
) -> None:
    """A pinned reference carries a digest, which no local image can be tagged with (podman:
    'tag by digest not supported'); the nearest honest case is the pinned repository under
    the pin's release tag, given as the pinned table. The registry is unreachable, so a
    successful build proves no pull happened (cibuildwheel inspects the image: --pull=never)."""
    pinned_ref = images.pinned_images()["x86_64"]["manylinux_2_28"]
    name = pinned_ref.split("@", 1)[0] + ":wheelport-test"
    env = {**os.environ, **engine_env()}
    subprocess.run(["podman", "tag", bookworm_image.tag, name], check=True, env=env)
    try:
        with IndexServer() as srv:
            srv.add(tinybackend_wheel)
            srv.add(make_sdist(dists_dir, "fastadd", "1.0", c_extension=True))
            cfg = _config(tmp_path / "wh", srv.url, ["fastadd"], ["cp311-manylinux_2_28_x86_64"])
            builders = default_builders(
                cfg, engine="podman", pinned={"x86_64": {"manylinux_2_28": name}}
            )
            result: SyncResult = sync(cfg, builders=builders)
    finally:
        subprocess.run(["podman", "untag", bookworm_image.tag, name], env=env)
    (build,) = [b for b in result.builds if b.package == "fastadd"]
    assert build.builder == f"container:{name}"
    _, _, _, tags = parse_wheel_filename(Path(build.wheel or "").name)
    assert all(parse_target("cp311-manylinux_2_28_x86_64").supports(tag) for tag in tags)
    log = next((tmp_path / "wh").rglob("fastadd-1.0.*.log")).read_text()
    assert "network=none" in log and "Trying to pull" not in log


@pytest.mark.container
@pytest.mark.slow
def test_aarch64_build_under_emulation(
    tmp_path: Path, dists_dir: Path, tinybackend_wheel: Path, arm_image: LocalImage
) -> None:
    target = "cp311-manylinux_2_36_aarch64"
    with IndexServer() as srv:
        srv.add(tinybackend_wheel)
        srv.add(make_sdist(dists_dir, "fastadd", "1.0", c_extension=True))
        cfg = _config(tmp_path / "wh", srv.url, ["fastadd"], [target])
        result = sync(cfg, builders=default_builders(cfg, engine="podman"))
    (build,) = [b for b in result.builds if b.package == "fastadd"]
    assert build.builder.startswith("container:localhost/wheelport-manylinux_2_36_aarch64:")
    wheel = tmp_path / "wh" / str(build.wheel)
    assert wheel.name.endswith("_aarch64.whl")
    assert _elf_machine(wheel) == 183  # EM_AARCH64
    env = {**os.environ, **engine_env()}
    script = (
        "set -e; /opt/python/cp311-cp311/bin/python -m pip install -q --no-index "
        f"--target /tmp/site /w/{wheel.name}; PYTHONPATH=/tmp/site "
        "/opt/python/cp311-cp311/bin/python -c "
        "'import platform; from fastadd._speedup import add; print(platform.machine(), add(2, 3))'"
    )
    out = subprocess.run(
        ["podman", "run", "--rm", "--network=none", "--platform=linux/arm64",
         f"--volume={wheel.parent}:/w:ro", arm_image.tag, "bash", "-c", script],
        check=True, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.stdout.split() == ["aarch64", "5"]


LXML_DOC = "<root><item n='1'>a</item><item n='2'>b</item></root>"


@pytest.mark.container
@pytest.mark.network
@pytest.mark.slow
def test_lxml_for_two_policies_provisions_offline(
    tmp_path: Path,
    bookworm_image: LocalImage,
    bullseye_image: LocalImage,
    public_index: PublicIndex,
) -> None:
    """cp312 on manylinux_2_36 (bookworm + pyenv 3.12) and cp39 on manylinux_2_31 (bullseye's
    own 3.9: no pyenv CPython here runs on glibc 2.31, so cp310-manylinux_2_31 has no image)."""
    if not can_unshare():
        pytest.skip("unshare -n is not permitted here")
    pairs = {"cp312-manylinux_2_36_x86_64": _python("3.12"),
             "cp39-manylinux_2_31_x86_64": _python("3.9")}  # fmt: skip
    wh = tmp_path / "wh"
    args = ["sync", "lxml==6.1.3", "--from-source", "lxml", "-o", str(wh), "--json",
            "--index-url", public_index.url]  # fmt: skip
    for tid in pairs:
        args += ["-t", tid]
    r = run_wheelport(*args, env=scrubbed_env())
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    builds = {tuple(b["targets"]): b for b in result["builds"] if b["package"] == "lxml"}
    assert set(builds) == {(tid,) for tid in pairs}, builds
    assert builds[("cp39-manylinux_2_31_x86_64",)]["builder"].startswith("container:")
    for tid, prefix in pairs.items():
        wheel = builds[(tid,)]["wheel"]
        _, _, _, tags = parse_wheel_filename(Path(wheel).name)
        assert all(parse_target(tid).supports(tag) for tag in tags)
        venv = tmp_path / f"venv-{tid}"
        p = run_wheelport("provision", str(venv), "-w", str(wh), "-t", tid, "--python",
                          str(prefix / "bin" / "python3"), env=scrubbed_env(),
                          prefix=("unshare", "-n"))  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
        code = (
            f"from lxml import etree; r = etree.fromstring({LXML_DOC!r}); "
            "print(','.join(i.get('n') + i.text for i in r.iter('item')))"
        )
        out = subprocess.run(["unshare", "-n", str(venv / "bin" / "python"), "-c", code],
                             check=True, capture_output=True, text=True)  # fmt: skip
        assert out.stdout.strip() == "1a,2b"
