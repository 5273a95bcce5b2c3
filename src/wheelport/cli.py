"""The command line: parse flags, call one library function per verb, print with rich
(the reporters and tables are :mod:`wheelport.output`'s).

``main`` is the one place that turns :class:`~wheelport.errors.WheelportError` into one
clear line and an exit code (2 bad input, 1 failed job); tracebacks only with ``-v``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from wheelport import __version__, api
from wheelport.config import Config, build_config
from wheelport.errors import UsageError, WheelportError
from wheelport.index.http import leave_out_httpx_cli
from wheelport.index.spawn import start_early
from wheelport.output import (
    FetchProgress,
    Output,
    ProgressReporter,
    common,
    coverage_table,
    images_table,
    lock_statuses,
    plan_table,
    progress_for,
    rebuild_table,
    summary_table,
)
from wheelport.targets import parse_targets

F = TypeVar("F", bound=Callable[..., Any])


def inputs(func: F) -> F:
    """The inputs shared by ``lock`` and ``sync``."""
    opts = [
        click.argument("requirements", nargs=-1),
        click.option("-r", "--requirement", "requirement_files", multiple=True, type=click.Path(path_type=Path), help="Requirements file (repeatable)."),
        click.option("-c", "--constraint", "constraint_files", multiple=True, type=click.Path(path_type=Path), help="Constraints file (repeatable)."),
        click.option("--extra", "extras", multiple=True, help="Extra of the project in the current directory."),
        click.option("--group", "groups", multiple=True, help="PEP 735 dependency group of the project."),
        click.option("--all-groups", is_flag=True, help="With --from: every dependency group of the lock (as uv export --all-groups)."),
        click.option("--only-group", "only_groups", multiple=True, help="With --from: only this group, without the project's own dependencies (repeatable; as uv export --only-group)."),
        click.option("-t", "--target", "targets", multiple=True, help="Target, e.g. cp312-manylinux_2_28_x86_64 (repeatable; default: host)."),
        click.option("--index-url", "index_urls", multiple=True, help="Index URL (repeatable; first index with a project wins). Given here, it wins over the config file and over every index a --from lock records."),
        click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Wheelhouse directory (default ./wheelhouse)."),
        click.option("--pre/--no-pre", default=None, help="Allow prereleases."),
        click.option("--prefer-binary/--no-prefer-binary", default=None, help="Prefer an older version with a wheel to a newer sdist."),
        click.option("--only-binary", multiple=True, help="Never use sdists for NAME (or :all:)."),
        click.option("--from-source", multiple=True, help="Build NAME (or :all:) from its sdist."),
        click.option("--exclude-newer", default=None, envvar="WHEELPORT_EXCLUDE_NEWER", metavar="DATE", help="Resolve as the index stood then: only files uploaded before DATE (a UTC date, meaning the whole day, or an RFC 3339 timestamp with its offset); a file the index gives no upload time is left out too (as uv's --exclude-newer; env WHEELPORT_EXCLUDE_NEWER)."),
        click.option("--tool", "tools", multiple=True, help="Installer wheels to carry per target (default: pip; add uv; 'none' for none)."),
        click.option("--refresh", is_flag=True, help="Revalidate every cached index page."),
        click.option("--no-cache", is_flag=True, envvar="WHEELPORT_NO_CACHE", help="Neither read nor fill the user cache: pages, metadata and files go to a temporary cache removed when the run ends, and each downloaded file is moved into the wheelhouse (written once; env WHEELPORT_NO_CACHE)."),
        click.option("--resolve-timeout", type=click.FloatRange(min=0), default=None, envvar="WHEELPORT_RESOLVE_TIMEOUT", metavar="SECONDS", help="Give up resolving a target after SECONDS, naming the conflict met most (default 300; 0: no limit; env WHEELPORT_RESOLVE_TIMEOUT)."),
    ]  # fmt: skip
    for opt in reversed(opts):
        func = opt(func)
    return func


def config_from(kwargs: dict[str, Any]) -> Config:
    return build_config(
        directory=Path.cwd(),
        requirement_files=kwargs.pop("requirement_files", ()),
        requirements=kwargs.pop("requirements", ()),
        constraint_files=kwargs.pop("constraint_files", ()),
        extras=kwargs.pop("extras", ()),
        groups=kwargs.pop("groups", ()),
        all_groups=kwargs.pop("all_groups", False),
        only_groups=kwargs.pop("only_groups", ()),
        targets=kwargs.pop("targets", ()),
        index_urls=kwargs.pop("index_urls", ()),
        output=kwargs.pop("output", None),
        pre=kwargs.pop("pre", None),
        prefer_binary=kwargs.pop("prefer_binary", None),
        only_binary=kwargs.pop("only_binary", ()),
        from_source=kwargs.pop("from_source", ()),
        exclude_newer=kwargs.pop("exclude_newer", None),
        jobs=kwargs.pop("jobs", None),
        tools=kwargs.pop("tools", ()),
        refresh=kwargs.pop("refresh", False),
        no_cache=kwargs.pop("no_cache", False),
        resolve_timeout=kwargs.pop("resolve_timeout", None),
        from_lock=kwargs.pop("from_lock", None),
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wheelport")
def cli() -> None:
    """Build offline wheelhouses: resolve for many targets, lock, fetch, build, index, provision."""


@cli.command("lock")
@inputs
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 if the locks are missing or stale for these inputs; write nothing.",
)
@click.option(
    "--allow-missing",
    is_flag=True,
    help="Lock the targets that resolve; report (not fail on) those that do not. When none resolves there is nothing to write: exit 1.",
)
@click.option(
    "--from",
    "from_lock",
    type=click.Path(path_type=Path),
    default=None,
    help="Take the pins from uv.lock, poetry.lock, Pipfile.lock, pdm.lock, pylock.toml or environment.yml (no re-resolve; --extra/--group select its extras and groups).",
)
@common
def lock_cmd(out: Output, check: bool, allow_missing: bool, **kwargs: Any) -> None:
    """Resolve for every target and write pylock.<target>.toml (PEP 751)."""
    config = config_from(kwargs)
    targets = parse_targets(list(config.targets))
    if check:
        states = api.check(config, targets)
        stale = [s for s in states if s.reason]
        data = {
            "stale": {s.target: s.reason for s in stale},
            "current": [s.target for s in states if not s.reason],
        }

        def show_states() -> None:
            for s in states:
                mark = (
                    "[green]current[/green]" if not s.reason else f"[red]stale[/red] ({s.reason})"
                )
                out.console.print(f"{s.path}: {mark}")

        out.result(data, show_states)
        if stale:
            raise SystemExit(1)
        return
    progress = progress_for(out)
    reporter = ProgressReporter(progress)
    with progress or contextlib.nullcontext():
        if config.from_lock is not None:
            result = api.lock_from(
                config,
                config.from_lock,
                reporter=reporter,
                targets=targets,
                allow_missing=allow_missing,
            )
        else:
            result = api.lock(
                config, reporter=reporter, targets=targets, allow_missing=allow_missing
            )

    def human() -> None:
        out.console.print(summary_table(result.resolutions))
        for p in result.paths:
            out.console.print(f"wrote {p}")
        for f in result.failed:
            out.console.print(f"[red]not locked[/red] {f.target}: {f.error}")

    out.result(result.to_json(), human)


@cli.command("sync")
@inputs
@click.option(
    "--allow-missing",
    is_flag=True,
    help="Finish with exit 0 even when a package cannot be served for a target (a target that cannot be locked is left out; exit 1 when none can).",
)
@click.option("-j", "--jobs", type=int, default=None, help="Concurrent downloads (default 16).")
@click.option(
    "--from",
    "from_lock",
    type=click.Path(path_type=Path),
    default=None,
    help="Take the pins from uv.lock, poetry.lock, Pipfile.lock, pdm.lock, pylock.toml or environment.yml (no re-resolve; --extra/--group select its extras and groups).",
)
@click.option(
    "--shard",
    default=None,
    metavar="I/N",
    help="Build only the I-th of N balanced parts of the build work (e.g. 2/3), for 'wheelport merge'.",
)
@click.option(
    "--only-target",
    "only_targets",
    multiple=True,
    metavar="TARGET",
    help="Build only the jobs for TARGET (repeatable); other builds are left to other runs.",
)
@common
def sync_cmd(
    out: Output,
    allow_missing: bool,
    shard: str | None,
    only_targets: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """Lock (if stale), fetch, build and index: the whole wheelhouse, idempotently."""
    from wheelport.builders.report import LineBuildReporter
    from wheelport.sync import SyncResult, sync

    part = None
    if shard is not None:
        from wheelport.builders.planner import parse_shard

        try:
            part = parse_shard(shard)
        except ValueError as exc:
            raise UsageError(str(exc), hint="--shard I/N, 1 <= I <= N") from None
    config = config_from(kwargs)
    fp = FetchProgress(out)
    progress = progress_for(out)
    reporter = ProgressReporter(progress)
    failure: WheelportError | None = None
    try:
        with progress or contextlib.nullcontext():
            result = sync(
                config,
                reporter=reporter,
                fetch_reporter=fp,
                allow_missing=allow_missing,
                build_reporter=LineBuildReporter(out.info),
                shard=part,
                only_targets=only_targets,
            )
    except WheelportError as exc:
        # red coverage cells: the table still shows what was served and why the rest was not
        if not isinstance(getattr(exc, "result", None), SyncResult):
            raise
        failure, result = exc, exc.result  # type: ignore[attr-defined]
    finally:
        fp.stop()

    def human() -> None:
        statuses = lock_statuses(result.wheelhouse)
        out.console.print(coverage_table(result.coverage, result.targets, statuses))
        f = result.fetched
        out.console.print(
            f"wheelhouse {result.wheelhouse}: {len(f.downloaded)} downloaded, {len(f.linked_from_cache)} from cache, "
            f"{len(f.present)} already present, {sum(1 for b in result.builds if not b.skipped and b.wheel)} built"
        )

    out.result(result.to_json(), human)
    if failure is not None:
        raise failure


@cli.command("plan")
@click.option(
    "-w",
    "--wheelhouse",
    type=click.Path(path_type=Path),
    default=Path("wheelhouse"),
    help="Wheelhouse directory (default ./wheelhouse).",
)
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    default=None,
    help="Show every build the locks imply and its shard of N (as 'sync --shard I/N' cuts them).",
)
@common
def plan_cmd(out: Output, wheelhouse: Path, shards: int | None) -> None:
    """The build work the locks leave (no network): each job's builder, runner and whether
    this machine can run it."""
    from wheelport.builders.stage import build_plan, default_builders
    from wheelport.config import read_settings

    # the project's images and build packages, if any; a plan needs no requirements
    rows = build_plan(wheelhouse, default_builders(read_settings(Path.cwd())), shards=shards)

    if out.json_mode:  # a list of rows, not an object
        sys.stdout.write(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    elif not out.quiet:
        out.console.print(plan_table(rows, shards))


@cli.command("index")
@click.argument("wheelhouse", type=click.Path(path_type=Path), default=Path("wheelhouse"))
@common
def index_cmd(out: Output, wheelhouse: Path) -> None:
    """Write the static PEP 503/691/658 index in WH/simple."""
    from wheelport.site.writer import write_index
    from wheelport.wheelhouse import Wheelhouse

    if not wheelhouse.is_dir():
        raise UsageError(f"wheelhouse not found: {wheelhouse}", hint="run 'wheelport sync' first")
    report = write_index(wheelhouse, manifest=Wheelhouse(wheelhouse).load_manifest())
    data = {
        "projects": report.projects,
        "files": report.files,
        "pages_written": list(report.pages_written),
        "metadata_written": list(report.metadata_written),
        "removed": list(report.removed),
    }
    out.result(
        data,
        lambda: out.console.print(
            f"indexed {wheelhouse / 'simple'}: {report.projects} projects, {report.files} files, "
            f"{len(report.pages_written)} pages written"
        ),
    )


@cli.command("serve")
@click.argument("wheelhouse", type=click.Path(path_type=Path), default=Path("wheelhouse"))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
@common
def serve_cmd(out: Output, wheelhouse: Path, host: str, port: int) -> None:
    """Serve WH over HTTP (PEP 691 content negotiation) for pip and uv on the LAN."""
    from wheelport.serve import serve

    if not (wheelhouse / "simple").is_dir():
        raise UsageError(
            f"no index in {wheelhouse}", hint="run 'wheelport sync' or 'wheelport index' first"
        )
    out.info(f"serving {wheelhouse} on http://{host}:{port}/simple/ (Ctrl-C stops)")
    serve(wheelhouse, host, port)


@cli.command("verify")
@click.argument("args", nargs=-1, metavar="[WH] [PACKAGE]...")
@click.option("--rebuild", is_flag=True, help="Also rebuild each built wheel (or those of PACKAGE...) offline from the wheelhouse's sdist and build requirements, by the recorded builder and image, and compare the bytes; exit 1 when one differs.")  # fmt: skip
@common
def verify_cmd(out: Output, args: tuple[str, ...], rebuild: bool) -> None:
    """Re-hash every file against the manifest and locks; report missing, extra and tampered files."""
    from wheelport.verify import verify

    wheelhouse, packages = _verify_args(args, rebuild)
    report = verify(wheelhouse)
    rebuilt = None
    if rebuild:
        from wheelport.rebuild import rebuild as rebuild_wheels

        rebuilt = rebuild_wheels(wheelhouse, packages)

    def human() -> None:
        for kind in ("tampered", "missing", "extra"):
            for item in getattr(report, kind):
                out.console.print(f"[red]{kind}[/red] {item}")
        out.console.print(
            f"{report.checked} files checked" + ("" if report.ok else ": [red]problems found[/red]")
        )
        if rebuilt is not None:
            out.console.print(rebuild_table(rebuilt))
            if rebuilt.log_dir:
                out.console.print(f"rebuild logs: {rebuilt.log_dir}")

    data = report.to_json()
    if rebuilt is not None:
        data["rebuild"] = rebuilt.to_json()
        data["ok"] = report.ok and rebuilt.ok
    out.result(data, human)
    if not report.ok:
        raise report.error()
    if rebuilt is not None and not rebuilt.ok:
        raise rebuilt.error()


def _verify_args(args: tuple[str, ...], rebuild: bool) -> tuple[Path, tuple[str, ...]]:
    """``[WH] [PACKAGE]...``: the first argument is the wheelhouse unless ``--rebuild`` is
    given and it is not a wheelhouse directory (then every argument is a package)."""
    if not rebuild:
        if len(args) > 1:
            raise UsageError(
                f"verify takes one wheelhouse, not {len(args)} arguments",
                hint="name packages only with --rebuild",
            )
        return Path(args[0] if args else "wheelhouse"), ()
    if args and (
        Path(args[0], "wheelport.json").is_file() or list(Path(args[0]).glob("pylock.*.toml"))
    ):
        return Path(args[0]), args[1:]
    return Path("wheelhouse"), args


@cli.command("provision")
@click.argument("venv", type=click.Path(path_type=Path))
@click.option(
    "-w",
    "--wheelhouse",
    type=click.Path(path_type=Path),
    default=Path("wheelhouse"),
    show_default=True,
)
@click.option(
    "--python",
    "python",
    default=None,
    help="Interpreter: a version like 3.12 or a path (default: this one).",
)
@click.option(
    "-t",
    "--target",
    default=None,
    help="Use pylock.<target>.toml (default: inferred from the interpreter).",
)
@click.option("--installer", type=click.Choice(["pip", "uv"]), default="pip", show_default=True)
@common
def provision_cmd(
    out: Output,
    venv: Path,
    wheelhouse: Path,
    python: str | None,
    target: str | None,
    installer: str,
) -> None:
    """Create VENV and install a target's lock from the wheelhouse only (no network)."""
    from wheelport.errors import ProvisionError
    from wheelport.provision import provision

    report = provision(
        venv, wheelhouse=wheelhouse, python=python, target=target, installer=installer
    )

    def human() -> None:
        out.console.print(
            f"provisioned {report.venv} ({report.python}, target {report.target}, {report.installer}): "
            f"{len(report.packages)} packages in {report.seconds:.1f} s"
        )
        out.console.print(
            "pip check: "
            + (
                "[green]ok[/green]"
                if report.check_ok
                else f"[red]{report.check_output.strip()}[/red]"
            )
        )

    out.result(report.to_json(), human)
    if not report.check_ok:
        raise ProvisionError(
            f"{report.venv}: installed, but 'pip check' reports problems: {report.check_output.strip().splitlines()[0] if report.check_output.strip() else ''}"
        )


