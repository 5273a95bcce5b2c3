"""Click commands of the export verbs: ``docker``, ``publish``, ``bundle``, ``unbundle``, ``merge``,
``export requirements|sbom``, ``licenses``, ``audit`` and ``ci github``.

The CLI adds them with ``cli.add_command(...)``. They parse, call one library function and
print, with ``wheelport.output.common`` (``--json -q -v`` and the ``Output``) like every verb.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from wheelport.errors import UsageError, WheelportError
from wheelport.output import Output
from wheelport.output import common as _common

F = TypeVar("F", bound=Callable[..., Any])
WH_HELP = "Wheelhouse directory."


def _wh_option(func: F) -> F:
    return click.option("-w", "--wheelhouse", type=click.Path(path_type=Path), default=Path("wheelhouse"),
                        show_default=True, help=WH_HELP)(func)  # fmt: skip


@click.command("docker")
@_wh_option
@click.option(
    "-t",
    "--target",
    default=None,
    help="Lock to install (default: inferred from the base image's Python).",
)
@click.option("--base-image", required=True, help="Image to build on (it must have Python).")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Build context directory to write (default ./docker-context; a temporary one with --build).",
)
@click.option("--build", is_flag=True, help="Build the image (podman or docker, --network=none).")
@click.option(
    "--tag", default=None, help="Image name for --build (default localhost/wheelport-app:<target>)."
)
@click.option(
    "--venv", "venv", default="/opt/venv", show_default=True, help="Venv path in the image."
)
@click.option(
    "--python",
    "python",
    default="python3",
    show_default=True,
    help="Interpreter in the base image.",
)
@click.option(
    "--copy",
    "copies",
    multiple=True,
    metavar="SRC:DEST",
    help="Also COPY SRC into the image at DEST (repeatable).",
)
@click.option("--workdir", default=None, help="WORKDIR of the final image.")
@click.option("--cmd", default=None, help="CMD of the final image (a shell-quoted command line).")
@click.option(
    "--engine",
    type=click.Choice(["podman", "docker"]),
    default=None,
    help="Container engine (default: podman, else docker).",
)
@_common
def docker_cmd(out: Any, wheelhouse: Path, target: str | None, base_image: str, output: Path | None, build: bool,
               tag: str | None, venv: str, python: str, copies: tuple[str, ...], workdir: str | None,
               cmd: str | None, engine: str | None) -> None:  # fmt: skip
    """Write a Docker/Podman build context that installs one lock with no index; --build builds it."""
    from wheelport.export.docker import build_image, parse_copy, write_context

    app = [parse_copy(c) for c in copies]
    command = shlex.split(cmd) if cmd else None
    with tempfile.TemporaryDirectory(prefix="wheelport-docker-") as tmp:
        context_dir = output or (Path(tmp) / "context" if build else Path("docker-context"))
        ctx = write_context(wheelhouse, context_dir, base_image=base_image, target=target, venv=venv,
                            python=python, app=app, workdir=workdir, cmd=command, engine=engine)  # fmt: skip
        out.info(f"wrote {ctx.directory} for {ctx.target} ({len(ctx.packages)} packages)")
        image = None
        if build:
            image = tag or f"localhost/wheelport-app:{ctx.target}"
            out.info(f"building {image} (network off) ...")
            build_image(ctx, tag=image, engine=engine)
        data = ctx.to_json() | {"image": image}
        if not output and build:
            data["context"] = None
    out.result(
        data,
        lambda: out.console.print(
            f"image {image} built"
            if image
            else f"build it with: podman build --network=none -t NAME {ctx.directory}"
        ),
    )


class _PublishLines:
    """``publish`` progress as lines: each upload, and with ``-v`` each copy."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def uploading(self, filename: str) -> None:
        self.out.info(f"uploading {filename}")

    def copying(self, rel: str) -> None:
        if self.out.verbose:
            self.out.info(f"copying {rel}")

    def skipped(self, name: str, why: str) -> None:
        pass  # the summary line counts them

    def removed(self, rel: str) -> None:
        pass  # the summary line counts them


