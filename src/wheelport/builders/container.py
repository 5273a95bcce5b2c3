"""Container builds: one sdist, one Linux target, inside a manylinux/musllinux image.

wheelport drives cibuildwheel as a subprocess (``python -m cibuildwheel``; it has no
library API) on the sdist file, for exactly the target's build identifier, with:

- the network off (``--network=none``) and no host mount (``disable_host_mount``);
- the build-dependency wheels mounted read-only at ``/wheelport-deps`` and used through
  ``PIP_NO_INDEX``/``PIP_FIND_LINKS`` (and ``UV_*``), so ``build-system.requires`` come
  only from the wheelhouse;
- wheelport's own cibuildwheel config file, passed by absolute path, so the sdist's
  ``[tool.cibuildwheel]`` table does not apply; tests off; auditwheel repair;
- the sdist's ``SOURCE_DATE_EPOCH`` for the build and the repair, and each wheel normalised
  (:func:`wheelport.reproduce.normalize_wheel`) as it leaves the container: the same sdist,
  image and build requirements give the same bytes.

Pure decisions (:func:`cibw_identifier`, :func:`cibw_environment`, :func:`cibw_config`,
:func:`explain_failure`) are plain functions; the subprocess runner is injectable.

:class:`Container` is this builder's :class:`~wheelport.builders.kind.Builder`: a compiled sdist
for each manylinux/musllinux target an image here can build, one run per image group
(:func:`~wheelport.builders.plan.group_container_builds`).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.utils import parse_wheel_filename

from wheelport.builders.images.engine import engine_env
from wheelport.builders.kind import Claim, Offer, PlannedJob, Ports, runner_of
from wheelport.builders.plan import ImageSlot, group_container_builds
from wheelport.errors import BuildError
from wheelport.process import Runner, subprocess_runner
from wheelport.reproduce import normalize_wheel, source_date_epoch
from wheelport.targets import Target
from wheelport.wheelhouse import atomic_target

#: where the deps dir is mounted (read-only) inside the build container
CONTAINER_DEPS_DIR = "/wheelport-deps"
ENGINES = ("podman", "docker")

#: cibuildwheel's exit codes (``cibuildwheel/errors.py``) → what they mean for the user
CIBW_EXIT_MESSAGES: dict[int, str] = {
    1: "a build step failed",
    2: "cibuildwheel rejected its configuration",
    3: "nothing to build: cibuildwheel selected no build for this identifier"
    " (does the sdist's requires-python exclude this Python?)",
    4: "cibuildwheel refused a deprecated option",
    5: "a pure-Python wheel was produced where a platform wheel was expected"
    " (build it with the native builder instead)",
    6: "the build produced the same wheel twice",
    7: "the container engine is too old for cibuildwheel (upgrade podman/docker)",
    8: "the auditwheel repair step produced no wheel, or several",
    9: "the audit command failed",
    10: "the build frontend finished but produced no wheel",
}

_MISSING_DEP_RES = (
    re.compile(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9._-]*)"),
    re.compile(
        r"Could not find a version that satisfies the requirement ([A-Za-z0-9][A-Za-z0-9._-]*)"
    ),
    # uv: "Because foo was not found in the provided package locations ..."
    re.compile(
        r"Because ([A-Za-z0-9][A-Za-z0-9._-]*) was not found in the provided package locations"
    ),
)


#: an engine's pull errors: podman's "Error: initializing source docker://IMAGE: ...", docker's
#: "pull access denied for IMAGE," and "Unable to find image 'IMAGE' locally" + a daemon error
_PULL_FAILED_RES = (
    re.compile(r"Error: initializing source docker://(\S+?): "),
    re.compile(r"pull access denied for (\S+?),"),
    re.compile(r"Unable to find image '(\S+?)' locally[\s\S]*Error response from daemon"),
)
#: what to do when an image cannot be pulled (no registry reachable)
PULL_HINT = (
    "build a local image (wheelport image build-local --release bookworm), or set "
    "[tool.wheelport] images to an image this machine can pull"
)


class Container:
    """The container builder: a compiled sdist for the manylinux/musllinux targets whose image
    slot names an image, one job per image group; the others are left, with the slot's reason."""

    name = "container"
    shares_wheels = True

    def plan(self, offer: Offer) -> Claim:
        need, info, machine = offer.need, offer.info, offer.machine
        slots: dict[str, ImageSlot] = {}
        for t, _ in offer.targets:
            if info.compiled and machine.container and t.os in ("manylinux", "musllinux"):
                slots[t.identifier] = machine.slot(t, need.name)
        groups = group_container_builds(
            [t for t, _ in offer.targets if t.identifier in slots], slots, abi3=info.abi3
        )
        jobs = tuple(
            PlannedJob(need, f"{self.name}:{s.label}", tuple(members), runner_of(members[0]),
                       True, size=offer.size)
            for s, members in groups
        )  # fmt: skip
        left = tuple(
            (t, slots[t.identifier].reason if t.identifier in slots else why)
            for t, why in offer.targets
            if t.identifier not in slots or slots[t.identifier].label is None
        )
        return Claim(jobs, left)

    def interpreters(self, job: PlannedJob, host: Target) -> list[Target]:
        return list({t.abi: t for t in reversed(job.targets)}.values())  # one per Python

    def build(
        self, job: PlannedJob, sdist: Path, ports: Ports, *, wheels_dir: Path, out_dir: Path,
        log_dir: Path,
    ) -> Mapping[str, Path]:  # fmt: skip
        assert ports.container is not None  # a container job is planned only with an engine
        return ports.container(sdist, job.targets, wheels_dir, out_dir, log_dir)


