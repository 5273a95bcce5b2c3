"""``wheelport docker``: a build context (and optionally an image) that installs a lock offline.

The context holds a Containerfile (from ``Containerfile.app.in``, package data of
:mod:`wheelport.resources`), the wheels one target's lock needs, a hashed
``requirements.txt`` and the lock itself. Its build is multi-stage: stage 1 creates a venv and installs the lock with pip run out of the
wheelhouse's pip wheel (``--no-index --require-hashes``); stage 2 copies only the venv onto
the base image, so the wheels do not stay in the final image. The build needs no network,
and ``--build`` runs it with ``--network=none``.

The target is inferred from the base image's Python when not given (the interpreter probe
runs in the image with the network off). :func:`render_containerfile` and
:func:`plan_context` decide; :func:`write_context` and :func:`build_image` do the I/O.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wheelport import bootstrap, resources
from wheelport.errors import ExportError, UsageError
from wheelport.process import Runner, subprocess_runner
from wheelport.targets import INTERPRETER_PROBE, target_for_interpreter
from wheelport.wheelhouse import contained, holding_lock, sha256_file

TEMPLATE_NAME = resources.APP_TEMPLATE
#: the app image's Containerfile template (package data, ``wheelport/resources/``)
DEFAULT_TEMPLATE = resources.read_text(TEMPLATE_NAME)

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9._/+:@-]+$")


@dataclass(frozen=True)
class AppCopy:
    """One ``--copy SRC:DEST``: a file or directory of the user's app put into the image."""

    source: Path
    dest: str


@dataclass(frozen=True)
class DockerContext:
    """A written build context."""

    directory: Path
    containerfile: Path
    target: str
    base_image: str
    venv: str
    packages: list[tuple[str, str]]
    image: str | None = None
    build_seconds: float | None = None
    files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "context": str(self.directory),
            "containerfile": str(self.containerfile),
            "target": self.target,
            "base_image": self.base_image,
            "venv": self.venv,
            "packages": [{"name": n, "version": v} for n, v in self.packages],
            "image": self.image,
        }


# ------------------------------------------------------------------------------- decisions


def parse_copy(text: str) -> AppCopy:
    """``SRC:DEST`` (DEST absolute in the image) → :class:`AppCopy`; :class:`UsageError` if bad."""
    src, sep, dest = text.rpartition(":")
    if not sep or not src or not _SAFE_PATH.match(dest):
        raise UsageError(
            f"bad --copy {text!r}", hint="write SRC:DEST with an absolute DEST, e.g. app/:/srv/app/"
        )
    path = Path(src)
    if not path.exists():
        raise UsageError(f"--copy source {src} does not exist", path=src)
    return AppCopy(path, dest)


def render_containerfile(
    template: str,
    *,
    base_image: str,
    target: str,
    python: str,
    venv: str,
    pip_wheel: str | None,
    app: Sequence[tuple[str, str]] = (),
    workdir: str | None = None,
    cmd: Sequence[str] | None = None,
) -> str:
    """Fill the template. ``pip_wheel`` is the pip wheel's file name in ``wheels/`` (pip then
    runs out of it and the venv is created without pip); without one the base image's
    ``ensurepip`` provides pip. ``app`` is (context path, image path) pairs to ``COPY``."""
    for what, value in (("venv path", venv), ("python", python)):
        if not (_SAFE_PATH.match(value) if what == "venv path" else _SAFE_WORD.match(value)):
            raise UsageError(
                f"unsafe {what} {value!r}", hint="use a plain absolute path / command name"
            )
    if not _SAFE_WORD.match(base_image):
        raise UsageError(f"unsafe base image name {base_image!r}")
    if pip_wheel:
        create = f"{python} -m venv --without-pip {venv}"
        pip = f"{venv}/bin/python /tmp/wheelport/wheels/{pip_wheel}/pip"
    else:
        create = f"{python} -m venv {venv}"
        pip = f"{venv}/bin/python -m pip"
    lines = [f"COPY {src} {dest}" for src, dest in app]
    if workdir:
        lines.append(f"WORKDIR {workdir}")
    if cmd:
        lines.append(f"CMD {json.dumps(list(cmd))}")
    text = template
    for key, value in {
        "@@BASE_IMAGE@@": base_image,
        "@@TARGET@@": target,
        "@@CREATE_VENV@@": create,
        "@@PIP@@": pip,
        "@@VENV@@": venv,
        "@@APP@@": "\n".join(lines),
    }.items():
        text = text.replace(key, value)
    return text.rstrip("\n") + "\n"


