"""Helpers the bench scripts share: a scrubbed environment, timed runs, the pip loop a user writes
to download wheels for several platforms, uv's names for wheelport targets, and a raw parallel
download (curl) of the files a wheelhouse's locks name — the link's own speed — and the CPU
the commands used (:class:`CPU`) and the machine's cost of writing new file pages
(:func:`page_cost`), which explain where the time goes when the link is not the limit.

Import with ``sys.path`` set to this directory (the bench scripts are run as files)."""

from __future__ import annotations

import functools
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from packaging.utils import canonicalize_name

from wheelport.targets import parse_target

UV = Path(sys.executable).parent / "uv"


class CPU:
    """CPU seconds (user, system) the commands run since it was made have used (their children
    included): ``cpu = CPU(); timed(...); cpu.used()``."""

    def __init__(self) -> None:
        self.start = resource.getrusage(resource.RUSAGE_CHILDREN)

    def used(self) -> tuple[float, float]:
        now = resource.getrusage(resource.RUSAGE_CHILDREN)
        return now.ru_utime - self.start.ru_utime, now.ru_stime - self.start.ru_stime

    def text(self) -> str:
        user, system = self.used()
        return f"CPU {user:.1f} user + {system:.1f} sys"


def runs(times: Sequence[float], digits: int = 2) -> str:
    """Each run's time, as ``[1.23 1.19 1.30]``."""
    return "[" + " ".join(f"{t:.{digits}f}" for t in times) + "]"


def page_cost(megabytes: int = 256) -> float:
    """Kernel seconds per GB this process spends writing a new file of ``megabytes`` (1 MiB
    writes, then removed). Where memory pages are costly to hand out (a micro-VM that returns
    free memory to its host), this is seconds per GB rather than a tenth of one, and every
    byte a command writes costs that much CPU."""
    chunk = os.urandom(1 << 20)
    fd, name = tempfile.mkstemp(prefix="wheelport-bench-pages-")
    try:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        for _ in range(megabytes):
            os.write(fd, chunk)
        spent = resource.getrusage(resource.RUSAGE_SELF).ru_stime - before
    finally:
        os.close(fd)
        os.unlink(name)
    return spent / (megabytes / 1024)


@functools.cache
def compile_wheelport() -> None:
    """Compile wheelport's modules, as installing a package does: where
    ``PYTHONDONTWRITEBYTECODE`` is set (this machine sets it), an edited checkout would
    otherwise have every timed run compile the sources changed since they were last compiled
    (forced: compileall takes a file changed within the second it was compiled for current).
    Once per bench run."""
    import compileall

    import wheelport

    compileall.compile_dir(str(Path(wheelport.__file__).parent), quiet=1, force=True)


def scrubbed_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without this machine's pip/uv configuration, plus ``extra``; wheelport's
    modules are compiled first (:func:`compile_wheelport`)."""
    compile_wheelport()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env.update(extra)
    return env


def timed(
    cmd: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """(seconds, the finished process) of one command; exits the bench when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), env=dict(env), cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd[:8])} …\n{proc.stderr[-3000:]}")
    return elapsed, proc


def pip_download_loop(
    targets: Sequence[str],
    requirements: Sequence[str],
    work: Path,
    index: str,
    uploaded_prior_to: str | None = None,
) -> float:
    """Seconds for ``pip download --only-binary :all:`` once per target, as a user loops it:
    one shared pip cache, every platform tag the target accepts spelled out with
    ``--platform``, ``--python-version``, ``--implementation cp`` and ``--abi`` (and
    ``--uploaded-prior-to`` when given)."""
    cert = os.environ.get("SSL_CERT_FILE")
    total = 0.0
    for tid in targets:
        t = parse_target(tid)
        cmd = [sys.executable, "-m", "pip", "download", "--isolated", "--disable-pip-version-check",
               "--only-binary", ":all:", "--implementation", "cp",
               "--python-version", f"{t.python_version[0]}{t.python_version[1]}",
               "--abi", t.abi, "--index-url", index, "--cache-dir", str(work / "pip-cache"),
               "-d", str(work / "pip" / tid), "-q"]  # fmt: skip
        if cert:
            cmd += ["--cert", cert]
        if uploaded_prior_to:
            cmd += ["--uploaded-prior-to", uploaded_prior_to]
        for plat in t.platform_tags:
            cmd += ["--platform", plat]
        total += timed([*cmd, *requirements], scrubbed_env())[0]
    return total