def detect_engine(which: Mapping[str, str | None] | None = None) -> str | None:
    """The container engine to use: podman, then docker; None when neither is on PATH.

    ``which`` maps engine names to their paths (for tests); ``shutil.which`` otherwise.
    """
    for name in ENGINES:
        found = which.get(name) if which is not None else shutil.which(name)
        if found:
            return name
    return None


def cibw_identifier(target: Target) -> str:
    """cibuildwheel's build identifier for a Linux target.

    ``cp311-manylinux_2_36_x86_64`` → ``cp311-manylinux_x86_64`` (the policy is chosen by the
    image, not the identifier); musllinux likewise. Other targets raise :class:`BuildError`.
    """
    if target.os not in ("manylinux", "musllinux"):
        raise BuildError(
            f"target {target.identifier} has no manylinux/musllinux policy: container builds "
            "serve only manylinux_* and musllinux_* targets",
            target=target.identifier,
        )
    return f"{target.abi}-{target.os}_{target.arch}"


def cibw_environment(
    deps_dir_in_container: str = CONTAINER_DEPS_DIR, source_date_epoch: int | None = None
) -> str:
    """The ``CIBW_ENVIRONMENT`` value: build requirements only from the mounted wheels, and
    for a reproducible build the sdist's ``SOURCE_DATE_EPOCH`` when given (the build and
    auditwheel honour it) with ``PYTHONHASHSEED=0``."""
    pairs = {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": deps_dir_in_container,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
        "UV_NO_INDEX": "1",
        "UV_FIND_LINKS": deps_dir_in_container,
        "UV_OFFLINE": "1",
    }
    if source_date_epoch is not None:
        pairs["SOURCE_DATE_EPOCH"] = str(source_date_epoch)
        pairs["PYTHONHASHSEED"] = "0"
    return " ".join(f"{k}={v}" for k, v in pairs.items())


def cibw_engine_config(engine: str, deps_dir: Path) -> str:
    """``CIBW_CONTAINER_ENGINE``: network off, no host mount, deps mounted read-only."""
    if any(c in str(deps_dir) for c in " :;,'\""):
        raise BuildError(
            f"build dependency directory {deps_dir} contains a space, colon, comma or quote",
            hint="use a wheelhouse path without them",
            path=str(deps_dir),
        )
    return (
        f"{engine}; create_args: --network=none "
        f"--volume={deps_dir}:{CONTAINER_DEPS_DIR}:ro; disable_host_mount: true"
    )