@cli.group("image")
def image_group() -> None:
    """Container images for manylinux builds."""


@image_group.command("build-local")
@click.option(
    "--release",
    type=click.Choice(["bullseye", "bookworm", "trixie"]),
    default="bookworm",
    show_default=True,
    help="Debian release: its glibc is the image's policy (2.31, 2.36, 2.41).",
)
@click.option(
    "--arch",
    type=click.Choice(["x86_64", "aarch64"]),
    default="x86_64",
    show_default=True,
    help="Image architecture (aarch64 on an x86_64 machine runs under qemu-user-static).",
)
@click.option(
    "--python",
    "pythons",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="A CPython prefix to copy in, e.g. $PYENV_ROOT/versions/3.12.1 (repeatable).",
)
@click.option("--tag", default=None, help="An extra tag for the image.")
@click.option("--engine", default=None, help="podman or docker (default: detected).")
@common
def image_build_local_cmd(
    out: Output,
    release: str,
    arch: str,
    pythons: tuple[Path, ...],
    tag: str | None,
    engine: str | None,
) -> None:
    """Build a manylinux-compatible image from a Debian release's own packages
    (debootstrap + import), for machines that cannot pull quay.io images."""
    from wheelport.builders import container, images

    engine = engine or container.detect_engine()
    if engine is None:
        raise UsageError(
            "no container engine found", hint="install podman (apt-get install podman runc)"
        )
    # bad input (release, arch, an interpreter that does not fit) fails before any work
    planned = images.local_image_tag(release, arch, pythons)
    if not images.image_exists(engine, planned):
        out.info(f"building {planned} (debootstrap; takes a few minutes)")
    image = images.ensure_local_image(
        engine, release=release, arch=arch, pythons=pythons, extra_tag=tag
    )
    out.result(
        {"image": image.tag, "tag": tag, **image.to_json()},
        lambda: out.console.print(
            f"image {image.tag} ({image.policy} {image.arch}: {', '.join(image.pythons)})"
            + (f" (also {tag})" if tag else "")
        ),
    )


