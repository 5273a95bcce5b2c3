"""Benchmark provisioning: ``provision --installer uv`` vs ``provision`` (pip) vs plain pip.

Usage: ``.venv/bin/python bench/provision.py [--repeat N] [--cache DIR]``

The first run downloads ~30 real wheels from the public index into a cache directory (once);
every later run is offline. A wheelhouse with one lock for the running interpreter is built
from them, then each method installs the same set into a fresh venv:

* ``uv``: ``wheelport.provision.provision(..., installer="uv")``
* ``pip``: ``wheelport.provision.provision(...)`` (the bootstrap.py code path)
* ``plain pip``: ``python -m venv`` + ``pip install --no-index --find-links wheels/ name==version…``

Goals: uv at least 5x faster than plain pip; the pip installer no slower than plain pip.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w
from packaging.pylock import Pylock
from packaging.utils import parse_wheel_filename

from wheelport import bootstrap
from wheelport.provision import provision
from wheelport.targets import host_target
from wheelport.wheelhouse import sha256_file

PROJECTS = ["requests", "rich", "httpx", "click", "jinja2", "attrs", "pydantic", "packaging",
            "python-dateutil", "pyyaml", "markdown-it-py", "platformdirs", "tomli-w",
            "typing-extensions", "sniffio", "pluggy", "iniconfig", "six"]  # fmt: skip


def download(cache: Path) -> list[Path]:
    """The wheels of PROJECTS (and their dependencies) for this interpreter, fetched once."""
    stamp = cache / ".complete"
    if not stamp.exists():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--isolated", "--only-binary", ":all:",
               "-d", str(cache), "--index-url", "https://pypi.org/simple", "-q", *PROJECTS]  # fmt: skip
        if os.environ.get("SSL_CERT_FILE"):
            cmd += ["--cert", os.environ["SSL_CERT_FILE"]]
        subprocess.run(cmd, check=True, env=bootstrap.scrubbed_env())
        cmd = [sys.executable, "-m", "pip", "download", "--isolated", "--only-binary", ":all:",
               "--no-deps", "-d", str(cache / "tools"), "--index-url", "https://pypi.org/simple",
               "-q", "pip"]  # fmt: skip
        if os.environ.get("SSL_CERT_FILE"):
            cmd += ["--cert", os.environ["SSL_CERT_FILE"]]
        subprocess.run(cmd, check=True, env=bootstrap.scrubbed_env())
        stamp.touch()
    return sorted(cache.glob("*.whl"))


def build_wheelhouse(wheels: list[Path], pip_wheel: Path, wh: Path) -> None:
    """A wheelhouse with one lock, for the running interpreter, holding ``wheels``."""
    target = host_target()
    (wh / "wheels").mkdir(parents=True)
    packages = []
    for wheel in wheels:
        shutil.copy2(wheel, wh / "wheels")
        name, version, _, _ = parse_wheel_filename(wheel.name)
        packages.append(
            {"name": str(name), "version": str(version), "wheels": [{
                "name": wheel.name, "path": f"wheels/{wheel.name}", "size": wheel.stat().st_size,
                "hashes": {"sha256": sha256_file(wheel)}}]}
        )  # fmt: skip
    shutil.copy2(pip_wheel, wh / "wheels")
    pv = target.markers["python_version"]
    tools = [{"name": "pip", "version": pip_wheel.name.split("-")[1],
              "path": f"wheels/{pip_wheel.name}", "sha256": sha256_file(pip_wheel)}]  # fmt: skip
    lock = Pylock.from_dict(
        {
            "lock-version": "1.0",
            "created-by": "wheelport",
            "environments": [f'python_version == "{pv}" and sys_platform == "{sys.platform}"'],
            "requires-python": f"=={pv}.*",
            "packages": packages,
            "tool": {"wheelport": {"target": target.identifier, "tools": tools}},
        }
    )
    (wh / f"pylock.{target.identifier}.toml").write_text(tomli_w.dumps(lock.to_dict()))


def plain_pip(python: str, venv: Path, wh: Path, pins: list[str]) -> None:
    """What a user would type without wheelport."""
    env = bootstrap.scrubbed_env()
    subprocess.run([python, "-m", "venv", str(venv)], check=True, env=env)
    subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "--isolated", "-q", "--no-index",
         "--find-links", str(wh / "wheels"), *pins],
        check=True, env=env,
    )  # fmt: skip


def main() -> int:
    """Run the benchmark and print timings and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "wheelport-bench" / "wheels"
    )
    args = parser.parse_args()
    wheels = download(args.cache)
    pip_wheel = sorted((args.cache / "tools").glob("pip-*.whl"))[-1]
    pins = ["{}=={}".format(*parse_wheel_filename(w.name)[:2]) for w in wheels]
    times: dict[str, list[float]] = {"uv": [], "pip": [], "plain pip": []}
    with tempfile.TemporaryDirectory(prefix="wheelport-bench-") as tmp:
        root = Path(tmp)
        wh = root / "wh"
        build_wheelhouse(wheels, pip_wheel, wh)
        print(f"{len(wheels)} wheels, python {sys.version.split()[0]}, repeat {args.repeat}")
        for i in range(args.repeat):
            for method in times:
                venv = root / f"venv-{method.replace(' ', '-')}-{i}"
                started = time.perf_counter()
                if method == "plain pip":
                    plain_pip(sys.executable, venv, wh, pins)
                else:
                    report = provision(venv, wheelhouse=wh, installer=method)
                    assert report.check_ok, report.check_output
                times[method].append(time.perf_counter() - started)
                shutil.rmtree(venv)
    med = {m: statistics.median(t) for m, t in times.items()}
    for method, values in times.items():
        print(
            f"{method:>10}: median {med[method]:6.2f}s  runs {', '.join(f'{v:.2f}' for v in values)}"
        )
    uv_ratio = med["plain pip"] / med["uv"]
    pip_ratio = med["plain pip"] / med["pip"]
    print(
        f"plain pip / uv  = {uv_ratio:5.1f}x  (goal >= 5x: {'met' if uv_ratio >= 5 else 'MISSED'})"
    )
    print(
        f"plain pip / pip = {pip_ratio:5.2f}x  (goal >= 1x: {'met' if pip_ratio >= 1 else 'MISSED'})"
    )
    print(json.dumps({"median_seconds": med, "uv_speedup": uv_ratio, "pip_speedup": pip_ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
