"""The moonshot workload: ~125 widely used packages, unpinned, binaries only, for 15 targets
(CPython 3.11/3.12/3.13 × manylinux_2_28 x86_64 and aarch64, musllinux_1_2 x86_64, win_amd64,
macosx_11_0_arm64), cold, in one run:

- ``wheelport lock`` (all 15 targets at once) vs ``uv pip compile`` once per target, and each
  target's pins compared with uv's;
- ``wheelport sync`` (lock + fetch + index) vs a ``pip download`` loop (one run per target,
  shared pip cache, ``--platform`` lists spelled out as a user must) and vs ``curl --parallel``
  of exactly the files the sync fetched (the link's speed);
- a no-op ``wheelport sync`` of the finished wheelhouse;
- a cold ``wheelport sync --no-cache`` (a cache of the run only: each file written once).

    .venv/bin/python bench/moonshot.py [--index-url URL] [--skip-pip] [--exclude-newer WHEN]
                                       [--rounds N]

The cold sync (a new cache and an empty wheelhouse each time) and curl run ``--rounds`` times
(3) and their medians are compared: one run's time varies by a third on this kind of machine.

Every tool resolves as the index stood at one instant (``--exclude-newer``; pip's
``--uploaded-prior-to``; default 2026-12-01T00:00:00Z, ``--exclude-newer none`` for the live
index), so that a release next week changes neither the pins compared nor the files fetched.
Prints one table. Goals (issue 19): sync ≤ 1.5× curl; sync ≥ 10× faster than the pip loop and
< 300 s; no-op < 1 s; pins equal uv's on every target.
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
    lock_pins,
    lock_urls,
    page_cost,
    pip_download_loop,
    runs,
    scrubbed_env,
    timed,
    uv_compile,
)

#: binaries only, every one for all 15 targets (scipy and scikit-learn are left out: their macOS
#: arm64 wheels need macOS 12+, so no version serves macosx_11_0_arm64)
PACKAGES = [
    "boto3",
    "botocore",
    "s3transfer",
    "urllib3",
    "requests",
    "certifi",
    "charset-normalizer",
    "idna",
    "typing-extensions",
    "python-dateutil",
    "packaging",
    "six",
    "numpy",
    "pyyaml",
    "fsspec",
    "cryptography",
    "cffi",
    "pycparser",
    "protobuf",
    "attrs",
    "pandas",
    "pydantic",
    "pydantic-core",
    "importlib-metadata",
    "zipp",
    "jmespath",
    "rsa",
    "pyasn1",
    "markupsafe",
    "jinja2",
    "click",
    "platformdirs",
    "filelock",
    "pluggy",
    "pytest",
    "colorama",
    "tomli",
    "googleapis-common-protos",
    "wrapt",
    "cachetools",
    "google-auth",
    "pyjwt",
    "aiohttp",
    "multidict",
    "yarl",
    "frozenlist",
    "aiosignal",
    "virtualenv",
    "distlib",
    "psutil",
    "sqlalchemy",
    "greenlet",
    "tzdata",
    "pytz",
    "openpyxl",
    "et-xmlfile",
    "lxml",
    "pillow",
    "requests-oauthlib",
    "oauthlib",
    "decorator",
    "tqdm",
    "rich",
    "pygments",
    "markdown-it-py",
    "mdurl",
    "iniconfig",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "sniffio",
    "soupsieve",
    "beautifulsoup4",
    "docutils",
    "isodate",
    "msgpack",
    "regex",
    "tomlkit",
    "werkzeug",
    "flask",
    "itsdangerous",
    "blinker",
    "fastapi",
    "starlette",
    "uvicorn",
    "websockets",
    "python-dotenv",
    "pyparsing",
    "kiwisolver",
    "cycler",
    "fonttools",
    "contourpy",
    "matplotlib",
    "networkx",
    "sympy",
    "mpmath",
    "joblib",
    "threadpoolctl",
    "orjson",
    "zstandard",
    "more-itertools",
    "jsonschema",
    "referencing",
    "rpds-py",
    "pyopenssl",
    "paramiko",
    "bcrypt",
    "pynacl",
    "gitpython",
    "shellingham",
    "typer",
    "tabulate",
    "sortedcontainers",
    "babel",
    "markdown",
    "deprecated",
    "redis",
    "pymysql",
    "psycopg2-binary",
    "coverage",
    "pathspec",
    "google-api-core",
    "dill",
    "tenacity",
    "azure-core",
    "xmltodict",
    "wcwidth",
    "prompt-toolkit",
]

#: the instant every tool resolves at (a fixed index: pins comparable from run to run)
CUTOFF = "2026-12-01T00:00:00Z"

TARGETS = [
    f"cp3{minor}-{platform}"
    for minor in (11, 12, 13)
    for platform in (
        "manylinux_2_28_x86_64",
        "manylinux_2_28_aarch64",
        "musllinux_1_2_x86_64",
        "win_amd64",
        "macosx_11_0_arm64",
    )
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index-url", default="https://pypi.org/simple")
    ap.add_argument("--skip-pip", action="store_true", help="leave out the (slow) pip loop")
    ap.add_argument("--exclude-newer", default=CUTOFF,
                    help=f"resolve as the index stood then (default {CUTOFF}; 'none': live)")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3, help="cold syncs and curl runs (median)")
    args = ap.parse_args()
    rounds = max(1, args.rounds)
    index = args.index_url
    cutoff = [] if args.exclude_newer == "none" else ["--exclude-newer", args.exclude_newer]
    work = Path(tempfile.mkdtemp(prefix="wheelport-moonshot-"))
    try:
        reqs = work / "requirements.in"
        reqs.write_text("\n".join(PACKAGES) + "\n")
        targets = [a for t in TARGETS for a in ("-t", t)]
        common = ["-r", str(reqs), *targets, "--index-url", index, "--only-binary", ":all:",
                  "--tool", "none", "-q", *cutoff]  # fmt: skip
        wp = [sys.executable, "-m", "wheelport"]
        lock_s, _ = timed([*wp, "lock", *common, "-o", str(work / "lock")],
                          scrubbed_env(WHEELPORT_CACHE_DIR=str(work / "wp-lock-cache")))  # fmt: skip
        # uv once per target, one after the other (as the loop a user writes), cold cache
        uv: dict[str, tuple[float, dict[str, str]]] = {}
        for t in TARGETS:
            uv[t] = uv_compile(reqs, t, index, work / "uv-cache", "--only-binary", ":all:",
                               *cutoff)  # fmt: skip
        uv_s = sum(s for s, _ in uv.values())
        same = [t for t in TARGETS if lock_pins(work / "lock", t) == uv[t][1]]

        syncs, cpu = [], CPU()
        for i in range(rounds):
            shutil.rmtree(work / "wh", ignore_errors=True)
            env = scrubbed_env(WHEELPORT_CACHE_DIR=str(work / f"wp-sync-cache-{i}"))
            syncs.append(timed([*wp, "sync", *common, "-o", str(work / "wh")], env)[0])
        sync_cpu = per_run(cpu, rounds)
        sync_s = statistics.median(syncs)
        noop_s, _ = timed([*wp, "sync", *common, "-o", str(work / "wh")], env)
        # cold again, keeping nothing beyond the wheelhouse (each file written once)
        cpu = CPU()
        bare_s, _ = timed([*wp, "sync", *common, "--no-cache", "-o", str(work / "bare")], env)
        bare_cpu = cpu.text()
        files = lock_urls(work / "wh")
        size = sum(n for _, n in files)
        curls, cpu = [], CPU()
        for i in range(rounds):
            curls.append(curl_parallel([u for u, _ in files], work / f"curl-{i}"))
            shutil.rmtree(work / f"curl-{i}", ignore_errors=True)
        curl_cpu = per_run(cpu, rounds)
        curl_s = statistics.median(curls)
        pages = page_cost()
        pip_s = (
            None
            if args.skip_pip
            else pip_download_loop(TARGETS, PACKAGES, work, index, *cutoff[1:2])
        )

        rows = [
            ("lock, 15 targets", f"{lock_s:.1f} s", f"uv pip compile ×15: {uv_s:.1f} s",
             f"{uv_s / lock_s:.1f}× faster"),
            ("pins equal uv's", f"{len(same)}/{len(TARGETS)} targets", "", ""),
            ("sync cold", f"{sync_s:.1f} s {runs(syncs, 1)} ({len(files)} files, {size / 1e9:.2f} GB)",
             f"curl --parallel: {curl_s:.1f} s {runs(curls, 1)}", f"×{sync_s / curl_s:.2f} of the link"),
            ("  CPU used", sync_cpu, curl_cpu, ""),
            ("sync cold vs pip loop", f"{sync_s:.1f} s",
             "skipped" if pip_s is None else f"pip download ×15: {pip_s:.1f} s",
             "" if pip_s is None else f"{pip_s / sync_s:.1f}× faster"),
            ("sync cold --no-cache", f"{bare_s:.1f} s", f"curl ×{bare_s / curl_s:.1f}",
             "" if pip_s is None else f"pip loop {pip_s / bare_s:.1f}× slower"),
            ("  CPU used", bare_cpu, "", ""),
            ("no-op sync", f"{noop_s:.2f} s", "", "goal < 1 s"),
        ]  # fmt: skip
        print(f"{len(PACKAGES)} requirements, {len(TARGETS)} targets, index {index}"
              f"{f' as of {cutoff[1]}' if cutoff else ' (live)'}; cold syncs and curl: median of "
              f"{rounds} (each run in brackets)")  # fmt: skip
        width = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)))
        print(f"writing new file pages here costs {pages:.2f} s of kernel CPU per GB")
        for t in TARGETS:
            if t not in same:
                mine, theirs = lock_pins(work / "lock", t), uv[t][1]
                diff = [f"{n} {mine.get(n, '-')} (uv {theirs.get(n, '-')})"
                        for n in sorted(mine.keys() | theirs.keys()) if mine.get(n) != theirs.get(n)]  # fmt: skip
                print(f"  {t}: differs from uv: {', '.join(diff[:10])}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def per_run(cpu: CPU, rounds: int) -> str:
    user, system = cpu.used()
    return f"CPU {user / rounds:.1f} user + {system / rounds:.1f} sys per run"


if __name__ == "__main__":
    main()
