"""Install a wheelhouse's lock into a new virtual environment, with nothing but the stdlib.

This file is copied verbatim into every wheelhouse as ``bootstrap.py`` and run as::

    python3 wheelhouse/bootstrap.py .venv [--target ID]

on a machine that has Python (3.8 or newer) but not wheelport. It reads the ``locks``
section of ``wheelport.json`` beside itself, picks the lock that fits the running
interpreter (or ``--target``), verifies the sha256 of every file it will install before
creating anything, creates the venv without pip, then runs pip out of the wheelhouse's pip
wheel with the venv's interpreter (isolated, no index, no deps, hashes required, a scrubbed
environment) to install pip itself and the lock's wheels in one go, then runs the venv's
``pip check``. A failed install removes the venv it created.

Exit codes: 0 success, 1 the job failed (tampered or missing file, failed install),
2 bad usage (no lock fits, unknown target, no manifest).

``wheelport.provision`` (and ``wheelport docker``) import the small functions here so both
share one piece of logic: which lock fits and which fits best (:func:`lock_mismatch`,
:func:`best_lock`), verification, the install commands; its runner has the shape of
``wheelport.process.Runner``, so wheelport passes its own.
Keep this file stdlib-only and valid on Python 3.8 (no ``match``, no ``tomllib``).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # annotations only: this file must import on Python 3.8
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Protocol, Union

    Entry = dict[str, Any]
    StrPath = Union[str, "os.PathLike[str]"]

    class Outcome(Protocol):
        """What a runner reports (``wheelport.process.RunResult`` has this shape)."""

        @property
        def returncode(self) -> int: ...
        @property
        def output(self) -> str: ...
        @property
        def last_line(self) -> str: ...

    class Runner(Protocol):
        """The shape of ``wheelport.process.Runner``: wheelport hands its runner in as is."""

        def __call__(
            self,
            argv: Sequence[str],
            *,
            cwd: StrPath | None = None,
            env: Mapping[str, str] | None = None,
            log: StrPath | None = None,
            timeout: float | None = None,
        ) -> Outcome: ...


MANIFEST_NAME = "wheelport.json"

#: environment variables removed before running an installer: anything that could point
#: pip or uv at another index, other files or another configuration
SCRUB_PREFIXES = ("PIP_", "UV_")
SCRUB_NAMES = ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "VIRTUAL_ENV", "CONDA_PREFIX")


class BootstrapError(Exception):
    """A failure with the one line to show and the exit code (1 job failed, 2 bad usage)."""

    def __init__(self, message: str, code: int = 1, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.path = path


class FileProblem:
    """One file that failed verification: missing, wrong size or wrong sha256."""

    def __init__(self, path: str, problem: str, expected: str = "", actual: str = "") -> None:
        self.path = path
        self.problem = problem  # "missing", "size", "sha256" or "unsafe"
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        if self.problem == "missing":
            return f"{self.path} is missing"
        if self.problem == "unsafe":  # expected: where the path came from; actual: why
            return f"{self.path!r} in {self.expected} escapes the wheelhouse: {self.actual}"
        return f"{self.path} has {self.problem} {self.actual}, the lock says {self.expected}"

    def __repr__(self) -> str:
        return f"FileProblem({self.path!r}, {self.problem!r})"


# --------------------------------------------------------------------------- interpreter facts


def libc() -> tuple[str | None, tuple[int, int] | None]:
    """The C library of this Linux machine: ("glibc", (2, 36)), ("musl", (1, 2)) or (None, None)."""
    if not sys.platform.startswith("linux"):
        return None, None
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        text = ""
    m = re.match(r"glibc (\d+)\.(\d+)", text)
    if m:
        return "glibc", (int(m.group(1)), int(m.group(2)))
    for loader in sorted(glob.glob("/lib/ld-musl-*.so.1")):
        try:
            proc = subprocess.run([loader], capture_output=True, text=True, check=False)
        except OSError:
            continue
        m = re.search(r"Version (\d+)\.(\d+)", proc.stderr + proc.stdout)
        if m:
            return "musl", (int(m.group(1)), int(m.group(2)))
    return None, None


def interpreter_env() -> dict[str, Any]:
    """The facts of the running interpreter that decide which lock fits it."""
    kind, version = libc()
    mac = None
    if sys.platform == "darwin":
        parts = (platform.mac_ver()[0] or "0.0").split(".")
        mac = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
    return {
        "python_version": "{}.{}".format(*sys.version_info[:2]),
        "sys_platform": sys.platform,
        "platform_machine": platform.machine(),
        "libc": kind,
        "libc_version": version,
        "macos_version": mac,
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    }


# --------------------------------------------------------------------------- choosing a lock


def lock_mismatch(name: str, lock: Entry, env: dict[str, Any]) -> str | None:
    """Why the lock ``name`` (its manifest ``locks`` entry) does not fit the interpreter
    described by ``env`` (:func:`interpreter_env`'s facts); None when it fits."""
    for key in ("python_version", "sys_platform", "platform_machine"):
        if lock.get(key) is not None and lock.get(key) != env.get(key):
            return f"{key} is {env.get(key)}, not {lock.get(key)}"
    free = bool(re.match(r"^cp\d+t-", name))
    if free != bool(env.get("free_threaded")):
        return "free-threading differs"
    policy = tuple(lock["policy"]) if lock.get("policy") else None
    kind = lock.get("libc")
    if kind:
        if env.get("libc") != kind:
            return "libc is {}, not {}".format(env.get("libc"), kind)
        if policy and (env.get("libc_version") is None or tuple(env["libc_version"]) < policy):
            return "{} {} is older than {}".format(
                kind,
                _dotted(env.get("libc_version")),
                _dotted(policy),
            )
    elif policy and lock.get("sys_platform") == "darwin":
        mac = env.get("macos_version")
        if mac is None or tuple(mac) < policy:
            return f"macOS {_dotted(mac)} is older than {_dotted(policy)}"
    return None


def _dotted(version: Sequence[int] | None) -> str:
    return "?" if version is None else ".".join(str(v) for v in version)


def select_lock(locks: dict[str, Entry], env: dict[str, Any], target: str | None = None) -> str:
    """The name of the lock that fits ``env`` (:func:`lock_mismatch`) best (:func:`best_lock`).

    ``target`` picks a lock by name instead. Raises :class:`BootstrapError` (code 2) listing
    the available targets when none fits or ``target`` is unknown.
    """
    available = ", ".join(sorted(locks)) or "none"
    if target is not None:
        if target not in locks:
            raise BootstrapError(
                f"no lock for target {target} in this wheelhouse; available: {available}", 2
            )
        return target
    fits = [name for name in sorted(locks) if lock_mismatch(name, locks[name], env) is None]
    if not fits:
        raise BootstrapError(
            "no lock fits this Python ({} {} {}{}); available targets: {}; "
            "pass --target ID to force one".format(
                env.get("python_version"),
                env.get("sys_platform"),
                env.get("platform_machine"),
                " " + str(env.get("libc")) + " " + _dotted(env.get("libc_version"))
                if env.get("libc")
                else "",
                available,
            ),
            2,
        )
    return best_lock(locks, fits)


def lock_preference(lock: Entry) -> tuple[int, tuple[int, ...]]:
    """How well a lock that fits serves the interpreter, higher is better: a lock for a C
    library (manylinux, musllinux) over a plain ``linux_*`` one, then the newest glibc, musl
    or macOS policy (the most specific wheels the machine can run)."""
    return (1 if lock.get("libc") else 0, tuple(lock.get("policy") or ()))


def best_lock(locks: dict[str, Entry], fitting: Iterable[str]) -> str:
    """The name of the best lock among the ``fitting`` names of ``locks``
    (:func:`lock_preference`; of equals, the first by name). bootstrap.py, ``wheelport
    provision`` and ``wheelport docker`` all choose with this one rule."""
    return max(sorted(fitting), key=lambda name: lock_preference(locks[name]))


# --------------------------------------------------------------------------- verifying files


def sha256_of(path: str) -> str:
    """The hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def lexical_escape(rel: object) -> str | None:
    """Why the relative path ``rel`` leaves any directory it is joined to, read from its text
    alone (not a string, empty, a NUL, absolute, a drive, a ``..`` component), or None.
    Archive members (wheels, bundles) and paths read from files are checked with it."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        return "not a relative file path"
    if rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel) or os.path.isabs(rel):
        return "an absolute path"
    if ".." in re.split(r"[/\\]", rel):
        return "a '..' component"
    return None