@image_group.command("list")
@click.option("--engine", default=None, help="podman or docker (default: detected).")
@common
def image_list_cmd(out: Output, engine: str | None) -> None:
    """The local images wheelport built: tag, policy, arch and the CPythons each serves."""
    from wheelport.builders import container, images

    engine = engine or container.detect_engine()
    if engine is None:
        raise UsageError(
            "no container engine found", hint="install podman (apt-get install podman runc)"
        )
    found = images.local_images(engine)

    def human() -> None:
        if not found:
            out.console.print("no local wheelport images (build one: wheelport image build-local)")
            return
        out.console.print(images_table(found))

    if out.json_mode:  # a list of images, not one result object
        sys.stdout.write(json.dumps([image.to_json() for image in found], indent=2) + "\n")
    elif not out.quiet:
        human()


def _register_exports() -> None:
    from wheelport.export.commands import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_register_exports()


def _one_malloc_arena() -> None:
    """Ask glibc for one malloc arena (as ``MALLOC_ARENA_MAX=1`` would).

    glibc gives each thread that allocates its own arena (up to eight per core), and memory
    freed in one is kept there: the index client's threads, each growing one with the pages it
    reads, raised a lock's peak memory by a quarter (Superset, 5 targets: 154 MB against 126 MB
    with one arena, same time). Python allocates with the GIL held, so one arena adds no
    waiting. Nothing is changed where the user set ``MALLOC_ARENA_MAX`` or the C library is not
    glibc (musl, macOS, Windows)."""
    if sys.platform != "linux" or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX (malloc.h)
    except (OSError, ValueError, AttributeError):
        return