def cibw_config() -> str:
    """wheelport's own cibuildwheel config file (TOML). Replaces the sdist's table."""
    return (
        "# written by wheelport: the sdist's own [tool.cibuildwheel] does not apply\n"
        "[tool.cibuildwheel]\n"
        'build-frontend = "build"\n'
        'dependency-versions = "latest"\n'
        'before-all = ""\n'
        'before-build = ""\n'
        'test-command = ""\n'
        "test-requires = []\n"
        "# abi3audit would be installed from an index on the host: not hermetic\n"
        'audit-command = ""\n'
        "build-verbosity = 1\n"
        "\n[tool.cibuildwheel.linux]\n"
        'repair-wheel-command = "auditwheel repair -w {dest_dir} {wheel}"\n'
    )


def cibw_env(
    target: Target,
    *,
    image: str,
    engine: str,
    deps_dir: Path,
    base_env: Mapping[str, str],
    also: Sequence[Target] = (),
    source_date_epoch: int | None = None,
) -> dict[str, str]:
    """The full environment of the cibuildwheel subprocess.

    ``also`` are more targets of the same OS family and arch built in the same run (one
    cibuildwheel identifier per interpreter; cibuildwheel reuses an abi3 wheel for the
    later ones instead of building again). The host's ``CIBW_*``, ``PIP_*`` and ``UV_*``
    variables are dropped so nothing outside wheelport's settings leaks into the build.
    """
    for other in also:
        if (other.os, other.arch) != (target.os, target.arch):
            raise BuildError(
                f"targets {target.identifier} and {other.identifier} need different images: "
                "one container run builds for one OS family and arch",
                target=other.identifier,
            )
    env = {k: v for k, v in base_env.items() if not k.startswith(("CIBW_", "PIP_", "UV_"))}
    env.update(engine_env())
    image_var = f"CIBW_{target.os.upper()}_{target.arch.upper()}_IMAGE"
    identifiers = sorted({cibw_identifier(t) for t in (target, *also)})
    env.update(
        {
            "CIBW_BUILD": " ".join(identifiers),
            "CIBW_ARCHS_LINUX": target.arch,
            "CIBW_CONTAINER_ENGINE": cibw_engine_config(engine, deps_dir),
            image_var: image,
            "CIBW_BUILD_FRONTEND": "build",
            "CIBW_ENVIRONMENT": cibw_environment(source_date_epoch=source_date_epoch),
            "CIBW_REPAIR_WHEEL_COMMAND_LINUX": "auditwheel repair -w {dest_dir} {wheel}",
            "CIBW_TEST_COMMAND": "",
            "CIBW_BUILD_VERBOSITY": "1",
        }
    )
    if any(t.free_threaded for t in (target, *also)):
        env["CIBW_ENABLE"] = "cpython-freethreading"
    return env


def _first_match(regexes: Sequence[re.Pattern[str]], text: str) -> str | None:
    """The first group of the first regex that matches ``text``."""
    for regex in regexes:
        m = regex.search(text)
        if m:
            return m.group(1)
    return None


def missing_build_dependency(log_text: str) -> str | None:
    """The build requirement pip/uv could not find, from a build log; None if none."""
    return _first_match(_MISSING_DEP_RES, log_text)


def failed_pull(log_text: str) -> str | None:
    """The image the engine could not pull, from an engine or cibuildwheel log; None if none."""
    return _first_match(_PULL_FAILED_RES, log_text)


