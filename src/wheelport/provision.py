"""Provision: a virtual environment from a wheelhouse, with no network.

``provision(venv, wheelhouse=...)`` finds the interpreter, infers its target, picks the
lock (``pylock.<target>.toml``) that fits it (by bootstrap.py's rule: one rule for
``bootstrap.py``, ``provision`` and ``docker``), verifies every file it will install (size +
sha256) before anything is created, then installs with pip (the same code as the
wheelhouse's ``bootstrap.py``) or uv, isolated from pip.conf and ``PIP_*``/``UV_*``
variables, and runs ``pip check``.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.pylock import Pylock
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from wheelport import bootstrap
from wheelport import lock as wheelport_lock
from wheelport.errors import ProvisionError, TargetError, UsageError
from wheelport.finish import LIBC, lock_target_facts
from wheelport.process import Runner, subprocess_runner
from wheelport.targets import INTERPRETER_PROBE, Target, parse_target, target_for_interpreter
from wheelport.wheelhouse import Wheelhouse

INSTALLERS = ("pip", "uv")
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")


@dataclass(frozen=True, kw_only=True)
class ProvisionReport:
    """What provisioning did."""

    venv: Path
    python: str
    target: str
    lock: str
    installer: str
    packages: tuple[tuple[str, str], ...]
    check_ok: bool
    check_output: str
    seconds: float

    def to_json(self) -> dict[str, object]:
        """The report as plain JSON data."""
        return {
            "venv": str(self.venv),
            "python": self.python,
            "target": self.target,
            "lock": self.lock,
            "installer": self.installer,
            "packages": [{"name": n, "version": v} for n, v in self.packages],
            "check_ok": self.check_ok,
            "check_output": self.check_output,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, kw_only=True)
class LockChoice:
    """A lock read from the wheelhouse, reduced to what an installer needs."""

    file: str
    target: str
    packages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...]
    sdist_only: tuple[str, ...]
    pylock: Pylock


# --------------------------------------------------------------------------- interpreter


def _runs_as(python: str, version: str | None, runner: Runner) -> bool:
    try:
        proc = runner(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            env=bootstrap.scrubbed_env(),
        )
    except OSError:
        return False
    return proc.returncode == 0 and (version is None or proc.last_line == version)


def _pyenv_candidates(version: str, pyenv_root: str) -> list[str]:
    def key(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(x) for x in re.findall(r"\d+", name)[:3])

    found = glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", "python"))
    found += glob.glob(os.path.join(pyenv_root, "versions", version, "bin", "python"))
    return sorted(set(found), key=key, reverse=True)


def find_interpreter(
    python: str | None,
    *,
    runner: Runner = subprocess_runner,
    environ: dict[str, str] | None = None,
) -> str:
    """The interpreter to provision with: the running one, ``X.Y``, a command name or a path.

    ``X.Y`` tries ``pythonX.Y`` on PATH, then pyenv versions (``$PYENV_ROOT``), then uv's
    managed interpreters (offline). Raises :class:`UsageError` naming what was tried.
    """
    env = dict(os.environ if environ is None else environ)
    if python is None:
        return sys.executable
    if os.sep in python or (os.altsep and os.altsep in python):
        if os.path.isfile(python) and os.access(python, os.X_OK):
            return os.path.abspath(python)
        raise UsageError(f"interpreter {python} does not exist or is not executable")
    m = _VERSION_RE.match(python)
    if not m:
        found = shutil.which(python, path=env.get("PATH"))
        if found and _runs_as(found, None, runner):
            return found
        raise UsageError(f"interpreter {python!r} not found on PATH", hint="pass a path")
    tried: list[str] = []
    candidates: list[str] = []
    on_path = shutil.which(f"python{python}", path=env.get("PATH"))
    tried.append(f"python{python} on PATH")
    if on_path:
        candidates.append(on_path)
    pyenv_root = env.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    tried.append(f"{pyenv_root}/versions/{python}.*")
    candidates += _pyenv_candidates(python, pyenv_root)
    for candidate in candidates:
        if _runs_as(candidate, python, runner):
            return candidate
    uv = find_uv(environ=env)
    if uv:
        tried.append("uv python find --offline")
        proc = runner(
            [uv, "python", "find", "--no-config", "--offline", "--no-python-downloads", python],
            env=bootstrap.scrubbed_env(env),
        )
        found = proc.last_line
        if proc.returncode == 0 and found and _runs_as(found, python, runner):
            return found
    raise UsageError(
        f"no Python {python} found (tried {', '.join(tried)})",
        hint="install it or pass --python PATH",
    )


def probe_interpreter(
    python: str, *, pip_wheel: Path | None = None, runner: Runner = subprocess_runner
) -> Target:
    """The :class:`Target` of ``python``, from :data:`INTERPRETER_PROBE` run by it.

    When the interpreter has no pip to compute its tags, the probe runs again with the
    wheelhouse's pip wheel on ``sys.path`` (its vendored ``packaging``).
    """
    scripts = [INTERPRETER_PROBE]
    if pip_wheel is not None:
        scripts.append(f"import sys; sys.path.insert(0, {str(pip_wheel)!r})\n" + INTERPRETER_PROBE)
    info: dict[str, Any] = {}
    for script in scripts:
        proc = runner([python, "-I", "-c", script], env=bootstrap.scrubbed_env())
        if proc.returncode != 0:
            raise ProvisionError(f"cannot run {python}: {proc.last_line or proc.returncode}")
        # the report is the last line printed; warnings on stderr may come before it
        reports = [line for line in proc.output.splitlines() if line.startswith("{")]
        info = json.loads(reports[-1]) if reports else {}
        if info.get("tags"):
            return target_for_interpreter(info)
    raise ProvisionError(
        f"cannot compute the wheel tags of {python}: it has no pip and the wheelhouse lists none"
    )


# --------------------------------------------------------------------------- locks

#: the C library each Linux target family's wheels need (as the manifest's ``locks`` say)


def read_lock_choice(path: Path) -> LockChoice:
    """Read a ``pylock.<target>.toml`` into a :class:`LockChoice`; :class:`UsageError` when it
    is not a valid lock (:func:`wheelport.lock.read_lock` gives the :class:`Pylock` itself)."""
    lock = wheelport_lock.read_lock(path)
    tool = wheelport_lock.lock_tool(lock)
    items = wheelport_lock.install_list(lock)
    return LockChoice(
        file=path.name,
        target=str(tool.get("target") or path.name[len("pylock.") : -len(".toml")]),
        packages=items.packages,
        tools=items.tools,
        sdist_only=items.unbuilt,
        pylock=lock,
    )


def interpreter_facts(target: Target) -> dict[str, Any]:
    """:func:`bootstrap.interpreter_env`'s facts for the interpreter ``target`` describes
    (a probed interpreter's best manylinux/musllinux/macOS tag gives its libc or macOS)."""
    m = target.markers
    libc = LIBC.get(target.os)
    return {
        "python_version": m["python_version"],
        "sys_platform": m["sys_platform"],
        "platform_machine": m["platform_machine"],
        "libc": libc,
        "libc_version": target.policy_version if libc else None,
        "macos_version": target.policy_version if target.os == "macos" else None,
        "free_threaded": target.free_threaded,
    }


def _content_mismatch(lock: LockChoice, target: Target) -> str | None:
    """Why what the lock file says (environments, requires-python, its wheels' tags) excludes
    the interpreter ``target``; None when nothing does."""
    env = target.markers
    environments = lock.pylock.environments or ()
    if environments and not any(m.evaluate(dict(env)) for m in environments):
        return "its environments do not hold for this Python"
    rp = lock.pylock.requires_python
    if isinstance(rp, SpecifierSet) and not rp.contains(target.full_version, prereleases=True):
        return f"it requires Python {rp}"
    for entry in lock.packages:
        filename = entry["path"].rsplit("/", 1)[-1]
        try:
            _, _, _, wheel_tags = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            return f"{filename} is not a wheel file name"
        if not any(target.supports(t) for t in wheel_tags):
            return f"{filename} does not fit this Python"
    return None


def _facts_of(lock: LockChoice) -> dict[str, Any] | None:
    try:
        return lock_target_facts(parse_target(lock.target))
    except TargetError:
        return None


def unfit_reason(lock: LockChoice, target: Target) -> str | None:
    """Why ``lock`` cannot serve the interpreter ``target``; None when it can.

    First bootstrap.py's rule (:func:`bootstrap.lock_mismatch`: Python, platform, machine,
    free-threading, libc and its policy, macOS), so a wheelhouse's ``bootstrap.py`` and
    ``provision`` agree on which locks fit; then what the lock file itself says.
    """
    facts = _facts_of(lock)
    if facts is None:
        return f"{lock.target} is not a target identifier"
    why = bootstrap.lock_mismatch(lock.target, facts, interpreter_facts(target))
    return why or _content_mismatch(lock, target)


def choose_lock(locks: Sequence[LockChoice], target: Target) -> LockChoice:
    """The lock that serves the interpreter ``target`` best; :class:`UsageError` when none.

    Which locks fit is :func:`unfit_reason`; the best of them is bootstrap.py's
    :func:`bootstrap.best_lock` (the newest libc/macOS policy), the rule bootstrap.py applies.
    """
    reasons = [(lock, unfit_reason(lock, target)) for lock in locks]
    fitting: dict[str, LockChoice] = {}
    for lock, why in reasons:
        if why is None:
            fitting.setdefault(lock.target, lock)
    if not fitting:
        why = "; ".join(f"{lock.target}: {reason}" for lock, reason in reasons)
        raise UsageError(
            f"no lock in the wheelhouse fits Python {target.full_version} ({target.identifier})",
            hint=f"{why or 'the wheelhouse has no locks'}; pass --target to force one",
            target=target.identifier,
        )
    facts = {name: lock_target_facts(parse_target(name)) for name in fitting}
    return fitting[bootstrap.best_lock(facts, fitting)]


def verify_lock_files(wheelhouse: Path, lock: LockChoice, tools: Sequence[dict[str, Any]]) -> None:
    """Every file to install must be there with its size and sha256; else :class:`ProvisionError`."""
    if lock.sdist_only:
        raise ProvisionError(
            f"{', '.join(lock.sdist_only)} in {lock.file} has no wheel (only an sdist); "
            "it cannot be installed offline",
            hint="run `wheelport sync` to build it",
            package=lock.sdist_only[0],
            target=lock.target,
        )
    problems = bootstrap.verify_files(str(wheelhouse), list(lock.packages) + list(tools), lock.file)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        if first.problem == "unsafe":
            message = f"refusing to install from {wheelhouse}: {first}{more}"
        elif first.problem == "missing":
            message = f"{wheelhouse / first.path} is missing{more}"
        else:
            message = (
                f"{wheelhouse / first.path} is tampered: {first.problem} is {first.actual}, "
                f"the lock says {first.expected}{more}"
            )
        raise ProvisionError(
            message, hint="re-run `wheelport sync`", path=first.path, target=lock.target
        )


# --------------------------------------------------------------------------- uv


def find_uv(*, environ: dict[str, str] | None = None, prefix: str | None = None) -> str | None:
    """A uv binary: on PATH, or in the running environment (``sys.prefix/bin/uv``)."""
    env = os.environ if environ is None else environ
    found = shutil.which("uv", path=env.get("PATH"))
    if found:
        return found
    for name in ("bin/uv", "Scripts/uv.exe"):
        path = os.path.join(prefix or sys.prefix, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def unpack_uv_wheel(wheel: Path, directory: Path) -> str:
    """Extract the ``uv`` executable from a uv wheel (``uv-*.data/scripts/uv``) into ``directory``."""
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            parts = name.split("/")
            if (
                len(parts) == 3
                and parts[0].endswith(".data")
                and parts[1] == "scripts"
                and parts[2] in ("uv", "uv.exe")
            ):
                dest = directory / parts[2]
                dest.write_bytes(zf.read(name))
                dest.chmod(0o755)
                return str(dest)
    raise ProvisionError(f"{wheel} holds no uv executable", path=str(wheel))


def uv_install_commands(uv: str, python: str, venv: Path, req: str, links: str) -> list[list[str]]:
    """The uv commands: create the venv, install the pinned hashed requirements offline."""
    return [
        [uv, "venv", "--no-config", "--offline", "--no-python-downloads", "--python", python,
         "-q", str(venv)],
        [uv, "pip", "install", "--offline", "--no-index", "--no-config", "--no-deps",
         "--require-hashes", "--find-links", links, "--python", bootstrap.venv_python(str(venv)),
         "-q", "-r", req],
    ]  # fmt: skip


def _uv_install(
    venv: Path,
    wheelhouse: Path,
    lock: LockChoice,
    python: str,
    uv: str,
    runner: Runner,
) -> tuple[bool, str]:
    env = bootstrap.scrubbed_env()
    with tempfile.TemporaryDirectory(prefix="wheelport-provision-") as work:
        links = os.path.join(work, "wheels")
        os.mkdir(links)
        bootstrap.link_files(str(wheelhouse), lock.packages, links)
        req = os.path.join(work, "requirements.txt")
        Path(req).write_text(bootstrap.requirements_text(lock.packages), encoding="utf-8")
        try:
            for cmd in uv_install_commands(uv, python, venv, req, links):
                proc = runner(cmd, env=env)
                if proc.returncode != 0:
                    raise ProvisionError(
                        f"uv failed installing {lock.file} into {venv}: {proc.last_line}",
                        target=lock.target,
                    )
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
    check = [uv, "pip", "check", "--no-config", "--offline", "--python",
             bootstrap.venv_python(str(venv))]  # fmt: skip
    proc = runner(check, env=env)
    return proc.returncode == 0, proc.output.strip()


# --------------------------------------------------------------------------- the verb


def provision(
    venv: Path,
    *,
    wheelhouse: Path,
    python: str | None = None,
    target: str | None = None,
    installer: str = "pip",
    runner: Runner = subprocess_runner,
) -> ProvisionReport:
    """Create ``venv`` holding exactly one lock of ``wheelhouse``, offline.

    Nothing is created until every file to install has been verified; a failed install
    removes the venv. Raises :class:`UsageError` (bad input: no such lock, no interpreter,
    venv exists) or :class:`ProvisionError` (tampered/missing file, failed install).
    """
    started = time.monotonic()
    venv = Path(venv).absolute()
    wheelhouse = Path(wheelhouse)
    if installer not in INSTALLERS:
        raise UsageError(f"unknown installer {installer!r}", hint="use pip or uv")
    lock_paths = sorted(wheelhouse.glob("pylock.*.toml"))
    if not lock_paths:
        raise UsageError(
            f"{wheelhouse} has no pylock.*.toml", hint="run `wheelport lock` or `wheelport sync`"
        )
    # a shared lock: a concurrent `wheelport sync` cannot replace files while they are
    # verified and installed (it waits, and so does this for a sync already running)
    with Wheelhouse(wheelhouse).locked("provision", shared=True):
        interpreter = find_interpreter(python, runner=runner)
        if target is not None:
            path = wheelhouse / f"pylock.{target}.toml"
            if not path.is_file():
                present = ", ".join(p.name for p in lock_paths)
                raise UsageError(f"{path} does not exist; locks present: {present}", target=target)
            lock = read_lock_choice(path)
        else:
            locks = [read_lock_choice(p) for p in lock_paths]
            pip_wheels = [(t, lk.file) for lk in locks for t in lk.tools if t["name"] == "pip"]
            pip_wheel = (  # put on sys.path of the probe: it must be the wheelhouse's own
                Wheelhouse(wheelhouse).contained(pip_wheels[0][0]["path"], pip_wheels[0][1])
                if pip_wheels
                else None
            )
            lock = choose_lock(
                locks, probe_interpreter(interpreter, pip_wheel=pip_wheel, runner=runner)
            )
        tools = [t for t in lock.tools if t["name"] == ("pip" if installer == "pip" else "uv")]
        uv = find_uv() if installer == "uv" else None
        if installer == "pip" and not tools:
            raise UsageError(f"{lock.file} lists no pip wheel in tool.wheelport.tools",
                             hint="re-run `wheelport sync`")  # fmt: skip
        if installer == "uv" and uv is None and not tools:
            raise UsageError("uv not found (not on PATH, not in this environment, not in the lock)",
                             hint="install uv or use --installer pip")  # fmt: skip
        if installer == "uv" and uv is not None:
            tools = []
        verify_lock_files(wheelhouse, lock, tools)
        try:
            bootstrap.check_venv_path(str(venv))
        except bootstrap.BootstrapError as exc:
            raise UsageError(exc.message, path=str(venv)) from exc
        try:
            if installer == "pip":
                ok, output = bootstrap.install_lock(
                    str(venv), str(wheelhouse), lock.packages, tools[0], interpreter, runner
                )
            elif uv is not None:
                ok, output = _uv_install(venv, wheelhouse, lock, interpreter, uv, runner)
            else:
                with tempfile.TemporaryDirectory(prefix="wheelport-uv-") as tmp:
                    uv = unpack_uv_wheel(
                        Wheelhouse(wheelhouse).contained(tools[0]["path"], lock.file), Path(tmp)
                    )
                    ok, output = _uv_install(venv, wheelhouse, lock, interpreter, uv, runner)
        except bootstrap.BootstrapError as exc:
            raise ProvisionError(f"{exc.message} (into {venv})", target=lock.target) from exc
    return ProvisionReport(
        venv=venv,
        python=interpreter,
        target=lock.target,
        lock=lock.file,
        installer=installer,
        packages=tuple((p["name"], p["version"]) for p in lock.packages),
        check_ok=ok,
        check_output=output,
        seconds=time.monotonic() - started,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wheelport.provision VENV -w WH [...]``: provision and print the JSON report."""
    import argparse

    from wheelport.errors import WheelportError

    parser = argparse.ArgumentParser(prog="python -m wheelport.provision")
    parser.add_argument("venv", type=Path)
    parser.add_argument("-w", "--wheelhouse", type=Path, default=Path("wheelhouse"))
    parser.add_argument("--python")
    parser.add_argument("-t", "--target")
    parser.add_argument("--installer", choices=INSTALLERS, default="pip")
    args = parser.parse_args(argv)
    try:
        report = provision(
            args.venv,
            wheelhouse=args.wheelhouse,
            python=args.python,
            target=args.target,
            installer=args.installer,
        )
    except WheelportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.return_code
    print(json.dumps(report.to_json(), indent=2))
    return 0 if report.check_ok else 1


if __name__ == "__main__":
    sys.exit(main())