def _fewer_collections() -> None:
    """Let Python's cycle collector run less often. A lock allocates millions of small objects
    (the file entries of every index page it reads) and hardly any reference cycles; with the
    default thresholds (a collection every 700 net allocations, the whole heap every hundred
    of those) collections took ~6 % of a 15-target lock (warm: 4.05 s, 3.81 s with these; the
    same peak memory). What exists at start (modules, classes) is left out of them all."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to one line and an exit code."""
    _one_malloc_arena()
    _fewer_collections()
    leave_out_httpx_cli()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["sync"]:
        start_early()  # the download process: its imports run on the other core meanwhile
    verbose = any(a in ("-v", "--verbose", "-vv") for a in args)
    json_mode = "--json" in args
    restore = _catch_sigint()
    try:
        cli.main(args=args, prog_name="wheelport", standalone_mode=False)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(2) from None
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            _interrupted()
        click.echo("aborted", err=True)
        raise SystemExit(130) from None
    except WheelportError as exc:
        _report(exc, verbose=verbose, json_mode=json_mode)
        raise SystemExit(exc.return_code) from None
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit:
        raise
    except OSError as exc:
        if verbose:
            raise
        from wheelport.wheelhouse import disk_full, is_disk_full

        if is_disk_full(exc):  # a write no stage names more precisely
            _report(disk_full(exc.filename or "?"), verbose=False, json_mode=json_mode)
            raise SystemExit(1) from None
        _internal(exc)
    except Exception as exc:
        if verbose:
            raise
        _internal(exc)
    finally:
        restore()