def escape_reason(root: str, rel: object) -> str | None:
    """Why the path ``rel`` (read from a lock, the manifest or a bundle) would leave ``root``
    once joined to it: absolute, a ``..`` component, or resolving (symlinks included) outside
    ``root``. None when it stays inside. wheelport's ``wheelhouse.contained`` uses this too.
    """
    why = lexical_escape(rel)
    if why is not None:
        return why
    assert isinstance(rel, str)
    parts = re.split(r"[/\\]", rel)
    base = os.path.realpath(root)
    full = os.path.realpath(os.path.join(base, *parts))
    if full != base and not full.startswith(base.rstrip(os.sep) + os.sep):
        return "it resolves to {} (through a symlink)".format(full)
    return None


def verify_files(root: str, entries: Sequence[Entry], source: str = "") -> list[FileProblem]:
    """Check each entry's file (``path`` relative to ``root``) against its sha256 and size.

    Entries are dicts with ``path``, ``sha256`` and optionally ``size``. Returns the problems
    found (empty when everything is intact); reads only, creates nothing. A path that would
    leave ``root`` (:func:`escape_reason`) is a problem ``unsafe`` and is never opened;
    ``source`` names the file the entries came from in that message.
    """
    problems = []
    for entry in entries:
        rel = entry["path"]
        why = escape_reason(root, rel)
        if why is not None:
            problems.append(FileProblem(str(rel), "unsafe", source or "the lock", why))
            continue
        full = os.path.join(root, *rel.split("/"))
        if not os.path.isfile(full):
            problems.append(FileProblem(rel, "missing"))
            continue
        size = entry.get("size")
        if size is not None and os.path.getsize(full) != int(size):
            problems.append(FileProblem(rel, "size", str(size), str(os.path.getsize(full))))
            continue
        actual = sha256_of(full)
        if actual != entry["sha256"]:
            problems.append(FileProblem(rel, "sha256", entry["sha256"], actual))
    return problems