def plan_context(
    packages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], Mapping[str, Any] | None]:
    """(requirements entries sorted by name, pip tool or None): the lock's packages plus pip
    from the tools (so one pip run installs pip and the lock), without listing a package
    twice. ``bootstrap.requirements_text`` of the entries is the context's requirements.txt."""
    pip = next((t for t in tools if t.get("name") == "pip"), None)
    entries = list(packages)
    if pip is not None and not any(p["name"] == "pip" for p in entries):
        entries.append(pip)
    return sorted(entries, key=lambda e: str(e["name"])), pip


# ------------------------------------------------------------------------------- I/O


def _engine(engine: str | None) -> str:
    from wheelport.builders.container import detect_engine

    found = engine or detect_engine()
    if found is None:
        raise UsageError(
            "no container engine found (podman or docker)", hint="install podman or docker"
        )
    return found


def _env() -> dict[str, str]:
    from wheelport.builders.images.engine import engine_env

    return {**os.environ, **engine_env()}


def infer_target(
    base_image: str,
    *,
    engine: str,
    python: str = "python3",
    pip_wheel: Path | None = None,
    runner: Runner = subprocess_runner,
) -> Any:
    """The :class:`~wheelport.targets.Target` of ``python`` in ``base_image`` (run with the
    network off; the wheelhouse's pip wheel is mounted for its ``packaging`` when given)."""
    argv = [engine, "run", "--rm", "--network=none"]
    script = INTERPRETER_PROBE
    if pip_wheel is not None:
        argv += ["-v", f"{pip_wheel.resolve()}:/tmp/wheelport-pip.whl:ro"]
        script = "import sys; sys.path.insert(0, '/tmp/wheelport-pip.whl')\n" + INTERPRETER_PROBE
    argv += [base_image, python, "-I", "-c", script]
    result = runner(argv, env=_env())
    last = result.last_line
    if result.returncode != 0 or not last.startswith("{"):
        raise ExportError(
            f"cannot run {python} in {base_image} to infer the target: "
            f"{last or f'exit {result.returncode}'}",
            hint="pass -t TARGET (and --python if the image's interpreter has another name)",
        )
    info = json.loads(last)
    if not info.get("tags"):
        raise ExportError(f"cannot compute the wheel tags of {python} in {base_image}",
                          hint="pass -t TARGET")  # fmt: skip
    return target_for_interpreter(info)