@click.command("publish")
@_wh_option
@click.option(
    "--repository-url",
    default=None,
    help="Upload API URL of a PyPI-compatible server (e.g. http://host:8080/).",
)
@click.option(
    "--to-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Mirror the static index tree into DIR.",
)
@click.option(
    "--simple-url",
    default=None,
    help="The server's simple index (default: derived from --repository-url).",
)
@click.option(
    "-u",
    "--username",
    default=None,
    help="Upload user (else WHEELPORT_PUBLISH_USERNAME, TWINE_USERNAME, keyring, ~/.netrc).",
)
@click.option(
    "-p",
    "--password",
    default=None,
    help="Upload password or token (else WHEELPORT_PUBLISH_PASSWORD, TWINE_PASSWORD, ...).",
)
@click.option(
    "--delete", is_flag=True, help="With --to-dir: remove files the wheelhouse no longer has."
)
@_common
def publish_cmd(out: Any, wheelhouse: Path, repository_url: str | None, to_dir: Path | None, simple_url: str | None,
                username: str | None, password: str | None, delete: bool) -> None:  # fmt: skip
    """Upload the wheelhouse to a package server, or mirror its static index into a directory."""
    from wheelport.export.publish import publish_to_dir, publish_to_repository

    if (repository_url is None) == (to_dir is None):
        raise UsageError("give exactly one of --repository-url URL and --to-dir DIR")
    if to_dir is not None:
        if simple_url or username or password:
            raise UsageError("--simple-url/--username/--password apply to --repository-url only")
        report = publish_to_dir(wheelhouse, to_dir, delete=delete, reporter=_PublishLines(out))
        human = f"{to_dir}: {len(report.uploaded)} files and {len(report.pages)} pages written, {len(report.skipped)} unchanged" + (
            f", {len(report.removed)} removed" if report.removed else "")  # fmt: skip
    else:
        assert repository_url is not None
        if delete:
            raise UsageError("--delete applies to --to-dir only")
        report = publish_to_repository(wheelhouse, repository_url, username=username, password=password,
                                       simple_url=simple_url, reporter=_PublishLines(out))  # fmt: skip
        human = f"{report.destination}: {len(report.uploaded)} uploaded, {len(report.skipped)} already there"
    out.result(report.to_json(), lambda: out.console.print(human))


@click.command("bundle")
@_wh_option
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="Bundle file to write."
)
@click.option("--compression", type=click.Choice(["auto", "zstd", "gzip", "none"]), default="auto", show_default=True,
              help="auto: zstd when available, else gzip.")  # fmt: skip
@_common
def bundle_cmd(out: Any, wheelhouse: Path, output: Path, compression: str) -> None:
    """Pack the wheelhouse into one archive with a sha256 manifest, to carry across an air gap."""
    from wheelport.export.bundle import create_bundle

    report = create_bundle(wheelhouse, output, compression=compression)
    out.result(report.to_json(), lambda: out.console.print(
        f"wrote {report.bundle} ({report.files} files, {report.compression}, {report.size} bytes, sha256 {report.sha256})"))  # fmt: skip


@click.command("unbundle")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="New wheelhouse directory.",
)
@_common
def unbundle_cmd(out: Any, bundle: Path, output: Path) -> None:
    """Verify every file of a bundle, then unpack it into a new wheelhouse directory."""
    from wheelport.export.bundle import unbundle

    report = unbundle(bundle, output)
    out.result(report.to_json(), lambda: out.console.print(
        f"unpacked and verified {report.files} files into {report.directory} (targets: {', '.join(report.targets) or '-'})"))  # fmt: skip


@click.command("merge")
@click.argument("wheelhouses", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Merged wheelhouse directory.",
)
@_common
def merge_cmd(out: Any, wheelhouses: tuple[Path, ...], output: Path) -> None:
    """Combine wheelhouses (e.g. one per CI platform) into one, refusing conflicting files."""
    from wheelport.export.merge import merge

    report = merge(list(wheelhouses), output)
    out.result(report.to_json(), lambda: out.console.print(
        f"merged {len(report.sources)} wheelhouses into {report.output}: {report.artifacts} files, "
        f"targets {', '.join(report.targets)}"))  # fmt: skip


