"""Fetch for 4 targets: `wheelport sync` vs `pip download` looped over the same 4 targets.

pip gets every compatible platform tag of each target (`--platform` repeated, from wheelport's
own target description), `--python-version`, `--implementation cp`, `--abi`, `--only-binary :all:`,
a fresh cache and `--isolated`. wheelport runs lock + fetch (+ index) for all four at once, cold
(fresh cache, empty wheelhouse), then a no-op rerun. Prints the times and the ratios.

    .venv/bin/python bench/fetch.py [--requirements "numpy pandas …"]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wheelport.targets import parse_target

TARGETS = [
    "cp312-manylinux_2_28_x86_64",
    "cp312-win_amd64",
    "cp311-macosx_11_0_arm64",
    "cp310-manylinux_2_28_aarch64",
]
REQUIREMENTS = [
    "numpy",
    "pandas",
    "requests",
    "rich",
    "httpx",
    "pydantic",
    "cryptography",
    "pyyaml",
    "pillow",
    "attrs",
]
INDEX = "https://pypi.org/simple"


def scrubbed() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd[:6])} …\n{r.stderr[-2000:]}")
    return dt


def pip_loop(reqs: list[str], work: Path) -> float:
    cert = os.environ.get("SSL_CERT_FILE")
    total = 0.0
    cache = work / "pip-cache"
    for tid in TARGETS:
        t = parse_target(tid)
        cmd = [sys.executable, "-m", "pip", "download", "--isolated", "--disable-pip-version-check",
               "--only-binary", ":all:", "--implementation", "cp",
               "--python-version", f"{t.python_version[0]}{t.python_version[1]}",
               "--abi", t.abi, "--index-url", INDEX, "--cache-dir", str(cache),
               "-d", str(work / "pip" / tid), "-q"]  # fmt: skip
        if cert:
            cmd += ["--cert", cert]
        for plat in t.platform_tags:
            cmd += ["--platform", plat]
        total += timed(cmd + reqs, scrubbed())
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requirements", default=" ".join(REQUIREMENTS))
    args = ap.parse_args()
    reqs = args.requirements.split()
    work = Path(tempfile.mkdtemp(prefix="wheelport-bench-fetch-"))
    try:
        env = dict(os.environ, WHEELPORT_CACHE_DIR=str(work / "wp-cache"))
        wp = [sys.executable, "-m", "wheelport", "sync", *reqs, "--index-url", INDEX, "-o", str(work / "wh"), "-q", "--only-binary", ":all:",
              "--tool", "none"]  # fmt: skip
        for t in TARGETS:
            wp += ["-t", t]
        cold = timed(wp, env)
        noop = timed(wp, env)
        pip = pip_loop(reqs, work)
        wheels = len(list((work / "wh" / "wheels").glob("*.whl")))
        pip_files = len(list((work / "pip").rglob("*.whl")))
        print(f"requirements: {' '.join(reqs)}")
        print(f"targets: {', '.join(TARGETS)}")
        print(
            f"wheelport sync cold (lock + fetch + index, 4 targets): {cold:7.2f} s  ({wheels} wheels)"
        )
        print(
            f"wheelport sync no-op rerun:                             {noop:7.2f} s  (goal < 2 s)"
        )
        print(
            f"pip download × 4 targets, cold:                         {pip:7.2f} s  ({pip_files} files)"
        )
        print(f"ratio pip / wheelport (cold): {pip / cold:5.2f}x  (goal ≥ 4x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
