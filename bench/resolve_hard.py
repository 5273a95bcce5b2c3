"""Benchmark a hard resolution: ``wheelport lock`` vs ``uv pip compile`` on the same set, same index.

Usage: ``.venv/bin/python bench/resolve_hard.py [--json] [--target T]...``

The set is ``tests/data/real/minigpt4-env.txt`` (issue 16 item E: tight pins beside unpinned
projects whose newest releases need newer versions of the pinned ones), resolved for CPython 3.9
on manylinux_2_28 x86_64 and win_amd64. Both tools see the same index: the frozen 127.0.0.1 view
of the public index the network tests use (``tests/support/public.py``; what it shows is declared
in ``tests/data/public-index/``, every file before a snapshot date, so the figures do not move with
new releases). The view's pages are loaded once before any timing, so neither tool pays for the
other's first page loads; files and metadata come from the public file host, cold for both.

Per target, cold caches for each run (a fresh ``WHEELPORT_CACHE_DIR``, a fresh uv
``--cache-dir``): one ``wheelport lock -t TARGET`` run and one ``uv pip compile`` run, one after
the other; then one ``wheelport lock`` run for all targets at once (as a user runs it) against the
sum of uv's runs. Both run as subprocesses with no ``PIP_*``/``UV_*`` configuration. The package
sets are compared per target (count, and the versions that differ). The machine's load average is
printed with the figures: on a busy machine both tools slow down, not always alike.

Goal (issue 16): wheelport within 2x of uv's time on every target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import scrubbed_env  # noqa: E402
from support.public import PublicIndex, load_declarations  # noqa: E402
from test_real_projects import parse_uv_output, read_locks, uv_target  # noqa: E402

REQUIREMENTS = ROOT / "tests" / "data" / "real" / "minigpt4-env.txt"
TARGETS = ("cp39-manylinux_2_28_x86_64", "cp39-win_amd64")
UV = Path(sys.executable).parent / "uv"
GOAL_RATIO = 2.0


@dataclass
class Run:
    tool: str
    target: str
    seconds: float
    code: int
    packages: int
    tail: str = ""


def wheelport(
    work: Path, index: str, targets: tuple[str, ...]
) -> tuple[Run, dict[str, dict[str, str]]]:
    cache, out = work / "wp-cache", work / "wh"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    env = scrubbed_env()
    env["WHEELPORT_CACHE_DIR"] = str(cache)
    cmd = [sys.executable, "-m", "wheelport", "lock", "-q", "-r", str(REQUIREMENTS),
           *(a for t in targets for a in ("-t", t)), "--index-url", index, "--tool", "none",
           "-o", str(out)]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    seconds = time.monotonic() - start
    pins = read_locks(out, targets) if proc.returncode == 0 else {}
    sets = {t: locked.pins for t, locked in pins.items()}
    count = sum(len(p) for p in sets.values())
    run = Run("wheelport", "+".join(targets), seconds, proc.returncode, count, proc.stderr[-400:])
    return run, sets


def uv(work: Path, index: str, target: str) -> tuple[Run, dict[str, str]]:
    cache = work / f"uv-cache-{target}"
    shutil.rmtree(cache, ignore_errors=True)
    ut = uv_target(target)
    env = scrubbed_env()
    env.update(ut.env)
    cmd = [str(UV), "pip", "compile", "--no-config", "--no-python-downloads", "--cache-dir",
           str(cache), "--python-platform", ut.platform, "--python-version", ut.python,
           "--default-index", index, "--no-header", "--no-annotate", "--quiet",
           str(REQUIREMENTS)]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    seconds = time.monotonic() - start
    pins = parse_uv_output(proc.stdout) if proc.returncode == 0 else {}
    return Run("uv", target, seconds, proc.returncode, len(pins), proc.stderr[-400:]), pins


def warm_view(view: PublicIndex) -> None:
    """Load every declared page into the view once, so no timed run pays for the upstream."""
    names = sorted(load_declarations())
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(view.upstream_page, names))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--target", action="append", help=f"targets (default: {', '.join(TARGETS)})"
    )
    args = parser.parse_args()
    targets = tuple(args.target or TARGETS)
    runs: list[Run] = []
    differ: dict[str, list[str]] = {}
    with PublicIndex() as view, tempfile.TemporaryDirectory(prefix="wheelport-bench-") as tmp:
        work, index = Path(tmp), view.url
        warm_view(view)
        for target in targets:
            mine, sets = wheelport(work, index, (target,))
            theirs, uv_pins = uv(work, index, target)
            runs += [mine, theirs]
            got = sets.get(target, {})
            differ[target] = sorted(
                f"{n} {got.get(n)}/{uv_pins.get(n)}"
                for n in set(got) | set(uv_pins)
                if got.get(n) != uv_pins.get(n)
            )
        together, _ = wheelport(work, index, targets)
        runs.append(together)
        if view.undeclared:
            print(f"undeclared projects asked for: {sorted(view.undeclared)}", file=sys.stderr)
    by = {(r.tool, r.target): r for r in runs}
    rows = []
    for target in targets:
        w, u = by["wheelport", target], by["uv", target]
        rows.append((target, w.seconds, u.seconds, w.seconds / u.seconds, w.packages, u.packages,
                     differ[target]))  # fmt: skip
    uv_sum = sum(by["uv", t].seconds for t in targets)
    all_ratio = together.seconds / uv_sum
    failed = [r for r in runs if r.code != 0]
    if args.json:
        print(json.dumps({"runs": [asdict(r) for r in runs], "ratios": {r[0]: r[3] for r in rows},
                          "all_targets_ratio": all_ratio, "differ": differ}, indent=2))  # fmt: skip
    else:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"{REQUIREMENTS.name}: cold caches, the frozen view of the public index; "
              f"load average {load} on {os.cpu_count()} CPUs")  # fmt: skip
        print(
            f"{'target':30} {'wheelport':>10} {'uv':>8} {'ratio':>6} {'pkgs wp/uv':>11}  "
            "versions that differ (wheelport/uv)"
        )
        for target, ws, us, ratio, wn, un, d in rows:
            print(
                f"{target:30} {ws:9.1f}s {us:7.1f}s {ratio:6.2f} {wn:5}/{un:<5}  "
                f"{', '.join(d) or 'none'}"
            )
        print(f"{'all targets, one run':30} {together.seconds:9.1f}s {uv_sum:7.1f}s "
              f"{all_ratio:6.2f}   (uv: sum of its runs)")  # fmt: skip
        for r in failed:
            print(f"FAILED {r.tool} {r.target} (exit {r.code}): {r.tail.strip()}")
    worst = max(r[3] for r in rows)
    return 1 if failed or worst > GOAL_RATIO else 0


if __name__ == "__main__":
    raise SystemExit(main())