def explain_failure(
    returncode: int,
    log_text: str,
    *,
    sdist: str,
    target: str,
    log_path: Path,
    image: str | None = None,
) -> BuildError:
    """Turn a failed cibuildwheel run into one clear :class:`BuildError`."""
    missing = missing_build_dependency(log_text)
    where = f"building {sdist} for {target} in a container"
    unpulled = failed_pull(log_text)
    if unpulled:
        return BuildError(
            f"{where}: no image: {image or unpulled} is not here and could not be pulled "
            f"(log: {log_path})",
            hint=PULL_HINT,
            package=sdist,
            target=target,
            path=str(log_path),
        )
    if missing:
        return BuildError(
            f"{where}: build dependency {missing} is not in the wheelhouse (log: {log_path})",
            hint=f"add {missing} to the build dependencies so its wheel is fetched",
            package=sdist,
            target=target,
            path=str(log_path),
        )
    meaning = CIBW_EXIT_MESSAGES.get(returncode, f"cibuildwheel exited with code {returncode}")
    return BuildError(
        f"{where}: {meaning} (exit {returncode}; log: {log_path})",
        package=sdist,
        target=target,
        path=str(log_path),
    )


def check_wheel_fits(wheel_name: str, target: Target, *, log_path: Path) -> None:
    """Raise :class:`BuildError` unless every tag of the built wheel serves ``target``.

    auditwheel picks the tag from the symbols the extension uses, so an image newer than the
    target's policy shows up here instead of as a wheel the target cannot install.
    """
    _, _, _, tags = parse_wheel_filename(wheel_name)
    if not any(target.supports(tag) for tag in tags):
        raise BuildError(
            f"the container built {wheel_name}, which {target.identifier} cannot install "
            f"(log: {log_path})",
            hint="use an image whose policy is not newer than the target's",
            target=target.identifier,
            path=str(log_path),
        )