@click.group("export")
def export_group() -> None:
    """Standard files for other tools: a hash-pinned requirements.txt, a CycloneDX SBOM."""


def _target_option(func: F) -> F:
    return click.option("-t", "--target", default=None,
                        help="Lock to export (default: the wheelhouse's only lock).")(func)  # fmt: skip


@export_group.command("requirements")
@_wh_option
@_target_option
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="File to write (default: standard output).")  # fmt: skip
@_common
def export_requirements_cmd(
    out: Any, wheelhouse: Path, target: str | None, output: Path | None
) -> None:
    """A requirements.txt with --hash for every wheel that serves the target, for plain pip."""
    from wheelport.export.requirements import PIP_COMMAND, export_requirements

    result = export_requirements(wheelhouse, target, output)
    if output is None and not out.json_mode:
        click.echo(result.text(), nl=False)
        return
    hint = PIP_COMMAND.format(wheels=Path(wheelhouse) / "wheels", file=output)
    out.result(result.to_json(), lambda: out.console.print(
        f"wrote {output} ({len(result.lines)} packages, {result.target}); install with:\n  {hint}"))  # fmt: skip


@export_group.command("sbom")
@_wh_option
@_target_option
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="File to write (default: standard output).")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["cyclonedx"]), default="cyclonedx",
              show_default=True, help="SBOM format (CycloneDX JSON; SPDX is not offered).")  # fmt: skip
@click.option("--spec-version", type=click.Choice(["1.6", "1.7"]), default="1.6",
              show_default=True, help="CycloneDX specification version.")  # fmt: skip
@_common
def export_sbom_cmd(out: Any, wheelhouse: Path, target: str | None, output: Path | None, fmt: str,
                    spec_version: str) -> None:  # fmt: skip
    """A CycloneDX SBOM of one target's lock: hashes, purls, licenses, origins, dependencies."""
    from wheelport.export.sbom import export_sbom

    result = export_sbom(wheelhouse, target, output, spec_version=spec_version)
    if output is None and not out.json_mode:
        click.echo(result.text, nl=False)
        return
    out.result(result.to_json(), lambda: out.console.print(
        f"wrote {output}: CycloneDX {spec_version}, {result.components} components ({result.target})"))  # fmt: skip


@click.command("licenses")
@_wh_option
@click.option(
    "-t", "--target", "targets", multiple=True, help="Only these locks (repeatable; default all)."
)
@_common
def licenses_cmd(out: Any, wheelhouse: Path, targets: tuple[str, ...]) -> None:
    """The license of every locked package and where that answer came from."""
    from rich.table import Table

    from wheelport.inventory import license_report

    rows = license_report(wheelhouse, targets)

    def human() -> None:
        table = Table(title="licenses")
        for col in ("package", "version", "license", "source"):
            table.add_column(col, overflow="fold")
        for r in rows:
            shown = (
                r.license.shown
                if r.license.expression or r.license.name
                else "[yellow]unknown[/yellow]"
            )
            source = r.license.source + (
                f" [dim]({r.license.detail})[/dim]" if r.license.detail else ""
            )
            table.add_row(r.name, r.version, shown, source)
        out.out.print(table)

    out.result({"packages": [r.to_json() for r in rows]}, human)


@click.command("audit")
@_wh_option
@click.option(
    "-t", "--target", "targets", multiple=True, help="Only these locks (repeatable; default all)."
)
@click.option("--osv", "osv", multiple=True, type=click.Path(path_type=Path),
              help="OSV records: an all.zip, a directory of OSV JSON files, or one file (repeatable).")  # fmt: skip