#: a ``path = "…"`` (or ``'…'``) key of a TOML table, inline or not
_TOML_PATH = re.compile(r"""(?:^|[{,\s])path\s*=\s*("(?:[^"\\]|\\.)*"|'[^']*')""", re.M)


def lock_file_paths(text: str) -> list[str]:
    """Every ``path`` value of a PEP 751 lock's text (packages' wheels, sdists, archives,
    directories, and wheelport's tools). With ``tomllib`` (3.11+) the lock is parsed;
    older Pythons read the ``path = "…"`` keys, which is how those tables are written."""
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]

        parsed = tomllib.loads(text)
    except (ImportError, ValueError):  # before 3.11, or not TOML: read the keys as written
        out = []
        for raw in _TOML_PATH.findall(text):
            if raw.startswith('"'):
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    out.append(raw)
            else:
                out.append(raw[1:-1])
        return out
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "path" and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(parsed)
    return found


def check_lock_file(root: str, lock: Entry) -> list[FileProblem]:
    """The lock file a ``locks`` entry names (``file``: ``pylock.<target>.toml``): a name that
    leaves ``root``, or a path in it that does, is a problem ``unsafe`` — the rule ``verify``
    and ``provision`` apply to the same file, so the three refuse the same wheelhouse."""
    name = lock.get("file")
    if not name:
        return []
    why = escape_reason(root, name)
    if why is not None:
        return [FileProblem(str(name), "unsafe", "{} locks".format(MANIFEST_NAME), why)]
    try:
        with open(os.path.join(root, name), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return [FileProblem(str(name), "missing")]
    problems = []
    for rel in lock_file_paths(text):
        why = escape_reason(root, rel)
        if why is not None:
            problems.append(FileProblem(rel, "unsafe", name, why))
    return problems


# --------------------------------------------------------------------------- commands


def scrubbed_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` without ``PIP_*``/``UV_*``/``PYTHONPATH``-like variables.

    ``PIP_CONFIG_FILE`` is set to ``os.devnull`` so no pip.conf is read, and the uv/pip
    knobs that keep them quiet and offline are set explicitly.
    """
    source = os.environ if environ is None else environ
    env = {
        k: v for k, v in source.items() if not k.startswith(SCRUB_PREFIXES) and k not in SCRUB_NAMES
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    env["UV_NO_CONFIG"] = "1"
    env["UV_OFFLINE"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


def venv_python(venv: str) -> str:
    """The interpreter inside ``venv``."""
    if os.name == "nt":
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


def venv_command(python: str, venv: str) -> list[str]:
    """Create ``venv`` with ``python`` and no pip (pip comes from the wheelhouse)."""
    return [python, "-m", "venv", "--without-pip", venv]


def pip_install_command(
    venv: str, requirements: str, find_links: str, pip_wheel: str | None = None
) -> list[str]:
    """Install exactly the pinned, hashed ``requirements`` from ``find_links`` into ``venv``.

    With ``pip_wheel`` pip runs out of that wheel (``VENV/bin/python pip.whl/pip install``),
    which is how pip gets into a venv created ``--without-pip``: list pip itself in
    ``requirements`` and one pip run installs pip and the lock. Without it, the venv's pip runs.
    """
    runner = [os.path.join(pip_wheel, "pip")] if pip_wheel else ["-m", "pip"]
    return [
        venv_python(venv),
        *runner,
        "install",
        "--isolated",
        "--no-index",
        "--no-deps",
        "--require-hashes",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "-q",
        "--find-links",
        find_links,
        "-r",
        requirements,
    ]


def pip_check_command(venv: str) -> list[str]:
    """``pip check`` in ``venv``."""
    return [venv_python(venv), "-m", "pip", "--isolated", "check"]


def requirements_text(entries: Sequence[Mapping[str, Any]]) -> str:
    """``name==version --hash=sha256:…`` lines for ``entries`` (dicts with name/version/sha256),
    in their order: the one hashed requirements format of bootstrap.py, provision and docker."""
    return "".join(f"{e['name']}=={e['version']} --hash=sha256:{e['sha256']}\n" for e in entries)


def link_files(root: str, entries: Sequence[Entry], directory: str) -> None:
    """Put exactly the files of ``entries`` into ``directory`` (symlinks, copies where not allowed).

    pip/uv then see only the lock's files, never another build of the same version.
    """
    for entry in entries:
        source = os.path.abspath(os.path.join(root, *entry["path"].split("/")))
        dest = os.path.join(directory, os.path.basename(source))
        try:
            os.symlink(source, dest)
        except (OSError, NotImplementedError):
            shutil.copyfile(source, dest)


# --------------------------------------------------------------------------- the whole job


def load_locks(root: str) -> dict[str, Entry]:
    """The ``locks`` section of ``root/wheelport.json``; BootstrapError (2) when absent."""
    path = os.path.join(root, MANIFEST_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except OSError:
        raise BootstrapError(
            f"{path} not found; run bootstrap.py from its wheelhouse", 2, path
        ) from None
    except ValueError as exc:
        raise BootstrapError(f"{path} is not valid JSON: {exc}", 2, path) from None
    locks = manifest.get("locks")
    if not isinstance(locks, dict) or not locks:
        raise BootstrapError(
            f"{path} has no locks section; re-run `wheelport sync` to write one", 2, path
        )
    return locks


def pip_tool(lock: Entry, name: str = "") -> Entry:
    """The pip wheel entry in ``lock['tools']``; BootstrapError (2) naming the lock when absent."""
    for tool in lock.get("tools") or ():
        if tool.get("name") == "pip":
            return dict(tool)
    raise BootstrapError(
        "lock %s lists no pip wheel in its tools; re-run `wheelport sync`" % (name or "?"), 2
    )


def check_venv_path(venv: str) -> None:
    """Refuse to provision into an existing non-empty directory (code 2)."""
    if os.path.exists(venv) and (not os.path.isdir(venv) or os.listdir(venv)):
        raise BootstrapError(f"{venv} already exists; remove it or choose another path", 2, venv)


class RunResult(NamedTuple):  # frozen; not a dataclass, which needs sys.modules on 3.8
    """A finished command: its exit code and combined stdout/stderr (``wheelport.process``
    uses this one type)."""

    returncode: int
    output: str

    @property
    def last_line(self) -> str:
        """The last non-blank line of the output ("" when there is none)."""
        lines = [line for line in self.output.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


def subprocess_runner(
    argv: Sequence[str],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    log: StrPath | None = None,
    timeout: float | None = None,
) -> RunResult:
    """Run ``argv`` (stdin closed) and capture its output, into ``log`` too when given:
    the default runner of bootstrap.py and of wheelport (``wheelport.process``). Raises
    ``OSError`` when the program cannot start and ``subprocess.TimeoutExpired`` (the child
    killed) when ``timeout`` passes."""
    child_env = dict(env) if env is not None else None
    if log is None:
        proc = subprocess.run(list(argv), cwd=cwd, env=child_env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                              check=False)  # fmt: skip
        data = proc.stdout or b""
    else:
        parent = os.path.dirname(os.path.abspath(log))
        os.makedirs(parent, exist_ok=True)
        with open(log, "wb") as fh:
            proc = subprocess.run(list(argv), cwd=cwd, env=child_env, stdin=subprocess.DEVNULL,
                                  stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                                  check=False)  # fmt: skip
        with open(log, "rb") as fh:
            data = fh.read()
    return RunResult(proc.returncode, data.decode("utf-8", "replace"))


def _run(runner: Runner, cmd: list[str], env: dict[str, str], what: str) -> None:
    result = runner(cmd, env=env)
    if result.returncode != 0:
        raise BootstrapError(
            "{} failed: {}".format(what, result.last_line or f"exit {result.returncode}")
        )


def install_lock(
    venv: str,
    root: str,
    packages: Sequence[Entry],
    pip_wheel: Entry,
    python: str | None = None,
    runner: Runner = subprocess_runner,
    environ: dict[str, str] | None = None,
) -> tuple[bool, str]:
    """Create ``venv`` and install ``packages`` into it with pip from ``pip_wheel``.

    The files must already be verified. Returns ``(check_ok, pip check output)``. On any
    failure the venv this call created is removed and :class:`BootstrapError` is raised.
    """
    python = python or sys.executable
    env = scrubbed_env(environ)
    venv = os.path.abspath(venv)
    existed = os.path.isdir(venv)
    wanted = list(packages)
    if not any(p["name"] == "pip" for p in wanted):
        wanted.append(pip_wheel)
    work = tempfile.mkdtemp(prefix="wheelport-provision-")
    try:
        links = os.path.join(work, "wheels")
        os.mkdir(links)
        link_files(root, wanted, links)
        req = os.path.join(work, "requirements.txt")
        with open(req, "w", encoding="utf-8") as f:
            f.write(requirements_text(wanted))
        wheel_path = os.path.abspath(os.path.join(root, *pip_wheel["path"].split("/")))
        try:
            _run(runner, venv_command(python, venv), env, "creating the venv")
            _run(runner, pip_install_command(venv, req, links, wheel_path), env, "pip install")
        except BaseException:
            if not existed:
                shutil.rmtree(venv, ignore_errors=True)
            raise
        check = runner(pip_check_command(venv), env=env)
        return check.returncode == 0, check.output.strip()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ===================================================================== stdlib only (bootstrap)
# Bundles (``--from-bundle``): stdlib only, Python 3.8+. ``wheelport.export.bundle`` imports
# these, so the archive format is read by one piece of code on both sides of the air gap.


class BundleError(Exception):
    """A bundle that cannot be used: corrupt, truncated, tampered or unsafe. One line."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


class _ProcReader(io.RawIOBase):
    """The stdout of a decompressor process as a file; raises if the process fails at EOF."""

    def __init__(self, proc: Any, what: str) -> None:
        self._proc = proc
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._proc.stdout.read(len(buf))
        if not data:
            rc = self._proc.wait()
            if rc != 0:
                err = self._proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
                raise BundleError(
                    "%s: zstd failed: %s" % (self._what, err[-1] if err else "exit %d" % rc)
                )
            return 0
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()
        super().close()


def open_bundle_stream(path: str) -> Any:
    """Open ``path`` and return a binary file of its decompressed tar stream.

    The compression is detected from the first bytes (zstd, gzip, or a plain tar). zstd uses
    the ``zstandard`` module, ``compression.zstd`` (Python 3.14) or the ``zstd`` program,
    whichever is present. Integrity errors of the compressed stream surface as
    :class:`BundleError` at the latest when the stream is read to its end.
    """
    import gzip

    with open(path, "rb") as probe:
        head = probe.read(4)
    if head.startswith(_GZIP_MAGIC):
        return gzip.open(path, "rb")
    raw = open(path, "rb")
    if head != _ZSTD_MAGIC:
        return raw
    try:
        import zstandard  # type: ignore[import-not-found,unused-ignore]

        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    except ImportError:
        pass
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]

        return zstd.ZstdFile(raw, mode="rb")
    except ImportError:
        pass
    import shutil as _shutil
    import subprocess as _subprocess

    exe = _shutil.which("zstd")
    if exe is None:
        raw.close()
        raise BundleError(
            "%s is zstd-compressed but neither the zstandard module nor the zstd program is "
            "available; install zstd, or make the bundle with --compression gzip" % path
        )
    proc = _subprocess.Popen(
        [exe, "-dc", "-q"], stdin=raw, stdout=_subprocess.PIPE, stderr=_subprocess.PIPE
    )
    raw.close()
    return io.BufferedReader(_ProcReader(proc, path), buffer_size=1 << 20)


def _safe_member_path(name: str) -> bool:
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts) and ":" not in parts[0]


def _read_bundle_manifest(tar: Any, member: Any, where: str) -> dict:  # type: ignore[type-arg]
    name = "BUNDLE-MANIFEST.json"
    if member is None or member.name != name or not member.isreg():
        raise BundleError(
            "%s is not a wheelport bundle (its first member is not %s)" % (where, name)
        )
    if member.size > 256 * 1024 * 1024:
        raise BundleError("%s: %s is implausibly large" % (where, name))
    f = tar.extractfile(member)
    data = f.read() if f is not None else b""
    if len(data) != member.size:
        raise BundleError("%s is truncated (in %s)" % (where, name), name)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError:
        raise BundleError("%s: %s is not valid JSON" % (where, name), name) from None
    if not isinstance(manifest, dict) or manifest.get("format") != "wheelport-bundle":
        raise BundleError("%s: %s is not a wheelport bundle manifest" % (where, name), name)
    if manifest.get("version") != 1:
        raise BundleError(
            "%s: bundle format version %r is not supported by this program"
            % (where, manifest.get("version")),
            name,
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError("%s: %s has no file list" % (where, name), name)
    for rel, rec in files.items():
        if not _safe_member_path(rel):
            raise BundleError("%s: unsafe path %r in %s" % (where, rel, name), rel)
        if not (isinstance(rec, dict) and isinstance(rec.get("sha256"), str)
                and isinstance(rec.get("size"), int)):  # fmt: skip
            raise BundleError("%s: bad record for %s in %s" % (where, rel, name), rel)
    return manifest


def _extract_into(bundle: str, workdir: str) -> dict:  # type: ignore[type-arg]
    """Stream ``bundle`` into the existing empty directory ``workdir``, verifying everything."""
    import hashlib as _hashlib
    import tarfile as _tarfile
    import zlib as _zlib

    where = bundle
    current = "BUNDLE-MANIFEST.json"
    stream = open_bundle_stream(bundle)
    try:
        try:
            tar = _tarfile.open(fileobj=stream, mode="r|")
            manifest = _read_bundle_manifest(tar, tar.next(), where)
            files = manifest["files"]
            seen = set()
            while True:
                member = tar.next()
                if member is None:
                    break
                current = member.name
                if not _safe_member_path(member.name):
                    raise BundleError(
                        "%s: refusing unsafe member path %r" % (where, member.name), member.name
                    )
                if not member.isreg():
                    raise BundleError(
                        "%s: refusing %s: not a regular file (links and devices are not allowed)"
                        % (where, member.name),
                        member.name,
                    )
                rec = files.get(member.name)
                if rec is None:
                    raise BundleError(
                        "%s: %s is not listed in the bundle manifest" % (where, member.name),
                        member.name,
                    )
                if member.name in seen:
                    raise BundleError(
                        "%s: %s appears twice in the bundle" % (where, member.name), member.name
                    )
                seen.add(member.name)
                if member.size != rec["size"]:
                    raise BundleError(
                        "%s: %s has size %d, the manifest says %d (tampered bundle)"
                        % (where, member.name, member.size, rec["size"]),
                        member.name,
                    )
                dest = os.path.join(workdir, *member.name.split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                h = _hashlib.sha256()
                got = 0
                src = tar.extractfile(member)
                with open(dest, "xb") as out:
                    while True:
                        chunk = src.read(1 << 20) if src is not None else b""
                        if not chunk:
                            break
                        got += len(chunk)
                        h.update(chunk)
                        out.write(chunk)
                if got != rec["size"]:
                    raise BundleError("%s is truncated (in %s)" % (where, member.name), member.name)
                if h.hexdigest() != rec["sha256"]:
                    raise BundleError(
                        "%s: %s does not match its sha256 (got %s, manifest says %s): the bundle "
                        "was tampered with or damaged"
                        % (where, member.name, h.hexdigest(), rec["sha256"]),
                        member.name,
                    )
            current = "the end of the archive"
            # read to the very end so the decompressor checks its own checksum
            while stream.read(1 << 20):
                pass
        except BundleError as exc:
            if exc.path is None:  # the decompressor failed: say where in the archive
                raise BundleError("%s (at %s)" % (exc.message, current), current) from None
            raise
        except (_tarfile.TarError, EOFError, OSError, _zlib.error, ValueError) as exc:
            raise BundleError(
                "%s is truncated or corrupt (at %s): %s"
                % (where, current, exc or type(exc).__name__),
                current,
            ) from None
        except Exception as exc:  # zstandard.ZstdError and friends
            raise BundleError(
                "%s is corrupt (at %s): %s" % (where, current, exc), current
            ) from None
    finally:
        stream.close()
    missing = sorted(set(files) - seen)
    if missing:
        raise BundleError(
            "%s is truncated: %s (and %d more) missing" % (where, missing[0], len(missing) - 1)
            if len(missing) > 1
            else "%s is truncated: %s missing" % (where, missing[0]),
            missing[0],
        )
    return manifest


def extract_bundle(bundle: str, dest: str, check: Any = None) -> dict:  # type: ignore[type-arg]
    """Verify and extract the bundle file ``bundle`` into the new directory ``dest``.

    ``dest`` must not exist or be an empty directory. Files are written into a temporary
    directory beside ``dest``; ``check(tempdir)`` (if given) runs after every member
    verified; only then is the directory renamed to ``dest``. On any failure nothing is left
    behind and :class:`BundleError` names the file. Returns the bundle manifest.
    """
    import shutil as _shutil
    import tempfile as _tempfile

    dest = os.path.abspath(dest)
    if os.path.lexists(dest) and not (os.path.isdir(dest) and not os.listdir(dest)):
        raise BundleError("%s already exists and is not empty; choose a new directory" % dest, dest)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    work = _tempfile.mkdtemp(prefix=".%s.unbundle-" % os.path.basename(dest), dir=parent)
    try:
        manifest = _extract_into(bundle, work)
        if check is not None:
            check(work)
        if os.path.isdir(dest):
            os.rmdir(dest)
        os.rename(work, dest)
    except BaseException:
        _shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


# ===================================================================== END stdlib only


def main(argv: Sequence[str] | None = None) -> int:
    """Run bootstrap.py: pick a lock, verify, create the venv, install, check. Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="bootstrap.py", description="Create a venv from this wheelhouse, offline."
    )
    parser.add_argument("venv", help="directory of the virtual environment to create")
    parser.add_argument("--target", help="lock to install (default: the one fitting this Python)")
    parser.add_argument(
        "--wheelhouse", default=os.path.dirname(os.path.abspath(__file__)), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--from-bundle",
        metavar="BUNDLE",
        help="verify and unpack a wheelport bundle first, then install from it",
    )
    parser.add_argument(
        "--unpack-to",
        metavar="DIR",
        help="where --from-bundle unpacks the wheelhouse (default: ./wheelhouse)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.from_bundle:
            dest = args.unpack_to or os.path.join(os.getcwd(), "wheelhouse")
            try:
                extract_bundle(args.from_bundle, dest)
            except BundleError as exc:
                raise BootstrapError(exc.message, 1, exc.path) from None
            except OSError as exc:
                raise BootstrapError(
                    "cannot read bundle {}: {}".format(args.from_bundle, exc), 2
                ) from None
            args.wheelhouse = dest
        locks = load_locks(args.wheelhouse)
        name = select_lock(locks, interpreter_env(), args.target)
        lock = locks[name]
        packages = [dict(p) for p in lock.get("packages") or ()]
        pip_wheel = pip_tool(lock, name)
        problems = verify_files(
            args.wheelhouse, [*packages, pip_wheel], "{} locks[{}]".format(MANIFEST_NAME, name)
        ) + check_lock_file(args.wheelhouse, lock)
        if problems:
            raise BootstrapError(
                "refusing to install: {}{}".format(
                    problems[0],
                    f" (and {len(problems) - 1} more)" if len(problems) > 1 else "",
                ),
                1,
                problems[0].path,
            )
        check_venv_path(args.venv)
        ok, output = install_lock(args.venv, args.wheelhouse, packages, pip_wheel)
    except BootstrapError as exc:
        sys.stderr.write(f"bootstrap.py: error: {exc.message}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130
    sys.stdout.write(
        f"installed {len(packages)} packages for {name} into {args.venv} "
        f"in {time.monotonic() - started:.1f}s\n"
    )
    if not ok:
        sys.stdout.write(f"pip check found problems:\n{output}\n")
        return 1
    sys.stdout.write("pip check: ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
