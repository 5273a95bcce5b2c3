"""Isolated PEP 517 environments for metadata preparation and native builds.

A fresh venv (no pip inside) gets the project's ``build-system.requires`` installed by the
pip that runs wheelport (``pip --python``), with ``--isolated`` so nothing from pip.conf or
``PIP_*`` applies, and from exactly one source (:data:`DepsSource`): offline builds pass
``--no-index --find-links <wheelhouse>/wheels`` (the wheelhouse rebuilds itself without a
network); metadata builds use the one index, or, with several indexes, the wheels wheelport
resolved itself (the first index that has a project wins, as everywhere in wheelport; pip's
``--extra-index-url`` would merge the indexes). ``build.ProjectBuilder`` calls the hooks;
every command goes through the injected :class:`~wheelport.process.Runner`, so logs are
captured.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from wheelport import bootstrap
from wheelport.process import Runner, RunResult, subprocess_runner
from wheelport.reproduce import build_directory, source_date_epoch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from wheelport.errors import BuildError, RequirementError, WheelportError

if TYPE_CHECKING:
    from build import ProjectBuilder

    from wheelport.cache import Cache

#: where an isolated build's requirements come from: called with the requirements about to
#: be installed and a scratch directory of the build, it returns the pip arguments that name
#: exactly one source (an index, or a directory of wheels with ``--no-index``)
DepsSource = Callable[[Sequence[str], Path], Sequence[str]]


def find_links_source(wheels_dir: Path) -> DepsSource:
    """Build requirements only from the wheels in ``wheels_dir`` (no index at all)."""
    args = ("--no-index", "--find-links", str(wheels_dir))
    return lambda requirements, scratch: args


def index_source(index_url: str) -> DepsSource:
    """Build requirements from the one index ``index_url``."""
    args = ("--index-url", index_url)
    return lambda requirements, scratch: args


def resolved_source(
    index_urls: Sequence[str], cache: Cache | None = None, exclude_newer: str | None = None
) -> DepsSource:
    """Build requirements resolved by wheelport over ``index_urls`` (the first index that has
    a project serves it; wheels only, for the running interpreter, which the build venv is;
    only files uploaded before ``exclude_newer`` when given), downloaded (hashes checked) into
    a directory of the build that pip reads with ``--no-index``. ``cache`` is the lock's cache
    (else the default one). Raises :class:`WheelportError` when they cannot be resolved."""
    urls = list(index_urls)

    def source(requirements: Sequence[str], scratch: Path) -> Sequence[str]:
        from packaging.requirements import InvalidRequirement, Requirement

        from wheelport.config import SourcedRequirement
        from wheelport.index.client import IndexClient
        from wheelport.resolve import Policy, resolve_target
        from wheelport.targets import host_target

        try:
            roots = [SourcedRequirement(Requirement(r), "build requirements") for r in requirements]
        except InvalidRequirement as exc:
            raise RequirementError(f"invalid build requirement: {exc}") from None
        scratch.mkdir(parents=True, exist_ok=True)
        wheels = Path(tempfile.mkdtemp(prefix="deps-", dir=scratch))
        policy = Policy(only_binary=frozenset({":all:"}))
        with IndexClient(urls, cache=cache, exclude_newer=exclude_newer) as client:
            resolution = resolve_target(client, host_target(), roots, policy=policy)
            for pin in resolution.pins.values():
                shutil.copyfile(client.download(pin.file), wheels / pin.file.filename)
        return ("--no-index", "--find-links", str(wheels))

    return source


def index_urls_source(
    index_urls: Sequence[str], cache: Cache | None = None, exclude_newer: str | None = None
) -> DepsSource:
    """The one source for build requirements from ``index_urls``: that index when there is
    one, else :func:`resolved_source` (never pip's ``--extra-index-url``). With a cutoff
    (``--exclude-newer``) wheelport resolves them too, so the build runs as the index stood then."""
    urls = list(dict.fromkeys(index_urls))
    if len(urls) > 1 or (urls and exclude_newer is not None):
        return resolved_source(urls, cache, exclude_newer)
    if urls:
        return index_source(urls[0])
    return lambda requirements, scratch: ()  # pip's own default index


def build_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a build's commands: :func:`bootstrap.scrubbed_env` of this process
    (no pip/uv configuration leaks in), plus ``extra``."""
    env = bootstrap.scrubbed_env()
    if extra:
        env.update(extra)
    return env


def cert_args() -> list[str]:
    """``--cert`` for pip when this machine uses its own CA bundle (pip --isolated ignores PIP_CERT)."""
    bundle = os.environ.get("SSL_CERT_FILE") or os.environ.get("PIP_CERT")
    return ["--cert", bundle] if bundle and Path(bundle).is_file() else []


@dataclass
class BuildLog:
    """Every command a build ran and what it printed, for the log kept on failure."""

    lines: list[str] = field(default_factory=list)

    def add(self, cmd: Sequence[str], result: RunResult) -> None:
        self.lines.append("$ " + " ".join(cmd))
        self.lines.append(result.output)

    def text(self) -> str:
        return "\n".join(self.lines)


def extract_sdist(sdist: Path, dest: Path) -> Path:
    """Unpack an sdist safely and return its top directory."""
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as zf:
            for name in zf.namelist():
                if name.startswith("/") or ".." in Path(name).parts:
                    raise BuildError(
                        f"{sdist.name}: unsafe path {name!r} in archive", path=str(sdist)
                    )
            zf.extractall(dest)
    else:
        with tarfile.open(sdist) as tf:
            tf.extractall(dest, filter="data")
    entries = [p for p in dest.iterdir()]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest


class IsolatedBuild:
    """One sdist unpacked into a temporary directory with its own build venv.

    A context manager: ``__enter__`` creates the directory, unpacks the sdist and creates
    the venv (removing the directory again when any of that fails); ``__exit__`` removes it.
    """

    def __init__(
        self,
        sdist: Path,
        *,
        deps: DepsSource,
        command_prefix: Sequence[str] = (),
        label: str | None = None,
        missing_hint: str = "add it to the wheelhouse (it is resolved with the build's requirements)",
        runner: Runner = subprocess_runner,
        build_key: str | None = None,
    ) -> None:
        self.sdist = sdist
        #: builds with a key run in :func:`~wheelport.reproduce.build_directory` (the same path
        #: on every run, for reproducible wheels); without one, in a fresh random directory
        self.build_key = build_key
        #: the sdist's own file name (the path may be a content-addressed cache file)
        self.label = label or sdist.name
        self.missing_hint = missing_hint
        self.deps = deps
        #: e.g. ``unshare -n`` so the hooks and the install run with no network at all
        self.prefix = list(command_prefix)
        self.runner = runner
        self.log = BuildLog()

    def __enter__(self) -> IsolatedBuild:
        self._stack = contextlib.ExitStack()
        if self.build_key is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="wheelport-build-"))
            self._stack.callback(shutil.rmtree, self._tmp, ignore_errors=True)
        else:
            self._tmp = self._stack.enter_context(build_directory(self.build_key))
        try:
            self.srcdir = extract_sdist(self.sdist, self._tmp / "src")
            #: every hook writes its archives with the sdist's own time
            self.source_date_epoch = source_date_epoch(self.sdist)
            self.env_dir = self._tmp / "env"
            venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(self.env_dir)
            bindir = "Scripts" if os.name == "nt" else "bin"
            self.env_python = str(
                self.env_dir / bindir / ("python.exe" if os.name == "nt" else "python")
            )
            from build import ProjectBuilder

            self.builder: ProjectBuilder = ProjectBuilder(
                self.srcdir, python_executable=self.env_python, runner=self._run_hook
            )
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _run_hook(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        env = build_env(extra_environ)
        # reproducible wheels (zip timestamps): the same sdist gives the same bytes on any machine,
        # so wheelhouses built apart merge without conflicts (the host's own value would be an
        # input nothing records)
        env["SOURCE_DATE_EPOCH"] = str(self.source_date_epoch)
        env["PYTHONHASHSEED"] = "0"  # a backend's set and dict orders the same on every run
        env["PATH"] = str(Path(self.env_python).parent) + os.pathsep + env.get("PATH", "")
        res = self.runner(list(cmd), cwd=cwd, env=env)
        self.log.add(cmd, res)
        if res.returncode != 0:
            raise subprocess.CalledProcessError(res.returncode, cmd, output=res.output)

    def install(self, requirements: Sequence[str]) -> None:
        if not requirements:
            return
        try:
            source = self.deps(requirements, self._tmp / "deps")
        except WheelportError as exc:
            raise BuildError(
                f"{self.label}: build dependencies cannot be resolved: {exc.message}",
                hint=self.missing_hint,
                package=exc.package,
                path=str(self.sdist),
            ) from None
        cmd = [
            *self.prefix, sys.executable, "-m", "pip", "--python", self.env_python, "install", "--isolated",
            "--no-warn-script-location", "--disable-pip-version-check", "--only-binary", ":all:",
            *cert_args(), *source, *requirements,
        ]  # fmt: skip
        res = self.runner(cmd, env=build_env())
        self.log.add(cmd, res)
        if res.returncode != 0:
            missing = _missing_requirement(res.output)
            what = (
                f"build dependency {missing} is not available"
                if missing
                else "installing build dependencies failed"
            )
            raise BuildError(
                f"{self.label}: {what}",
                hint=self.missing_hint if missing else "see the build log",
                path=str(self.sdist),
            )

    def prepare(self, distribution: Literal["wheel", "sdist"] = "wheel") -> None:
        self.install(sorted(self.builder.build_system_requires))
        try:
            extra = self.builder.get_requires_for_build(distribution)
        except Exception as exc:
            raise self._hook_failed(f"get_requires_for_build_{distribution}", exc) from None
        self.install(sorted(extra))

    def _hook_failed(self, hook: str, exc: BaseException) -> BuildError:
        """The failure of a backend hook: which hook, which backend, and its last output line
        (what the backend said), not the wrapper's generic message."""
        backend = _backend_of(self.srcdir)
        said = [ln.strip() for ln in (self.log.lines[-1] if self.log.lines else "").splitlines()]
        detail = next((ln for ln in reversed(said) if ln), "") or _short(exc)
        return BuildError(
            f"{self.label}: PEP 517 hook {hook} of backend {backend} failed: {detail[:300]}",
            path=str(self.sdist),
        )

    def save_log(self, path: Path) -> Path:
        """Write what the build printed so far to ``path`` (kept for the user to read)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.log.text(), encoding="utf-8")
        return path

    def metadata(self) -> bytes:
        """Core metadata via prepare_metadata_for_build_wheel (or a full build when the backend lacks it)."""
        self.prepare()
        out = self._tmp / "meta"
        try:
            path = self.builder.metadata_path(out)
        except Exception as exc:
            raise self._hook_failed("prepare_metadata_for_build_wheel", exc) from None
        return (Path(path) / "METADATA").read_bytes()

    def build_wheel(self, out_dir: Path) -> Path:
        self.prepare()
        try:
            built = self.builder.build("wheel", self._tmp / "dist")
        except Exception as exc:
            raise BuildError(
                f"{self.label}: building the wheel failed: {_short(exc)}", path=str(self.sdist)
            ) from None
        out_dir.mkdir(parents=True, exist_ok=True)
        dest = out_dir / Path(built).name
        shutil.move(built, dest)
        return dest


def _backend_of(srcdir: Path) -> str:
    """The ``build-backend`` an unpacked sdist names (PEP 517's default when it names none)."""
    try:
        data = tomllib.loads((srcdir / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        data = {}
    return str(
        data.get("build-system", {}).get("build-backend", "setuptools.build_meta:__legacy__")
    )


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).strip().splitlines()[-1][:300]


def _missing_requirement(output: str) -> str | None:
    import re

    m = re.search(r"No matching distribution found for ([^\s]+)", output)
    return m[1] if m else None


def sdist_metadata_online(
    index_urls: Sequence[str],
    log_dir: Path | None = None,
    *,
    runner: Runner = subprocess_runner,
    cache: Cache | None = None,
    exclude_newer: str | None = None,
) -> Callable[[Path, str], bytes]:
    """A ``(sdist path, filename) -> METADATA bytes`` builder that installs build deps from
    ``index_urls`` (one source: :func:`index_urls_source`; files uploaded before
    ``exclude_newer`` when given). A failure's message names the hook that failed and the log
    kept in ``log_dir``."""
    deps = index_urls_source(index_urls, cache, exclude_newer)

    def build_metadata(sdist: Path, filename: str) -> bytes:
        with IsolatedBuild(
            sdist,
            deps=deps,
            label=filename,
            missing_hint="it is not on the index; wheelport needs it to read this sdist's dependencies",
            runner=runner,
        ) as b:
            try:
                return b.metadata()
            except BuildError as exc:
                if log_dir is not None:
                    kept = b.save_log(log_dir / f"{filename}.metadata.log")
                    exc.message += f" (log: {kept})"
                raise

    return build_metadata
