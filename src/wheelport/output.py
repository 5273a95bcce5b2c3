"""How every verb prints: rich on stderr for humans, JSON on stdout for machines.

``common`` gives each verb ``--json``, ``-q`` and ``-v``; the CLI and the export commands
both use it. The renderers are here too: the reporters the stages are handed
(:class:`ProgressReporter` for resolution, :class:`FetchProgress` for fetch) and the tables the
verbs print. rich's progress and tables load only when a run shows them.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from wheelport.errors import WheelportError
    from wheelport.index.models import DistFile
    from wheelport.resolve import Candidate, Resolution
    from wheelport.targets import Target

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("wheelport")


class Output:
    """Where a verb prints: rich on stderr for humans, JSON on stdout for machines."""

    def __init__(self, *, json_mode: bool, quiet: bool, verbose: int) -> None:
        self.json_mode = json_mode
        self.quiet = quiet or json_mode
        self.verbose = verbose

    # rich's consoles are made when a run first prints to one: a quiet or --json run never
    # imports rich (17-28 ms; nor does httpx, see index.http.leave_out_httpx_cli)
    @functools.cached_property
    def console(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False)

    @functools.cached_property
    def out(self) -> Console:
        from rich.console import Console

        return Console(highlight=False, soft_wrap=True)

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
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        if not verbose:
            # build backends' deprecation notices (re-raised by pyproject_hooks) are not ours to show
            from pyproject_hooks import BuildBackendWarning

            warnings.filterwarnings("ignore", category=BuildBackendWarning)
        return func(*args, out=out, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- reporters


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
                self.tasks[target.identifier] = self.progress.add_task(
                    f"{target} resolving", total=None
                )
                self.counts[target.identifier] = 0

    def first_choice(self, target: Target, file: DistFile) -> None:
        pass

    def pinned(self, target: Target, candidate: Candidate) -> None:
        if self.progress and target.identifier in self.tasks:
            with self.lock:
                self.counts[target.identifier] += 1
                n = self.counts[target.identifier]
            self.progress.update(
                self.tasks[target.identifier], description=f"{target} {n} pinned: {candidate}"
            )

    def metadata_build(self, target: Target, filename: str) -> None:
        """An sdist's metadata is built (PEP 517): the one slow step, so it gets its own line."""
        if self.progress:
            self.progress.console.print(
                f"building metadata of {filename} (no wheel of this version, dynamic metadata)"
            )
        else:
            log.info("building metadata of %s", filename)

    def target_failed(self, target: Target, error: WheelportError) -> None:
        self._finished(target, f"{target} [red]failed[/red]: {error.message}")

    def target_done(self, target: Target, resolution: Resolution) -> None:
        self._finished(target, f"{target} resolved {len(resolution.pins)} packages")

    def _finished(self, target: Target, description: str) -> None:
        if self.progress and target.identifier in self.tasks:
            self.progress.update(
                self.tasks[target.identifier], description=description, total=1, completed=1
            )


def progress_for(out: Output) -> Progress | None:
    """A transient rich progress display for a terminal, None when quiet or not a terminal."""
    if out.quiet or not out.console.is_terminal:
        return None
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=out.console,
        transient=True,
    )


def summary_table(resolutions: Sequence[Resolution]) -> Table:
    """package × target → version (or — where the target does not need it)."""
    from rich.table import Table

    table = Table(title="locked", show_lines=False)
    table.add_column("package")
    for r in resolutions:
        table.add_column(r.target.identifier)
    names = sorted({n for r in resolutions for n in r.pins})
    for name in names:
        row: list[str] = [name]
        for r in resolutions:
            pin = r.pins.get(name)
            if pin is None:
                row.append("[dim]—[/dim]")
            else:
                row.append(str(pin.version) + ("" if pin.file.is_wheel else " (sdist)"))
        table.add_row(*row)
    return table


