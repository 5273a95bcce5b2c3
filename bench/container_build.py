"""Benchmark: container builds through wheelport vs cibuildwheel by hand.

1. Overhead: wall time of ``build_in_container`` vs ``python -m cibuildwheel`` invoked by hand
   on the same sdist, image and settings (goal: < 10 % overhead).
2. Concurrency: two independent sdists built concurrently vs one (goal: < 1.6x).
3. Emulation: the same sdist built for ``cp311-manylinux_2_36_aarch64`` in the local arm64
   image under qemu vs for x86_64 natively (the ratio; no goal, it is what emulation costs).

Needs podman, the local base image and the local aarch64 image (built when missing; the
aarch64 part is skipped with the reason when this machine cannot run arm64 containers). Run
from the repository root:

    .venv/bin/python bench/container_build.py [--repeat N] [--emulated-repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from support.dists import make_backend_wheel, make_sdist  # noqa: E402
from wheelport.builders import container, images  # noqa: E402
from wheelport.errors import WheelportError  # noqa: E402
from wheelport.targets import Target, parse_target  # noqa: E402

TARGET = parse_target("cp311-manylinux_2_36_x86_64")
ARM_TARGET = parse_target("cp311-manylinux_2_36_aarch64")


def _by_hand(sdist: Path, image: str, deps: Path, out: Path) -> float:
    """cibuildwheel as a user would run it, with the same settings, timed."""
    env = container.cibw_env(
        TARGET, image=image, engine="podman", deps_dir=deps, base_env=os.environ
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "cibuildwheel.toml"
        config.write_text(container.cibw_config())
        start = time.perf_counter()
        subprocess.run(
            container.cibw_argv(sys.executable, config, out, sdist),
            env=env,
            cwd=tmp,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - start


def _wheelport(
    sdist: Path, image: str, deps: Path, out: Path, logs: Path, target: Target = TARGET
) -> float:
    start = time.perf_counter()
    container.build_in_container(
        sdist, target, image=image, deps_dir=deps, out_dir=out, log_dir=logs, engine="podman"
    )
    return time.perf_counter() - start


def _emulation(sdist: Path, native: str, deps: Path, work: Path, repeat: int) -> None:
    """The same sdist for aarch64 under qemu vs natively for x86_64, printed with the ratio."""
    try:
        images.emulation_for("aarch64")
        arm = images.ensure_local_image("podman", arch="aarch64").tag
    except WheelportError as exc:
        print(f"emulated aarch64      : skipped ({exc})")
        return
    _wheelport(sdist, arm, deps, work / "arm-warm", work / "logs", ARM_TARGET)  # warm-up
    x86, emulated = [], []
    for i in range(repeat):
        x86.append(_wheelport(sdist, native, deps, work / f"x86-{i}", work / "logs"))
        emulated.append(_wheelport(sdist, arm, deps, work / f"arm-{i}", work / "logs", ARM_TARGET))
    n, e = statistics.median(x86), statistics.median(emulated)
    print(f"native x86_64        : median {n:.2f}s  {[round(x, 2) for x in x86]}")
    print(f"emulated aarch64     : median {e:.2f}s  {[round(x, 2) for x in emulated]}")
    print(f"emulation ratio      : {e / n:.2f}x native on medians")


def main() -> None:
    """Run both measurements and print the figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--emulated-repeat", type=int, default=2)
    args = parser.parse_args()
    image = images.ensure_local_base_image("podman")
    with tempfile.TemporaryDirectory(prefix="wheelport-bench-") as tmp:
        work = Path(tmp)
        deps = work / "deps"
        make_backend_wheel(deps)
        sdists = [
            make_sdist(work / "src", name, "1.0", c_extension=True) for name in ("alpha", "beta")
        ]
        # warm-up: page cache, image layers
        _wheelport(sdists[0], image, deps, work / "warm", work / "logs")

        hand, ours = [], []
        for i in range(args.repeat):
            hand.append(_by_hand(sdists[0], image, deps, work / f"hand{i}"))
            ours.append(_wheelport(sdists[0], image, deps, work / f"ours{i}", work / "logs"))
        h, o = statistics.median(hand), statistics.median(ours)
        print(f"cibuildwheel by hand : median {h:.2f}s  {[round(x, 2) for x in hand]}")
        print(f"build_in_container   : median {o:.2f}s  {[round(x, 2) for x in ours]}")
        print(
            f"overhead             : {100 * (o / h - 1):+.1f} % on medians, "
            f"{100 * (min(ours) / min(hand) - 1):+.1f} % on best runs (goal < 10 %)"
        )

        pairs = []
        for i in range(args.repeat):
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=2) as pool:
                futures = [
                    pool.submit(_wheelport, sd, image, deps, work / f"pair{i}", work / "logs")
                    for sd in sdists
                ]
                for f in futures:
                    f.result()
            pairs.append(time.perf_counter() - start)
        p = statistics.median(pairs)
        print(f"two sdists at once   : median {p:.2f}s  {[round(x, 2) for x in pairs]}")
        print(
            f"concurrency ratio    : {p / o:.2f}x one build on medians, "
            f"{min(pairs) / min(ours):.2f}x on best runs (goal < 1.6x)"
        )
        print(f"load average         : {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        _emulation(sdists[0], image, deps, work, args.emulated_repeat)


if __name__ == "__main__":
    main()
