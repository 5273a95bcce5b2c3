"""Fetch for 4 targets: `wheelport sync` vs `pip download` looped over the same 4 targets, and vs
`curl --parallel` of exactly the files the sync fetched (the link's own speed).

pip gets every compatible platform tag of each target (`--platform` repeated, from wheelport's
own target description), `--python-version`, `--implementation cp`, `--abi`, `--only-binary :all:`,
a fresh cache and `--isolated`. wheelport runs lock + fetch (+ index) for all four at once, cold
(fresh cache, empty wheelhouse), then a no-op rerun, then cold again with ``--no-cache``
(nothing kept beyond the wheelhouse: each file written once). Prints the times and the ratios.

The cold runs and curl run ``--rounds`` times each (3), each cold run with a new cache and an
empty wheelhouse, and their medians are compared: on this kind of machine one run's time
varies by a third, and the first command of a bench also pays for the machine's own warm-up
(files read from disk, the network path's first connections). pip's loop runs once (it takes
ten times as long; its own spread does not change a verdict).

    .venv/bin/python bench/fetch.py [--requirements "numpy pandas …"] [--rounds N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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
    runs,
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
    ap.add_argument("--rounds", type=int, default=3, help="cold runs and curl runs (median)")
    args = ap.parse_args()
    rounds = max(1, args.rounds)
    reqs = args.requirements.split()
    work = Path(tempfile.mkdtemp(prefix="wheelport-bench-fetch-"))
    try:
        wp = [sys.executable, "-m", "wheelport", "sync", *reqs, "--index-url", INDEX, "-o", str(work / "wh"), "-q", "--only-binary", ":all:",
              "--tool", "none"]  # fmt: skip
        for t in TARGETS:
            wp += ["-t", t]

        def cold_runs(*extra: str) -> tuple[list[float], str, dict[str, str]]:
            """``rounds`` cold syncs (a new cache, an empty wheelhouse each): times, CPU."""
            times, cpu = [], CPU()
            for i in range(rounds):
                shutil.rmtree(work / "wh", ignore_errors=True)
                env = scrubbed_env(WHEELPORT_CACHE_DIR=str(work / f"wp-cache-{extra}-{i}"))
                times.append(timed([*wp, *extra], env)[0])
            user, system = cpu.used()
            return times, f"CPU {user / rounds:.1f} user + {system / rounds:.1f} sys per run", env

        colds, cold_cpu, env = cold_runs()
        noop = timed(wp, env)[0]
        bares, bare_cpu, _ = cold_runs("--no-cache")
        cold, bare = statistics.median(colds), statistics.median(bares)
        pip = pip_download_loop(TARGETS, reqs, work, INDEX)
        files = lock_urls(work / "wh")
        curls, cpu = [], CPU()
        for i in range(rounds):
            curls.append(curl_parallel([u for u, _ in files], work / f"curl-{i}"))
            shutil.rmtree(work / f"curl-{i}", ignore_errors=True)
        user, system = cpu.used()
        curl_cpu = f"CPU {user / rounds:.1f} user + {system / rounds:.1f} sys per run"
        curl = statistics.median(curls)
        pages = page_cost()
        wheels = len(list((work / "wh" / "wheels").glob("*.whl")))
        pip_files = len(list((work / "pip").rglob("*.whl")))
        print(f"requirements: {' '.join(reqs)}")
        print(f"targets: {', '.join(TARGETS)}")
        print(f"rounds: {rounds} (medians; each run's time in brackets)")
        print(
            f"wheelport sync cold (lock + fetch + index, 4 targets): {cold:7.2f} s  "
            f"{runs(colds)} ({wheels} wheels, {cold_cpu})"
        )
        print(
            f"wheelport sync no-op rerun:                             {noop:7.2f} s  (goal < 0.3 s)"
        )
        print(
            f"wheelport sync cold --no-cache:                         {bare:7.2f} s  "
            f"{runs(bares)} ({bare_cpu})"
        )
        print(
            f"pip download × 4 targets, cold:                         {pip:7.2f} s  ({pip_files} files)"
        )
        print(
            f"curl --parallel of the same {len(files)} files:            {curl:7.2f} s  "
            f"{runs(curls)} ({sum(n for _, n in files) / 1e6:.0f} MB, {curl_cpu})"
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