def sdist_stem(sdist: Path) -> str:
    """``lxml-6.0.2.tar.gz`` → ``lxml-6.0.2``."""
    name = sdist.name
    for suffix in (".tar.gz", ".zip", ".tar.bz2", ".tgz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return sdist.stem


def cibw_argv(python: str, config: Path, output_dir: Path, sdist: Path) -> list[str]:
    """The cibuildwheel command line for one sdist (the same one a user would type)."""
    return [
        python, "-m", "cibuildwheel", "--platform", "linux",
        "--config-file", str(config), "--output-dir", str(output_dir), str(sdist),
    ]  # fmt: skip


def build_in_container(
    sdist: Path,
    target: Target,
    *,
    image: str,
    deps_dir: Path,
    out_dir: Path,
    log_dir: Path,
    engine: str | None = None,
    runner: Runner = subprocess_runner,
    python: str = sys.executable,
) -> Path:
    """Build ``sdist`` for ``target`` in ``image`` with cibuildwheel; return the wheel's path.

    The repaired wheel (tag from auditwheel) is moved into ``out_dir``. The full log is kept
    at ``log_dir/<sdist-stem>.<target>.log``. Failures raise :class:`BuildError` naming the
    log, and a build dependency missing from ``deps_dir`` when that was the cause.
    """
    wheels = build_wheels_in_container(
        sdist, [target], image=image, deps_dir=deps_dir, out_dir=out_dir, log_dir=log_dir,
        engine=engine, runner=runner, python=python,
    )  # fmt: skip
    return wheels[target.identifier]


def build_wheels_in_container(
    sdist: Path,
    targets: Sequence[Target],
    *,
    image: str,
    deps_dir: Path,
    out_dir: Path,
    log_dir: Path,
    engine: str | None = None,
    runner: Runner = subprocess_runner,
    python: str = sys.executable,
) -> dict[str, Path]:
    """Build ``sdist`` once per interpreter of ``targets`` in one cibuildwheel run in ``image``.

    ``targets`` share an OS family and arch (one image). cibuildwheel builds the lowest
    interpreter first and reuses an abi3 (or ``none``) wheel for the others, so an abi3 sdist
    is built once. Returns target identifier → the wheel in ``out_dir`` that serves it (its
    best-ranked fitting wheel); a target no wheel fits raises :class:`BuildError`. The log
    is ``log_dir/<sdist-stem>.<target>[+<target>...].log``.
    """
    if not targets:
        raise BuildError(f"building {sdist.name}: no target given")
    sdist = sdist.resolve()
    deps_dir = deps_dir.resolve()
    out_dir = out_dir.resolve()
    log_dir = log_dir.resolve()
    first = targets[0]
    label = "+".join(t.identifier for t in targets)
    if not sdist.is_file():
        raise BuildError(f"sdist {sdist} does not exist", path=str(sdist))
    if not deps_dir.is_dir():
        raise BuildError(
            f"build dependency directory {deps_dir} does not exist", path=str(deps_dir)
        )
    engine = engine or detect_engine()
    if engine is None:
        raise BuildError(
            f"no container engine to build {sdist.name} for {label}",
            hint="install podman (see .ci/setup-containers.sh) or docker",
            target=first.identifier,
        )
    if engine not in ENGINES:
        raise BuildError(f"unknown container engine {engine!r}", hint="use podman or docker")
    epoch = source_date_epoch(sdist)
    env = cibw_env(
        first, image=image, engine=engine, deps_dir=deps_dir, base_env=os.environ,
        also=targets[1:], source_date_epoch=epoch,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{sdist_stem(sdist)}.{label}.log"
    with tempfile.TemporaryDirectory(prefix="wheelport-cibw-") as tmp:
        work = Path(tmp)
        config = work / "cibuildwheel.toml"
        config.write_text(cibw_config(), encoding="utf-8")
        staging = work / "out"
        argv = cibw_argv(python, config, staging, sdist)
        result = runner(argv, env=env, cwd=work, log=log_path)
        if result.returncode != 0:
            raise explain_failure(
                result.returncode,
                result.output,
                sdist=sdist.name,
                target=label,
                log_path=log_path,
                image=image,
            )
        wheels = sorted(staging.glob("*.whl")) if staging.is_dir() else []
        interpreters = {cibw_identifier(t) for t in targets}
        if not wheels or len(wheels) > len(interpreters):
            raise BuildError(
                f"building {sdist.name} for {label}: expected "
                f"{'one wheel' if len(interpreters) == 1 else f'1 to {len(interpreters)} wheels'}, "
                f"cibuildwheel produced {len(wheels)} (log: {log_path})",
                package=sdist.name,
                target=first.identifier,
                path=str(log_path),
            )
        chosen: dict[str, Path] = {}
        for t in targets:
            ranked = [(r, w) for w in wheels if (r := t.wheel_rank(w.name)) is not None]
            if not ranked:
                check_wheel_fits(wheels[0].name, t, log_path=log_path)  # raises, naming it
            chosen[t.identifier] = min(ranked)[1]
        placed: dict[Path, Path] = {}
        for wheel in sorted(set(chosen.values())):
            normalize_wheel(wheel, epoch)
            final = out_dir / wheel.name
            with atomic_target(final, durable=False) as fh, wheel.open("rb") as src:
                shutil.copyfileobj(src, fh)
            placed[wheel] = final
    return {tid: placed[w] for tid, w in chosen.items()}


def pull_image(
    engine: str, image: str, runner: Runner = subprocess_runner, *, hint: str = PULL_HINT
) -> None:
    """Make ``image`` present: nothing when the engine has it, else one ``pull``.

    A failed pull raises :class:`BuildError` naming the image and what to do instead; the
    engine's own pull is the only network access.
    """
    env = dict(os.environ)
    env.update(engine_env())
    exists = (
        [engine, "image", "exists", image]
        if engine == "podman"
        else [engine, "image", "inspect", image]
    )
    if runner(exists, env=env).returncode == 0:
        return
    result = runner([engine, "pull", image], env=env)
    if result.returncode != 0:
        raise BuildError(
            f"no image: {image} is not here and could not be pulled "
            f"({result.last_line or 'no output'})",
            hint=hint,
        )