def run() -> NoReturn:
    """The ``wheelport`` command (and ``python -m wheelport``): :func:`main`, then the end of
    the process without freeing its objects one by one — a quarter of a second after a
    15-target sync (the pages of every project it read). Streams are flushed and exit handlers
    run first, as at any exit; threads still running (read-ahead nobody needs any more) end
    with the process. A traceback (``-v``) is printed as usual."""
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    _quick_exit(code)


def _quick_exit(code: object) -> NoReturn:
    """End the process as ``SystemExit(code)`` would, less the interpreter's teardown."""
    import atexit

    if code is not None and not isinstance(code, int):
        click.echo(str(code), err=True)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    atexit._run_exitfuncs()  # a temporary cache is removed, logs flushed
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


def _internal(exc: BaseException) -> NoReturn:
    click.echo(
        f"error: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
        err=True,
    )
    raise SystemExit(1) from None


#: Seconds an interrupted run has to unwind (temporary files are removed on the way) before
#: the process ends anyway: worker threads finishing their downloads or builds must not keep it.
INTERRUPT_GRACE = 2.0
_sigint = threading.Event()
_exit_once = threading.Lock()


def _catch_sigint() -> Callable[[], None]:
    """On SIGINT raise KeyboardInterrupt in the main thread (``finally`` blocks clean up) and
    make sure the process ends within :data:`INTERRUPT_GRACE`. Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_sigint(signum: int, frame: object) -> None:
        if _sigint.is_set():
            return  # one interrupt is enough; the watchdog below ends the run
        _sigint.set()
        threading.Thread(target=_watchdog, name="wheelport-interrupt", daemon=True).start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)

    return restore


def _watchdog() -> None:
    time.sleep(INTERRUPT_GRACE)
    _interrupted()


def _interrupted() -> NoReturn:
    """Say ``interrupted`` once and exit 130. After a real SIGINT the process ends at once
    (``os._exit``): pool threads still finishing a download would otherwise be waited for."""
    if not _exit_once.acquire(blocking=threading.current_thread() is threading.main_thread()):
        raise SystemExit(130)
    click.echo("interrupted", err=True)
    if not _sigint.is_set():  # a KeyboardInterrupt without our handler (main() in-process)
        _exit_once.release()
        raise SystemExit(130) from None
    from wheelport.wheelhouse import remove_own_partials

    remove_own_partials()  # worker threads die with the process: their files must not stay
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(130)


def _report(exc: WheelportError, *, verbose: bool, json_mode: bool) -> None:
    if verbose:
        import traceback

        traceback.print_exception(exc)
    if json_mode:
        sys.stdout.write(json.dumps(exc.to_json(), indent=2) + "\n")
    click.echo(f"error: {exc}", err=True)


__all__ = ["UsageError", "cli", "main"]
