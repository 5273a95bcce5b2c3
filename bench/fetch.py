"""Fetch for 4 targets: `wheelport sync` vs `pip download` looped over the same 4 targets, and vs
`curl --parallel` of exactly the files the sync fetched (the link's own speed).

pip gets every compatible platform tag of each target (`--platform` repeated, from wheelport's
own target description), `--python-version`, `--implementation cp`, `--abi`, `--only-binary :all:`,
a fresh cache and `--isolated`. wheelport runs lock + fetch (+ index) for all four at once, cold
(fresh cache, empty wheelhouse), then a no-op rerun, then cold again with ``--no-cache``
(nothing kept beyond the wheelhouse: each file written once). Prints the times and the ratios.

    .venv/bin/python bench/fetch.py [--requirements "numpy pandas …"]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CPU,
    curl_parallel,
    lock_urls,
    page_cost,
    pip_download_loop,
    scrubbed_env,
    timed,
)

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requirements", default=" ".join(REQUIREMENTS))
    args = ap.parse_args()
    reqs = args.requirements.split()
    work = Path(tempfile.mkdtemp(prefix="wheelport-bench-fetch-"))
    try:
        env = scrubbed_env(WHEELPORT_CACHE_DIR=str(work / "wp-cache"))
        wp = [sys.executable, "-m", "wheelport", "sync", *reqs, "--index-url", INDEX, "-o", str(work / "wh"), "-q", "--only-binary", ":all:",
              "--tool", "none"]  # fmt: skip
        for t in TARGETS:
            wp += ["-t", t]
        cpu = CPU()
        cold = timed(wp, env)[0]
        cold_cpu = cpu.text()
        noop = timed(wp, env)[0]
        shutil.rmtree(work / "wh")
        cpu = CPU()
        bare = timed([*wp, "--no-cache"], env)[0]
        bare_cpu = cpu.text()
        pip = pip_download_loop(TARGETS, reqs, work, INDEX)
        files = lock_urls(work / "wh")
        cpu = CPU()
        curl = curl_parallel([u for u, _ in files], work / "curl")
        curl_cpu = cpu.text()
        pages = page_cost()
        wheels = len(list((work / "wh" / "wheels").glob("*.whl")))
        pip_files = len(list((work / "pip").rglob("*.whl")))
        print(f"requirements: {' '.join(reqs)}")
        print(f"targets: {', '.join(TARGETS)}")
        print(
            f"wheelport sync cold (lock + fetch + index, 4 targets): {cold:7.2f} s  ({wheels} wheels, {cold_cpu})"
        )
        print(
            f"wheelport sync no-op rerun:                             {noop:7.2f} s  (goal < 0.3 s)"
        )
        print(
            f"wheelport sync cold --no-cache:                         {bare:7.2f} s  ({bare_cpu})"
        )
        print(
            f"pip download × 4 targets, cold:                         {pip:7.2f} s  ({pip_files} files)"
        )
        print(
            f"curl --parallel of the same {len(files)} files:            {curl:7.2f} s  "
            f"({sum(n for _, n in files) / 1e6:.0f} MB, {curl_cpu})"
        )
        print(f"writing new file pages here costs {pages:.2f} s of kernel CPU per GB")
        print(f"ratio pip / wheelport (cold): {pip / cold:5.2f}x  (goal ≥ 10x)")
        print(f"ratio wheelport / curl (cold): {cold / curl:5.2f}x  (goal ≤ 1.5x)")
        print(f"ratios with --no-cache: pip / wheelport {pip / bare:5.2f}x, "
              f"wheelport / curl {bare / curl:5.2f}x")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
