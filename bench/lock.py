"""Benchmark locking: ``wheelport lock`` (3 targets, one run) vs ``uv pip compile`` (one run per target).

Usage: ``.venv/bin/python bench/lock.py [--json]``

One fixed real requirement set (REQUIREMENTS, ≥ 25 packages once resolved) is locked for three
targets against the public index, on cold caches (fresh ``WHEELPORT_CACHE_DIR`` / ``UV_CACHE_DIR``)
and then warm (the same caches again). Both tools run as subprocesses with no ``PIP_*``/``UV_*``
configuration. The resolved sets are compared too (names and versions per target).

Goals: wheelport cold no slower than uv cold total; wheelport warm re-lock < 2 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scrubbed_env

REQUIREMENTS = ["fastapi", "uvicorn[standard]", "httpx", "rich", "pydantic", "sqlalchemy", "jinja2",
                "requests", "boto3", "click"]  # fmt: skip
# wheelport target -> (uv --python-platform, uv --python-version)
TARGETS = {
    "cp312-manylinux_2_28_x86_64": ("x86_64-manylinux_2_28", "3.12"),
    "cp312-win_amd64": ("x86_64-pc-windows-msvc", "3.12"),
    "cp310-macosx_11_0_arm64": ("aarch64-apple-darwin", "3.10"),
}
INDEX = "https://pypi.org/simple"
UV = Path(sys.executable).parent / "uv"


clean_env = scrubbed_env


def run_wheelport(work: Path, cache: Path) -> tuple[float, dict[str, dict[str, str]]]:
    """Seconds for one ``wheelport lock`` of every target, and {target: {name: version}}."""
    args = [a for t in TARGETS for a in ("-t", t)]
    cmd = [sys.executable, "-m", "wheelport", "lock", *REQUIREMENTS, *args, "--index-url", INDEX,
           "-o", str(work / "wh"), "--tool", "none", "--json"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work,
                          env=clean_env(WHEELPORT_CACHE_DIR=str(cache)))  # fmt: skip
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"wheelport lock failed:\n{proc.stderr}")
    data = json.loads(proc.stdout)
    sets = {t: {n: i["version"] for n, i in pins.items()} for t, pins in data["targets"].items()}
    return elapsed, sets


def run_uv(work: Path, cache: Path) -> tuple[float, dict[str, dict[str, str]]]:
    """Seconds for ``uv pip compile`` once per target (sequentially), and the resolved sets."""
    req = work / "requirements.in"
    req.write_text("\n".join(REQUIREMENTS) + "\n")
    total = 0.0
    sets: dict[str, dict[str, str]] = {}
    for target, (platform, python) in TARGETS.items():
        cmd = [str(UV), "pip", "compile", "--no-config", "--python-platform", platform, "--python-version",
               python, "--no-header", "--no-annotate", "--index-url", INDEX, "-q", str(req)]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=clean_env(UV_CACHE_DIR=str(cache))
        )
        total += time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"uv pip compile failed for {target}:\n{proc.stderr}")
        pins: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            line = line.split(";", 1)[0].strip()
            if line and not line.startswith("#") and "==" in line:
                name, _, version = line.partition("==")
                pins[canonicalize_name(name.split("[", 1)[0])] = version.strip()
        sets[target] = pins
    return total, sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args()
    if not UV.exists():
        raise SystemExit(f"uv not found at {UV}")
    with tempfile.TemporaryDirectory(prefix="wheelport-bench-lock-") as tmp:
        root = Path(tmp)
        wp_cache, uv_cache = root / "wp-cache", root / "uv-cache"
        (root / "wp").mkdir()
        (root / "uv").mkdir()
        wp_cold, wp_sets = run_wheelport(root / "wp", wp_cache)
        uv_cold, uv_sets = run_uv(root / "uv", uv_cache)
        wp_warm, wp_sets2 = run_wheelport(root / "wp", wp_cache)
        uv_warm, _ = run_uv(root / "uv", uv_cache)
    counts = {t: len(s) for t, s in wp_sets.items()}
    same = {t: wp_sets[t] == uv_sets.get(t) for t in TARGETS}
    diffs = {
        t: sorted(set(wp_sets[t].items()) ^ set(uv_sets.get(t, {}).items()))
        for t in TARGETS
        if not same[t]
    }
    figures = {
        "requirements": REQUIREMENTS,
        "packages_per_target": counts,
        "packages_total_distinct": len({n for s in wp_sets.values() for n in s}),
        "wheelport_cold_s": round(wp_cold, 2),
        "uv_cold_total_s": round(uv_cold, 2),
        "wheelport_warm_s": round(wp_warm, 2),
        "uv_warm_total_s": round(uv_warm, 2),
        "cold_ratio_wheelport_over_uv": round(wp_cold / uv_cold, 2),
        "warm_ratio_wheelport_over_uv": round(wp_warm / uv_warm, 2),
        "same_as_uv": same,
        "differences": {t: [list(x) for x in d] for t, d in diffs.items()},
        "warm_equals_cold": wp_sets == wp_sets2,
        "goal_cold_no_slower_than_uv": wp_cold <= uv_cold,
        "goal_warm_under_2s": wp_warm < 2.0,
    }
    if opts.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"requirements: {' '.join(REQUIREMENTS)}")
    print(f"resolved packages per target: {counts} ({figures['packages_total_distinct']} distinct)")
    print(f"cold: wheelport {wp_cold:6.2f} s (3 targets, 1 run)   uv {uv_cold:6.2f} s (3 runs)   "
          f"ratio {figures['cold_ratio_wheelport_over_uv']}")  # fmt: skip
    print(f"warm: wheelport {wp_warm:6.2f} s                      uv {uv_warm:6.2f} s           "
          f"ratio {figures['warm_ratio_wheelport_over_uv']}")  # fmt: skip
    print(f"same resolution as uv: {same}")
    for t, d in diffs.items():
        print(f"  {t}: {d}")
    print(f"goal cold ≤ uv: {'met' if figures['goal_cold_no_slower_than_uv'] else 'MISSED'}; "
          f"goal warm < 2 s: {'met' if figures['goal_warm_under_2s'] else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