class FetchProgress:
    """rich progress for fetch: bytes, files, rate."""

    def __init__(self, out: Output) -> None:
        self.progress: Progress | None = None
        if not out.quiet and out.console.is_terminal:
            # here: a quiet run, or one not on a terminal, never imports rich.progress (about
            # 10 ms of a no-op sync's 0.3 s)
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("fetch {task.fields[files]}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=out.console,
                transient=True,
            )
        self.task: Any = None
        self.files = 0
        self.total_files = 0

    def start(self, files: int, total_bytes: int) -> None:
        self.total_files = files
        if self.progress and files:
            self.progress.start()
            self.task = self.progress.add_task(
                "fetch", total=total_bytes or None, files=f"0/{files}"
            )

    def advance(self, nbytes: int) -> None:
        if self.progress and self.task is not None:
            self.progress.advance(self.task, nbytes)

    def file_done(self, artifact: Any, cached: bool) -> None:
        self.files += 1
        if self.progress and self.task is not None:
            self.progress.update(self.task, files=f"{self.files}/{self.total_files}")

    def stop(self) -> None:
        if self.progress:
            self.progress.stop()


def lock_statuses(wheelhouse: Path) -> dict[str, str]:
    """Package → PEP 792 status other than ``active``, as the wheelhouse's locks record them."""
    from wheelport.site.writer import lock_facts
    from wheelport.wheelhouse import Wheelhouse

    statuses = lock_facts(Wheelhouse(wheelhouse)).statuses
    return {
        name: status + (f": {reason}" if reason else "")
        for name, (status, reason) in statuses.items()
    }


def coverage_table(
    coverage: Any, targets: Sequence[str], statuses: Mapping[str, str] | None = None
) -> Table:
    """The package × target table; ``statuses`` (:func:`lock_statuses`) adds a project-status
    column when some project is archived, quarantined or deprecated."""
    from rich.table import Table

    statuses = statuses or {}
    table = Table(title="coverage")
    table.add_column("package", overflow="fold")
    for t in targets:
        table.add_column(t, overflow="fold")
    if statuses:
        table.add_column("project status", overflow="fold")
    for pkg, row in sorted(coverage.cells.items()):
        cells = [pkg]
        for t in targets:
            state, detail = row.get(t, ("", ""))
            if state == "downloaded":
                cells.append("[green]✓ downloaded[/green]")
            elif state == "built":
                cells.append(f"[green]✓ built[/green] [dim]{detail}[/dim]")
            elif state == "missing":
                cells.append(f"[red]✗ {detail}[/red]")
            elif state == "deferred":
                cells.append(f"[yellow]… {detail}[/yellow]")
            else:
                cells.append("[dim]—[/dim]")
        if statuses:
            status = statuses.get(pkg, "")
            color = "red" if status.startswith("quarantined") else "yellow"
            cells.append(f"[{color}]{status}[/{color}]" if status else "")
        table.add_row(*cells)
    return table


# --------------------------------------------------------------------------- tables


def plan_table(rows: Sequence[Mapping[str, Any]], shards: int | None) -> Table:
    """``wheelport plan``'s rows: each job's builder, runner and whether this machine runs it."""
    from rich.table import Table

    table = Table(title=f"build plan ({len(rows)} job(s))")
    for col in ("package", "version", "targets", "builder", "runner", "here", "size"):
        table.add_column(col, overflow="fold")
    if shards is not None:
        table.add_column("shard")
    for r in rows:
        here = "[green]✓ here[/green]" if r["here"] else f"[red]✗[/red] [dim]{r['reason']}[/dim]"
        cells = [r["package"], r["version"], ", ".join(r["targets"]), r["builder"],
                 r["runner"], here, str(r["size"])]  # fmt: skip
        table.add_row(*cells, *([r["shard"]] if shards is not None else []))
    return table


def rebuild_table(rebuilt: Any) -> Table:
    """``verify --rebuild``'s results (a :class:`wheelport.rebuild.RebuildReport`)."""
    from rich.table import Table

    colour = {"reproduced": "green", "differs": "red"}
    table = Table(title=f"rebuilt ({len(rebuilt.results)} wheel(s))")
    for col in ("wheel", "builder", "result", "detail", "seconds"):
        table.add_column(col, overflow="fold")
    for r in rebuilt.results:
        c = colour.get(r.status, "yellow")
        table.add_row(r.wheel, r.builder, f"[{c}]{r.status}[/{c}]", r.detail, f"{r.seconds:.1f}")
    return table


def images_table(found: Sequence[Any]) -> Table:
    """The local images (:class:`wheelport.builders.images.LocalImage`) and what each serves."""
    from rich.table import Table

    table = Table(title="local images")
    table.add_column("tag", overflow="fold")
    for column in ("policy", "arch", "pythons"):
        table.add_column(column)
    for image in found:
        table.add_row(image.tag, image.policy, image.arch, ", ".join(image.pythons))
    return table
