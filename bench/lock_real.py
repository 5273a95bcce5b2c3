"""Benchmark locking real projects: ``wheelport lock`` (5 targets, one run) vs ``uv pip compile``.

Usage: ``.venv/bin/python bench/lock_real.py [--json] [--set NAME]...``

Three requirement sets from ``tests/data/real/`` (each file's header names its source): the
large pinned web application set (Apache Superset, 155 pins), a data-science project with ranges
and extras (ydata-profiling + jupyter) and the data-science stack of issue 8's report
(``pandas[performance,excel,parquet]``, scikit-learn, matplotlib, … jupyter). Each is locked for
five targets:

- cold: fresh ``WHEELPORT_CACHE_DIR`` and a fresh uv ``--cache-dir``; wheelport's one run for all
  five targets vs ``uv pip compile`` once per target (five runs, summed);
- warm: the wheelhouse (locks and manifest) deleted, wheelport run again on the warm cache; uv's
  five runs again on its warm cache.

Peak memory is each process's maximum resident set (``wait4`` rusage: the process or the largest
of the children it waited for, e.g. a build backend); for uv, the largest of its five runs. Both
tools run as subprocesses with no ``PIP_*``/``UV_*`` configuration, against the same index
(``WHEELPORT_TEST_INDEX_URL`` / ``PIP_INDEX_URL`` / ``UV_DEFAULT_INDEX`` if set, else
wheelport's default index). The resolved sets are compared per target as well.

Goals: wheelport cold no slower than uv's cold total; wheelport warm re-lock < 3 s.
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
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from wheelport.config import DEFAULT_INDEX

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scrubbed_env, uv_platform

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "real"
UV = Path(sys.executable).parent / "uv"
TARGETS = {
    "superset-base.txt": ["cp312-manylinux_2_28_x86_64", "cp311-manylinux_2_17_aarch64",
                          "cp312-win_amd64", "cp311-macosx_11_0_arm64",
                          "cp312-musllinux_1_2_x86_64"],
    "ydata-profiling.txt": ["cp312-manylinux_2_28_x86_64", "cp311-manylinux_2_17_aarch64",
                            "cp312-win_amd64", "cp313-macosx_11_0_arm64",
                            "cp312-musllinux_1_2_x86_64"],
    "datascience-stack.txt": ["cp312-manylinux_2_28_x86_64", "cp311-manylinux_2_17_aarch64",
                              "cp312-win_amd64", "cp313-macosx_11_0_arm64",
                              "cp312-musllinux_1_2_x86_64"],
}  # fmt: skip
WARM_GOAL_S = 3.0


def index_url() -> str:
    for var in ("WHEELPORT_TEST_INDEX_URL", "PIP_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        if os.environ.get(var):
            return os.environ[var].split()[0].rstrip("/")
    return DEFAULT_INDEX


uv_target = uv_platform
clean_env = scrubbed_env


@dataclass
class Run:
    seconds: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> Run:
    """Run *cmd*; wall seconds and the peak RSS from ``wait4`` (Linux: ru_maxrss in KiB)."""
    out, err = cwd / ".stdout", cwd / ".stderr"
    with out.open("w") as fo, err.open("w") as fe:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, cwd=cwd, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(elapsed, usage.ru_maxrss / 1024, proc.returncode, out.read_text(), err.read_text())


def run_wheelport(req: Path, targets: list[str], work: Path, cache: Path) -> tuple[Run, dict]:
    args = [a for t in targets for a in ("-t", t)]
    cmd = [sys.executable, "-m", "wheelport", "lock", "-r", str(req), *args,
           "--index-url", index_url(), "-o", str(work / "wh"), "--json"]  # fmt: skip
    run = timed(cmd, clean_env(WHEELPORT_CACHE_DIR=str(cache)), work)
    if run.returncode != 0:
        print(f"wheelport lock {req.name} failed (exit {run.returncode}):\n{run.stderr[-4000:]}")
        return run, {}
    data = json.loads(run.stdout)
    sets = {t: {n: i["version"] for n, i in pins.items()} for t, pins in data["targets"].items()}
    return run, sets


def run_uv(req: Path, targets: list[str], work: Path, cache: Path) -> tuple[list[Run], dict]:
    runs: list[Run] = []
    sets: dict[str, dict[str, str]] = {}
    for target in targets:
        platform, python, extra = uv_target(target)
        cmd = [str(UV), "pip", "compile", "--no-config", "--no-python-downloads",
               "--cache-dir", str(cache), "--python-platform", platform,
               "--python-version", python, "--default-index", index_url(),
               "--no-header", "--no-annotate", "-q", str(req)]  # fmt: skip
        run = timed(cmd, clean_env(**extra), work)
        runs.append(run)
        if run.returncode != 0:
            print(f"uv pip compile {req.name} failed for {target}:\n{run.stderr[-3000:]}")
            continue
        pins: dict[str, str] = {}
        for line in run.stdout.splitlines():
            line = line.split(";", 1)[0].strip()
            if line and not line.startswith("#") and "==" in line:
                name, _, version = line.partition("==")
                pins[canonicalize_name(name.split("[", 1)[0])] = version.strip()
        sets[target] = pins
    return runs, sets


def bench_set(name: str) -> dict:
    req, targets = DATA / name, TARGETS[name]
    with tempfile.TemporaryDirectory(prefix="wheelport-bench-real-") as tmp:
        root = Path(tmp)
        wp_cache, uv_cache = root / "wp-cache", root / "uv-cache"
        (root / "wp").mkdir()
        (root / "uv").mkdir()
        wp_cold, wp_sets = run_wheelport(req, targets, root / "wp", wp_cache)
        uv_cold, uv_sets = run_uv(req, targets, root / "uv", uv_cache)
        shutil.rmtree(root / "wp" / "wh", ignore_errors=True)  # locks + manifest gone, cache kept
        wp_warm, wp_sets2 = run_wheelport(req, targets, root / "wp", wp_cache)
        uv_warm, _ = run_uv(req, targets, root / "uv", uv_cache)
    uv_cold_s, uv_warm_s = sum(r.seconds for r in uv_cold), sum(r.seconds for r in uv_warm)
    same = {t: bool(wp_sets) and wp_sets.get(t) == uv_sets.get(t) for t in targets}
    return {
        "set": name,
        "targets": targets,
        "packages_per_target": {t: len(s) for t, s in wp_sets.items()},
        "wheelport_ok": wp_cold.returncode == 0 and wp_warm.returncode == 0,
        "uv_ok": all(r.returncode == 0 for r in uv_cold + uv_warm),
        "wheelport_cold_s": round(wp_cold.seconds, 2),
        "uv_cold_total_s": round(uv_cold_s, 2),
        "uv_cold_per_target_s": [round(r.seconds, 2) for r in uv_cold],
        "wheelport_warm_s": round(wp_warm.seconds, 2),
        "uv_warm_total_s": round(uv_warm_s, 2),
        "cold_ratio_wheelport_over_uv": round(wp_cold.seconds / uv_cold_s, 2),
        "warm_ratio_wheelport_over_uv": round(wp_warm.seconds / uv_warm_s, 2),
        "wheelport_peak_rss_mb": round(max(wp_cold.max_rss_mb, wp_warm.max_rss_mb), 1),
        "uv_peak_rss_mb": round(max(r.max_rss_mb for r in uv_cold + uv_warm), 1),
        "same_as_uv": same,
        "differences": {
            t: sorted(set(wp_sets.get(t, {}).items()) ^ set(uv_sets.get(t, {}).items()))
            for t in targets
            if not same[t]
        },
        "warm_equals_cold": wp_sets == wp_sets2,
        "goal_cold_no_slower_than_uv": wp_cold.seconds <= uv_cold_s,
        "goal_warm_under_3s": wp_warm.seconds < WARM_GOAL_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--set", action="append", choices=sorted(TARGETS), help="only this set")
    opts = parser.parse_args()
    if not UV.exists():
        raise SystemExit(f"uv not found at {UV}")
    results = [bench_set(name) for name in (opts.set or list(TARGETS))]
    if opts.json:
        print(json.dumps(results, indent=2))
        return
    print(f"index: {index_url()}")
    header = (f"{'set':20} {'pkgs':>9} {'wp cold':>8} {'uv cold':>8} {'ratio':>6} "
              f"{'wp warm':>8} {'uv warm':>8} {'ratio':>6} {'wp MB':>7} {'uv MB':>7}  same as uv")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in results:
        counts = sorted(set(r["packages_per_target"].values())) or [0]
        pkgs = f"{counts[0]}-{counts[-1]}" if len(counts) > 1 else str(counts[0])
        same = sum(r["same_as_uv"].values())
        print(f"{r['set']:20} {pkgs:>9} {r['wheelport_cold_s']:7.2f}s {r['uv_cold_total_s']:7.2f}s "
              f"{r['cold_ratio_wheelport_over_uv']:6.2f} {r['wheelport_warm_s']:7.2f}s "
              f"{r['uv_warm_total_s']:7.2f}s {r['warm_ratio_wheelport_over_uv']:6.2f} "
              f"{r['wheelport_peak_rss_mb']:7.1f} {r['uv_peak_rss_mb']:7.1f}  "
              f"{same}/{len(r['targets'])}")  # fmt: skip
    print("(wheelport: one run for 5 targets; uv: 5 runs summed; MB = peak RSS of one process)")
    for r in results:
        for t, d in r["differences"].items():
            print(f"  {r['set']} {t}: {d}")
        if not r["wheelport_ok"]:
            print(f"  {r['set']}: wheelport FAILED (see above)")
        print(f"  {r['set']}: goal cold <= uv: "
              f"{'met' if r['goal_cold_no_slower_than_uv'] else 'MISSED'}; goal warm < 3 s: "
              f"{'met' if r['goal_warm_under_3s'] else 'MISSED'}; warm == cold: "
              f"{r['warm_equals_cold']}")  # fmt: skip


if __name__ == "__main__":
    main()
