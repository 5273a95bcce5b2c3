"""The command line: parse flags, call one library function per verb, print with rich.

``main`` is the one place that turns :class:`~wheelport.errors.WheelportError` into one
clear line and an exit code (2 bad input, 1 failed job); tracebacks only with ``-v``.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from wheelport import __version__, api
from wheelport.config import Config, build_config
from wheelport.errors import UsageError, WheelportError
from wheelport.resolve import Candidate, Resolution
from wheelport.targets import Target, parse_targets

F = TypeVar("F", bound=Callable[..., Any])


class Output:
    """Where a verb prints: rich on stderr for humans, JSON on stdout for machines."""

    def __init__(self, *, json_mode: bool, quiet: bool, verbose: int) -> None:
        self.json_mode = json_mode
        self.quiet = quiet or json_mode
        self.verbose = verbose
        self.console = Console(stderr=True, highlight=False)
        self.out = Console(highlight=False, soft_wrap=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def result(self, data: dict[str, Any], human: Callable[[], None]) -> None:
        if self.json_mode:
            sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        elif not self.quiet:
            human()


def common(func: F) -> F:
    """--json, -q, -v on every verb."""

    @click.option("--json", "json_mode", is_flag=True, help="Print a JSON result on stdout.")
    @click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
    @click.option("-v", "--verbose", count=True, help="More output; tracebacks on errors.")
    @functools.wraps(func)
    def wrapper(*args: Any, json_mode: bool, quiet: bool, verbose: int, **kwargs: Any) -> Any:
        out = Output(json_mode=json_mode, quiet=quiet, verbose=verbose)
        _state.out = out
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        return func(*args, out=out, **kwargs)

    return wrapper  # type: ignore[return-value]


class _State(threading.local):
    out: Output | None = None


_state = _State()


def inputs(func: F) -> F:
    """The inputs shared by ``lock`` and ``sync``."""
    opts = [
        click.argument("requirements", nargs=-1),
        click.option("-r", "--requirement", "requirement_files", multiple=True, type=click.Path(path_type=Path), help="Requirements file (repeatable)."),
        click.option("-c", "--constraint", "constraint_files", multiple=True, type=click.Path(path_type=Path), help="Constraints file (repeatable)."),
        click.option("--extra", "extras", multiple=True, help="Extra of the project in the current directory."),
        click.option("--group", "groups", multiple=True, help="PEP 735 dependency group of the project."),
        click.option("-t", "--target", "targets", multiple=True, help="Target, e.g. cp312-manylinux_2_28_x86_64 (repeatable; default: host)."),
        click.option("--index-url", "index_urls", multiple=True, help="Index URL (repeatable; first index with a project wins)."),
        click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Wheelhouse directory (default ./wheelhouse)."),
        click.option("--pre/--no-pre", default=None, help="Allow prereleases."),
        click.option("--prefer-binary/--no-prefer-binary", default=None, help="Prefer an older version with a wheel to a newer sdist."),
        click.option("--only-binary", multiple=True, help="Never use sdists for NAME (or :all:)."),
        click.option("--from-source", multiple=True, help="Build NAME (or :all:) from its sdist."),
        click.option("--tool", "tools", multiple=True, help="Installer wheels to carry per target (default: pip; add uv)."),
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
        targets=kwargs.pop("targets", ()),
        index_urls=kwargs.pop("index_urls", ()),
        output=kwargs.pop("output", None),
        pre=kwargs.pop("pre", None),
        prefer_binary=kwargs.pop("prefer_binary", None),
        only_binary=kwargs.pop("only_binary", ()),
        from_source=kwargs.pop("from_source", ()),
        jobs=kwargs.pop("jobs", None),
        tools=kwargs.pop("tools", ()),
    )


class ProgressReporter:
    """Shows one spinner line per target while resolving."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def target_started(self, target: Target) -> None:
        if self.progress:
            with self.lock:
                self.tasks[target.identifier] = self.progress.add_task(f"{target} resolving", total=None)
                self.counts[target.identifier] = 0

    def pinned(self, target: Target, candidate: Candidate) -> None:
        if self.progress and target.identifier in self.tasks:
            with self.lock:
                self.counts[target.identifier] += 1
                n = self.counts[target.identifier]
            self.progress.update(self.tasks[target.identifier], description=f"{target} {n} pinned: {candidate}")

    def target_done(self, target: Target, resolution: Resolution) -> None:
        if self.progress and target.identifier in self.tasks:
            self.progress.update(
                self.tasks[target.identifier],
                description=f"{target} resolved {len(resolution.pins)} packages",
                total=1,
                completed=1,
            )


def _progress(out: Output) -> Progress | None:
    if out.quiet or not out.console.is_terminal:
        return None
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=out.console, transient=True)


def summary_table(resolutions: Sequence[Resolution]) -> Table:
    """package × target → version (or — where the target does not need it)."""
    table = Table(title="locked", show_lines=False)
    table.add_column("package")
    for r in resolutions:
        table.add_column(r.target.identifier)
    names = sorted({n for r in resolutions for n in r.pins})
    for name in names:
        row = [name]
        for r in resolutions:
            pin = r.pins.get(name)  # type: ignore[call-overload]
            if pin is None:
                row.append("[dim]—[/dim]")
            else:
                row.append(str(pin.version) + ("" if pin.file.is_wheel else " (sdist)"))
        table.add_row(*row)
    return table


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wheelport")
def cli() -> None:
    """Build offline wheelhouses: resolve for many targets, lock, fetch, build, index, provision."""


@cli.command("lock")
@inputs
@click.option("--check", is_flag=True, help="Exit 1 if the locks are missing or stale for these inputs; write nothing.")
@common
def lock_cmd(out: Output, check: bool, **kwargs: Any) -> None:
    """Resolve for every target and write pylock.<target>.toml (PEP 751)."""
    config = config_from(kwargs)
    targets = parse_targets(list(config.targets))
    if check:
        states = api.check(config, targets)
        stale = [s for s in states if s.reason]
        data = {"stale": {s.target: s.reason for s in stale}, "current": [s.target for s in states if not s.reason]}

        def human() -> None:
            for s in states:
                mark = "[green]current[/green]" if not s.reason else f"[red]stale[/red] ({s.reason})"
                out.console.print(f"{s.path}: {mark}")

        out.result(data, human)
        if stale:
            raise SystemExit(1)
        return
    progress = _progress(out)
    reporter = ProgressReporter(progress)
    if progress:
        with progress:
            result = api.lock(config, reporter=reporter, targets=targets)
    else:
        result = api.lock(config, reporter=reporter, targets=targets)

    def human() -> None:
        out.console.print(summary_table(result.resolutions))
        for p in result.paths:
            out.console.print(f"wrote {p}")

    out.result(result.to_json(), human)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose", "-vv") for a in args)
    json_mode = "--json" in args
    try:
        cli.main(args=args, prog_name="wheelport", standalone_mode=False)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(2) from None
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        raise SystemExit(130) from None
    except WheelportError as exc:
        _report(exc, verbose=verbose, json_mode=json_mode)
        raise SystemExit(exc.return_code) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as exc:
        if verbose:
            raise
        click.echo(f"error: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)", err=True)
        raise SystemExit(1) from None


def _report(exc: WheelportError, *, verbose: bool, json_mode: bool) -> None:
    if verbose:
        import traceback

        traceback.print_exception(exc)
    if json_mode:
        sys.stdout.write(json.dumps(exc.to_json(), indent=2) + "\n")
    click.echo(f"error: {exc}", err=True)


__all__ = ["UsageError", "cli", "main"]