def uv_platform(target: str) -> tuple[str, str, dict[str, str]]:
    """(``--python-platform``, ``--python-version``, extra env) meaning the wheelport target."""
    m = re.fullmatch(r"cp3(\d+)-(.+)", target)
    if not m:
        raise ValueError(f"no uv equivalent for {target!r}")
    python, plat = f"3.{m[1]}", m[2]
    if m2 := re.fullmatch(r"manylinux_(\d+)_(\d+)_(x86_64|aarch64)", plat):
        return f"{m2[3]}-manylinux_{m2[1]}_{m2[2]}", python, {}
    if m2 := re.fullmatch(r"musllinux_1_2_(x86_64|aarch64)", plat):
        return f"{m2[1]}-unknown-linux-musl", python, {}
    if plat == "win_amd64":
        return "x86_64-pc-windows-msvc", python, {}
    if m2 := re.fullmatch(r"macosx_(\d+)_(\d+)_(arm64|x86_64)", plat):
        arch = "aarch64" if m2[3] == "arm64" else "x86_64"
        return f"{arch}-apple-darwin", python, {"MACOSX_DEPLOYMENT_TARGET": f"{m2[1]}.{m2[2]}"}
    raise ValueError(f"no uv equivalent for {target!r}")


def uv_compile(
    requirements: Path, target: str, index: str, cache: Path, *extra: str
) -> tuple[float, dict[str, str]]:
    """(seconds, {name: version}) of one ``uv pip compile`` for ``target``."""
    platform, python, env = uv_platform(target)
    cmd = [str(UV), "pip", "compile", "--no-config", "--python-platform", platform,
           "--python-version", python, "--default-index", index, "--no-header",
           "--no-annotate", "--quiet", *extra, str(requirements)]  # fmt: skip
    seconds, proc = timed(cmd, scrubbed_env(UV_CACHE_DIR=str(cache), **env))
    pins: dict[str, str] = {}
    for raw in proc.stdout.splitlines():
        line = raw.split(";", 1)[0].split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name.split("[", 1)[0].strip())] = version.strip()
    return seconds, pins


def lock_pins(wheelhouse: Path, target: str) -> dict[str, str]:
    """{name: version} of ``pylock.<target>.toml``."""
    data = tomllib.loads((wheelhouse / f"pylock.{target}.toml").read_text(encoding="utf-8"))
    return {canonicalize_name(p["name"]): p["version"] for p in data["packages"]}


def lock_urls(wheelhouse: Path) -> list[tuple[str, int]]:
    """(URL, size) of every file the wheelhouse's locks download, each once."""
    urls: dict[str, int] = {}
    for path in sorted(wheelhouse.glob("pylock.*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for pkg in data["packages"]:
            for entry in [*(pkg.get("wheels") or []), pkg.get("sdist") or {}]:
                if entry.get("url"):
                    urls[entry["url"]] = int(entry.get("size") or 0)
        for tool in data.get("tool", {}).get("wheelport", {}).get("tools", []):
            if tool.get("url"):
                urls[tool["url"]] = int(tool.get("size") or 0)
    return sorted(urls.items())


def curl_parallel(urls: Sequence[str], dest: Path, parallel: int = 16) -> float:
    """Seconds for ``curl --parallel`` to download ``urls`` into ``dest`` (the link's speed)."""
    dest.mkdir(parents=True, exist_ok=True)
    config = dest / "curl.conf"
    config.write_text(
        "".join(f'url = "{u}"\noutput = "{dest / u.rsplit("/", 1)[1]}"\n' for u in urls)
    )
    cmd = ["curl", "--silent", "--show-error", "--fail", "--parallel",
           "--parallel-max", str(parallel), "--config", str(config)]  # fmt: skip
    return timed(cmd, scrubbed_env())[0]