@click.option(
    "--online", is_flag=True, help="Also ask the index's JSON API (/pypi/<name>/<version>/json)."
)
@click.option("--warn-only", is_flag=True, help="Exit 0 even when something is found.")
@_common
def audit_cmd(out: Any, wheelhouse: Path, targets: tuple[str, ...], osv: tuple[Path, ...], online: bool,
              warn_only: bool) -> None:  # fmt: skip
    """Check every pinned package against OSV vulnerability records (offline, or --online)."""
    from rich.table import Table

    from wheelport.export.audit import audit, record_audit

    report = audit(wheelhouse, targets=targets, osv=osv, online=online)
    recorded: Path | None = None
    try:  # kept in the wheelhouse for its page; a read-only wheelhouse is audited all the same
        recorded = record_audit(wheelhouse, report, osv=osv, online=online)
    except (OSError, WheelportError) as exc:
        out.console.print(f"[yellow]not recorded in the wheelhouse:[/yellow] {exc}")

    def human() -> None:
        if report.findings:
            table = Table(title="vulnerabilities")
            for col in ("target", "package", "version", "id", "aliases", "fixed in", "summary"):
                table.add_column(col, overflow="fold")
            for f in report.findings:
                table.add_row(f.target, f.name, f.version, f.id, ", ".join(f.aliases),
                              ", ".join(f.fixed) or "-", f.summary)  # fmt: skip
            out.out.print(table)
        if report.statuses:
            table = Table(title="project status (PEP 792)")
            for col in ("target", "package", "version", "status", "reason"):
                table.add_column(col, overflow="fold")
            for s in report.statuses:
                color = "red" if s.status == "quarantined" else "yellow"
                table.add_row(
                    s.target, s.name, s.version, f"[{color}]{s.status}[/{color}]", s.reason or ""
                )
            out.out.print(table)
        for line in report.unchecked:
            out.console.print(f"[yellow]not checked online:[/yellow] {line}")
        out.console.print(
            f"{len(report.findings)} vulnerabilities in {report.packages} pinned packages of "
            f"{len(report.targets)} targets ({report.records} OSV records)"
            + (f"; recorded in {recorded} (shown in index.html)" if recorded else "")
        )

    out.result(report.to_json() | {"recorded": str(recorded) if recorded else None}, human)
    if report.failed and not warn_only:
        raise SystemExit(1)


@click.group("ci")
def ci_group() -> None:
    """CI workflows that build the wheelhouse on native runners and merge the results."""


@ci_group.command("github")
@_wh_option
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path(".github/workflows/wheelport.yml"),
              show_default=True, help="Workflow file to write.")  # fmt: skip
@click.option("--shards", type=int, default=1, show_default=True,
              help="Split each runner's work into at most N shards (a matrix).")  # fmt: skip
@click.option("-r", "--requirement", "requirement_files", multiple=True,
              help="Requirements file the jobs pass to sync (committed; repeatable).")  # fmt: skip
@click.option("--publish", "publish_secret", default=None, metavar="URL_SECRET",
              help="Publish the merged wheelhouse to the upload URL held in this secret "
              "(token: secret WHEELPORT_PUBLISH_PASSWORD).")  # fmt: skip
@click.option("--bundle", is_flag=True, help="Also bundle the merged wheelhouse into one archive.")
@click.option("--repository", type=click.Path(path_type=Path), default=None,
              help="Repository root the jobs run in; the workflow's paths are relative to it "
              "(default: the directory holding -o's .github/workflows/, else the git checkout "
              "around the current directory).")  # fmt: skip
@_common
def ci_github_cmd(out: Any, wheelhouse: Path, output: Path, shards: int, requirement_files: tuple[str, ...],
                  publish_secret: str | None, bundle: bool, repository: Path | None) -> None:  # fmt: skip
    """Write a GitHub Actions workflow: one job per runner kind the locks need, then merge."""
    from wheelport.ci import write_github

    report = write_github(wheelhouse, output, shards=shards, requirement_files=requirement_files,
                          publish_secret=publish_secret, bundle=bundle, repository=repository)  # fmt: skip
    out.result(report.to_json(), lambda: out.console.print(
        f"wrote {report.output}: jobs {', '.join(report.jobs)}"))  # fmt: skip


COMMANDS = (docker_cmd, publish_cmd, bundle_cmd, unbundle_cmd, merge_cmd, export_group, licenses_cmd,
            audit_cmd, ci_group)  # fmt: skip