@holding_lock("docker", shared=True)  # a concurrent sync waits until the context is written
def write_context(
    wheelhouse: Path,
    context_dir: Path,
    *,
    base_image: str,
    target: str | None = None,
    venv: str = "/opt/venv",
    python: str = "python3",
    app: Sequence[AppCopy] = (),
    workdir: str | None = None,
    cmd: Sequence[str] | None = None,
    engine: str | None = None,
    runner: Runner = subprocess_runner,
) -> DockerContext:
    """Write the build context for one target's lock into ``context_dir`` (new or empty).

    Without ``target`` the lock is chosen for the base image's interpreter (needs an engine).
    Every wheel is checked against the lock's sha256 while it is copied. Raises
    :class:`UsageError` (no such lock, bad options) or :class:`ExportError` (a package the lock
    can only build from source, a file that does not match).
    """
    from wheelport.provision import choose_lock, read_lock_choice

    wheelhouse = Path(wheelhouse)
    lock_paths = sorted(wheelhouse.glob("pylock.*.toml"))
    if not lock_paths:
        raise UsageError(
            f"{wheelhouse} has no pylock.*.toml",
            hint="run 'wheelport sync' first",
            path=str(wheelhouse),
        )
    if target is not None:
        path = wheelhouse / f"pylock.{target}.toml"
        if not path.is_file():
            present = ", ".join(p.name[len("pylock.") : -len(".toml")] for p in lock_paths)
            raise UsageError(
                f"the wheelhouse has no lock for {target}",
                hint=f"locks present: {present}",
                target=target,
            )
        lock = read_lock_choice(path)
    else:
        locks = [read_lock_choice(p) for p in lock_paths]
        pips = [t for lk in locks for t in lk.tools if t["name"] == "pip"]
        probe = infer_target(base_image, engine=_engine(engine), python=python,
                             pip_wheel=contained(wheelhouse, pips[0]["path"], "a lock's tools") if pips else None, runner=runner)  # fmt: skip
        lock = choose_lock(locks, probe)
    if lock.sdist_only:
        raise ExportError(
            f"{lock.file}: {', '.join(lock.sdist_only)} has no wheel for {lock.target}",
            hint="build it first ('wheelport sync' with a container engine) or drop it",
            package=lock.sdist_only[0], target=lock.target,
        )  # fmt: skip
    entries, pip = plan_context(lock.packages, lock.tools)
    context_dir = Path(context_dir)
    if context_dir.exists() and any(context_dir.iterdir()):
        raise UsageError(
            f"{context_dir} is not empty",
            hint="choose a new directory for the build context",
            path=str(context_dir),
        )
    app_pairs: list[tuple[str, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix=f".{context_dir.name}.", dir=context_dir.absolute().parent))
    try:
        (tmp / "wheels").mkdir()
        for entry in entries:
            src = contained(wheelhouse, str(entry["path"]), lock.file)
            dst = tmp / "wheels" / src.name
            if not src.is_file():
                raise ExportError(
                    f"{src} is missing",
                    hint=f"run 'wheelport verify {wheelhouse}'",
                    path=str(entry["path"]),
                )
            shutil.copyfile(src, dst)
            if sha256_file(dst) != entry["sha256"]:
                raise ExportError(f"{src} does not match {lock.file}", hint=f"run 'wheelport verify {wheelhouse}'",
                                  path=str(entry["path"]))  # fmt: skip
        (tmp / "requirements.txt").write_text(
            bootstrap.requirements_text(entries), encoding="utf-8"
        )
        shutil.copyfile(wheelhouse / lock.file, tmp / lock.file)
        for i, copy in enumerate(app):
            name = f"app/{i}-{copy.source.name or 'root'}"
            if copy.source.is_dir():
                shutil.copytree(copy.source, tmp / name, symlinks=True)
                app_pairs.append((name + "/", copy.dest))
            else:
                (tmp / "app").mkdir(exist_ok=True)
                shutil.copyfile(copy.source, tmp / name)
                app_pairs.append((name, copy.dest))
        text = render_containerfile(
            DEFAULT_TEMPLATE, base_image=base_image, target=lock.target, python=python, venv=venv,
            pip_wheel=Path(str(pip["path"])).name if pip else None, app=app_pairs, workdir=workdir, cmd=cmd,
        )  # fmt: skip
        (tmp / "Containerfile").write_text(text, encoding="utf-8")
        if context_dir.exists():
            context_dir.rmdir()
        os.replace(tmp, context_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(
        p.relative_to(context_dir).as_posix() for p in context_dir.rglob("*") if p.is_file()
    )
    return DockerContext(
        directory=context_dir,
        containerfile=context_dir / "Containerfile",
        target=lock.target,
        base_image=base_image,
        venv=venv,
        packages=[(str(p["name"]), str(p["version"])) for p in lock.packages],
        files=files,
    )


def build_image(
    context: DockerContext,
    *,
    tag: str,
    engine: str | None = None,
    runner: Runner = subprocess_runner,
    log: Path | None = None,
) -> str:
    """Build ``context`` with podman or docker, network off, tagged ``tag``; returns the tag.

    Raises :class:`ExportError` with the build's last line (the full output goes to ``log``).
    """
    if not _SAFE_WORD.match(tag):
        raise UsageError(f"bad image tag {tag!r}")
    eng = _engine(engine)
    argv = [
        eng,
        "build",
        "--network=none",
        "-t",
        tag,
        "-f",
        str(context.containerfile),
        str(context.directory),
    ]
    result = runner(argv, env=_env(), log=log)
    rc, out = result.returncode, result.output
    if rc != 0:
        tail = [line for line in out.strip().splitlines() if line.strip()][-3:]
        raise ExportError(
            f"{eng} build of {context.directory} failed: {' | '.join(tail) or f'exit {rc}'}",
            hint=f"full output in {log}" if log else "re-run with -v to see the build output",
            target=context.target,
        )
    return tag
