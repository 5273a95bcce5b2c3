"""``index.html`` at the wheelhouse root: the wheelhouse as a page people read.

It shows, from what the wheelhouse records and nothing else:

- the coverage matrix, package × target: how each cell is served (downloaded, with the wheel's
  tags; built natively, or in which container image) and why a cell is not (``wheelport.json``
  ``unserved``, else what the lock says);
- the size of each target's install and of the files kept;
- every package's licence, as ``wheelport licenses`` answers it
  (:func:`wheelport.inventory.license_report`);
- the last ``wheelport audit`` recorded in ``audit.json``, or that none was;
- the locks' inputs (``[tool.wheelport.inputs]``) and the ``wheelport sync`` command that makes
  the wheelhouse again.

The page is static HTML with one inline style sheet: no script, no font, no image, nothing
fetched (a Content-Security-Policy says so to the browser). Links are relative, so it works from
``file://``, ``wheelport serve`` and any static server. It reads well on a phone: the matrix
scrolls sideways under a sticky package column, the other tables fold.

Everything shown is escaped: names, reasons, licence texts and audit summaries come from indexes
and wheels nobody vouches for. The bytes depend only on the wheelhouse's records (no clock, no
host, no path): a stamp of those records is kept in the page, and the page is rendered again only
when the stamp changes (reading every wheel's licence is the costly part).

:func:`gather` reads the wheelhouse into :class:`PageFacts`; :func:`render_page` is pure;
:func:`write_page` does the disk work.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from wheelport.config import DEFAULT_INDEX
from wheelport.errors import WheelportError
from wheelport.manifest import ArtifactRecord, Manifest
from wheelport.wheelhouse import Wheelhouse, atomic_write_bytes, human_size, load_manifest

if TYPE_CHECKING:
    from packaging.pylock import Pylock

PAGE_NAME = "index.html"
#: the last ``wheelport audit``, written by :func:`wheelport.export.audit.record_audit`
AUDIT_NAME = "audit.json"
#: bump when the page changes, so every page is rendered again
RENDER_VERSION = 1
STAMP_META = "wheelport:page-stamp"
#: the row of a target that could not be locked at all
ALL = "(all)"

#: cell states, in the order the legend shows them
STATES = ("downloaded", "built", "missing", "deferred", "absent")
SYMBOL = {"downloaded": "✓", "built": "✓", "missing": "✗", "deferred": "…", "absent": "—"}


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One package × target cell of the coverage matrix."""

    #: one of :data:`STATES`; ``absent``: the target's lock does not install the package
    state: str
    version: str = ""
    #: the headline: ``downloaded``, ``built natively``, ``built in a container``, ``missing``
    label: str = ""
    #: why the cell is missing or deferred; the image a wheel was built in
    detail: str = ""
    #: the tags of the wheel that serves the cell
    tags: str = ""


@dataclass(frozen=True, kw_only=True)
class LockView:
    """What the page shows of one ``pylock.<target>.toml``."""

    target: str
    file: str
    packages: int
    wheel_bytes: int
    tools: int
    tool_bytes: int
    digest: str | None
    wheelport_version: str | None
    inputs: Mapping[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class LicenceView:
    name: str
    version: str
    licence: str | None
    source: str
    detail: str
    targets: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class AuditView:
    """The recorded audit (``audit.json``), checked against the locks as they are now."""

    targets: tuple[str, ...] = ()
    packages: int = 0
    records: int = 0
    sources: tuple[str, ...] = ()
    findings: tuple[Mapping[str, Any], ...] = ()
    statuses: tuple[Mapping[str, Any], ...] = ()
    unchecked: tuple[str, ...] = ()
    #: lock files changed, gone or added since the audit
    stale: tuple[str, ...] = ()
    #: set when ``audit.json`` could not be read (then nothing else is)
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class PageFacts:
    """Everything the page shows, read from the wheelhouse."""

    targets: tuple[str, ...]
    #: package → target → cell (every target of :attr:`targets` present)
    rows: Mapping[str, Mapping[str, Cell]]
    locks: tuple[LockView, ...]
    #: locks that could not be read, one line each
    lock_errors: tuple[str, ...] = ()
    #: project → (PEP 792 status, reason), statuses other than ``active``
    statuses: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    licences: tuple[LicenceView, ...] = ()
    licence_error: str | None = None
    audit: AuditView | None = None
    #: ``wheels``/``sdists`` → (files, bytes) as the manifest records them
    kept: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def count(self, state: str) -> int:
        return sum(1 for row in self.rows.values() for c in row.values() if c.state == state)


# --------------------------------------------------------------------------- pure decisions


def wheel_tags(filename: str) -> str:
    """The tag part of a wheel file name (``py3-none-any``; the build tag is left out)."""
    parts = filename.removesuffix(".whl").split("-")
    return "-".join(parts[-3:]) if len(parts) >= 5 else filename


def builder_label(builder: str | None) -> tuple[str, str]:
    """How a wheel was built, as the page says it: (headline, the image when there is one)."""
    if builder == "native":
        return "built natively", ""
    if builder and builder.startswith("container:"):
        return "built in a container", f"image {builder.removeprefix('container:')}"
    return (f"built by {builder}", "") if builder else ("built", "")


def lock_cells(
    lock: Pylock,
    artifacts: Mapping[str, ArtifactRecord],
    unserved: Mapping[str, tuple[str, str]],
    present: Callable[[str], bool],
) -> dict[str, Cell]:
    """The cells of one target's column: its lock says whether a package has a wheel, the
    manifest how it got there, ``unserved`` (the manifest's, for this target) why it has none."""
    cells: dict[str, Cell] = {}
    for pkg in lock.packages:
        name, version = str(pkg.name), str(pkg.version or "")
        gap = unserved.get(name)
        if pkg.wheels:
            w = pkg.wheels[0]
            filename = w.name or str(w.path or "").rsplit("/", 1)[-1]
            rel = w.path or f"wheels/{filename}"
            if not present(rel):
                state, why = gap or ("missing", f"{filename} is not in wheels/; run wheelport sync")
                cells[name] = Cell(state=state, version=version, label=state, detail=why)
            elif w.url:
                cells[name] = Cell(
                    state="downloaded",
                    version=version,
                    label="downloaded",
                    tags=wheel_tags(filename),
                )
            else:
                rec = artifacts.get(rel)
                builder = rec.origin.builder if rec is not None and rec.origin.is_build else None
                label, image = builder_label(builder)
                cells[name] = Cell(
                    state="built",
                    version=version,
                    label=label,
                    detail=image,
                    tags=wheel_tags(filename),
                )
            continue
        state, why = gap or ("missing", "no wheel for this target, and its sdist was not built")
        cells[name] = Cell(state=state, version=version, label=state, detail=why)
    for name, (state, why) in unserved.items():
        cells.setdefault(name, Cell(state=state, label=state, detail=why))
    return cells


def matrix(
    columns: Mapping[str, Mapping[str, Cell]],
) -> tuple[tuple[str, ...], dict[str, dict[str, Cell]]]:
    """(targets, package → target → cell) from each target's cells; a package a target does
    not install is ``absent`` there."""
    targets = tuple(sorted(columns))
    names = sorted({n for cells in columns.values() for n in cells}, key=lambda n: (n == ALL, n))
    absent = Cell(state="absent", label="not needed")
    rows = {n: {t: columns[t].get(n, absent) for t in targets} for n in names}
    return targets, rows


def reproduce_command(
    inputs: Mapping[str, Any], targets: Sequence[str], *, allow_missing: bool = False
) -> tuple[str, str | None]:
    """The ``wheelport sync`` command that makes the wheelhouse again from a lock's recorded
    inputs (one option per line), and the constraints file it needs (None: none)."""

    def strings(key: str, source: Mapping[str, Any] = inputs) -> list[str]:
        value = source.get(key) or []
        return [str(v) for v in value] if isinstance(value, list) else []

    first: list[str] = ["wheelport", "sync"]
    lines: list[list[str]] = []
    source = inputs.get("from")
    if isinstance(source, Mapping):
        first += ["--from", str(source.get("name", "LOCK"))]
        lines += [["--extra", e] for e in strings("extras", source)]
        flag = "--only-group" if source.get("only-groups") else "--group"
        lines += [[flag, g] for g in strings("groups", source)]
        if source.get("all-groups"):
            lines.append(["--all-groups"])
    else:
        first += strings("requirements")
    constraints = strings("constraints")
    if constraints:
        lines.append(["-c", "constraints.txt"])
    indexes = strings("index-urls")
    if inputs.get("index-given") or indexes not in ([], [DEFAULT_INDEX]):
        lines += [["--index-url", u] for u in indexes]
    lines += [[f"--{k}"] for k in ("pre", "prefer-binary") if inputs.get(k)]
    lines += [["--only-binary", n] for n in strings("only-binary")]
    lines += [["--from-source", n] for n in strings("from-source")]
    cutoff = inputs.get("exclude-newer")
    if isinstance(cutoff, str):
        lines.append(["--exclude-newer", cutoff])
    tools = strings("tools")
    if tools != ["pip"]:
        lines += [["--tool", t] for t in tools] or [["--tool", "none"]]
    lines += [["-t", t] for t in targets]
    lines.append(["-o", "wheelhouse"])
    if allow_missing:
        lines.append(["--allow-missing"])
    text = " \\\n    ".join(" ".join(shlex.quote(a) for a in line) for line in [first, *lines])
    return text, ("\n".join(constraints) + "\n" if constraints else None)


# --------------------------------------------------------------------------- rendering

CSS = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1b1f24;--muted:#5b6570;--line:#d8dee4;
--head:#f3f5f7;--ok:#dff3e4;--ok-fg:#14532d;--built:#dcebfb;--built-fg:#0b3d75;
--bad:#fde2e1;--bad-fg:#8a1c17;--wait:#fff1c7;--wait-fg:#6b4b00;--none:#f3f5f7;--code:#f3f5f7}
@media (prefers-color-scheme:dark){:root{--bg:#0f1419;--fg:#e6e9ec;--muted:#9aa5b1;
--line:#2c3640;--head:#18212a;--ok:#12351f;--ok-fg:#a6e3b8;--built:#102a45;--built-fg:#a9cdf5;
--bad:#45181a;--bad-fg:#f6b4b0;--wait:#3d3108;--wait-fg:#f2d98a;--none:#161d24;--code:#18212a}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif}
main{max-width:80rem;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.2rem 0 .6rem}
h2{font-size:1.15rem;margin:2rem 0 .5rem;padding-top:.5rem;border-top:1px solid var(--line)}
p{margin:.4rem 0}
a{color:inherit}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
code{overflow-wrap:anywhere}
pre{background:var(--code);padding:.6rem .8rem;border-radius:6px;overflow-x:auto;
white-space:pre-wrap;overflow-wrap:anywhere}
nav{display:flex;flex-wrap:wrap;gap:.3rem 1rem;font-size:.9rem}
.muted{color:var(--muted)}
.summary{display:flex;flex-wrap:wrap;gap:.5rem;margin:.8rem 0}
.summary div{border:1px solid var(--line);border-radius:6px;padding:.4rem .7rem;min-width:7rem}
.summary b{display:block;font-size:1.2rem}
.scroll{overflow-x:auto;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;width:100%}
th,td{padding:.35rem .5rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--head);font-weight:600}
.matrix th,.matrix td{border-right:1px solid var(--line)}
.matrix td{min-width:10rem;max-width:18rem}
.matrix th[scope=row]{position:sticky;left:0;z-index:1;background:var(--head);min-width:8rem;
max-width:12rem;overflow-wrap:anywhere}
.matrix thead th{white-space:nowrap}
.matrix thead th:first-child{position:sticky;left:0;z-index:2}
.cell b{display:block;font-weight:600;overflow-wrap:anywhere}
.cell small{display:block;overflow-wrap:anywhere}
.cell .tags{opacity:.8}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
.downloaded{background:var(--ok);color:var(--ok-fg)}
.built{background:var(--built);color:var(--built-fg)}
.missing{background:var(--bad);color:var(--bad-fg)}
.deferred{background:var(--wait);color:var(--wait-fg)}
.absent{background:var(--none);color:var(--muted)}
.legend{display:flex;flex-wrap:wrap;gap:.4rem;margin:.5rem 0;padding:0;list-style:none}
.legend li{padding:.1rem .5rem;border-radius:4px;font-size:.85rem}
.status{display:inline-block;font-size:.75rem;padding:0 .3rem;border-radius:4px}
.num{text-align:right;white-space:nowrap}
.fold td{overflow-wrap:anywhere}.fold thead th{white-space:nowrap}
@media (max-width:40rem){body{font-size:14px}main{padding:.6rem}
dl{grid-template-columns:1fr}dd{padding-left:.8rem}
.matrix th[scope=row]{min-width:6rem;max-width:8rem}.matrix td{min-width:9rem}
.fold thead{display:none}.fold tr{display:block;border-bottom:1px solid var(--line);padding:.3rem 0}
.fold td{display:block;border:0;padding:.1rem .4rem}
.fold td[data-label]::before{content:attr(data-label) ": ";color:var(--muted)}
.num{text-align:left}}
"""
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
#: no script, no font, no image, no connection: the style sheet above is all the page loads
CSP = f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; base-uri 'none'; form-action 'none'"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _href(*parts: str) -> str:
    """A relative link to a wheelhouse file; each part is one path segment."""
    return _e("/".join(quote(p, safe="") for p in parts))


def _size(n: int) -> str:
    return human_size(n)


def _cell_html(cell: Cell, show_version: bool) -> str:
    label = f"{SYMBOL[cell.state]} {cell.label or cell.state}"
    version = f" {cell.version}" if show_version and cell.version else ""
    detail = f"<small>{_e(cell.detail)}</small>" if cell.detail else ""
    tags = f'<small class="tags">{_e(cell.tags)}</small>' if cell.tags else ""
    return (
        f'<td class="cell {cell.state}" data-state="{cell.state}">'
        f"<b>{_e(label)}{_e(version)}</b>{detail}{tags}</td>"
    )


def _row_versions(row: Mapping[str, Cell]) -> list[str]:
    return sorted({c.version for c in row.values() if c.version})


def _status_badge(status: tuple[str, str | None] | None) -> str:
    if status is None:
        return ""
    kind = "missing" if status[0] == "quarantined" else "deferred"
    title = f"{status[0]}: {status[1]}" if status[1] else status[0]
    return f' <span class="status {kind}" title="{_e(title)}">{_e(status[0])}</span>'


def _render_matrix(facts: PageFacts) -> list[str]:
    out = ['<h2 id="coverage">Coverage</h2>']
    if not facts.targets:
        return [*out, "<p>No target is locked yet: run <code>wheelport sync</code>.</p>"]
    missing, deferred = facts.count("missing"), facts.count("deferred")
    gaps = [f"{missing} cell{'s' * (missing != 1)} cannot be served"] if missing else []
    gaps += (
        [f"{deferred} {'are' if deferred != 1 else 'is'} left to other runs"] if deferred else []
    )
    if gaps:
        out.append(f"<p>{' and '.join(gaps)}; each says why.</p>")
    else:
        out.append("<p>Every package of every target is served.</p>")
    out.append('<ul class="legend">')
    for state, text in (
        ("downloaded", "✓ downloaded"),
        ("built", "✓ built from the sdist"),
        ("missing", "✗ missing"),
        ("deferred", "… left to another run"),
        ("absent", "— not needed"),
    ):
        out.append(f'<li class="{state}">{_e(text)}</li>')
    out.append("</ul>")
    out.append('<div class="scroll"><table class="matrix">')
    out.append('<thead><tr><th scope="col">package</th>')
    out += [f'<th scope="col">{_e(t)}</th>' for t in facts.targets]
    out.append("</tr></thead><tbody>")
    for name, row in facts.rows.items():
        versions = _row_versions(row)
        one = len(versions) == 1
        head = _e(name)
        if name != ALL:
            head = f'<a href="{_href("simple", name)}/">{head}</a>'
        if one:
            head += f' <span class="muted">{_e(versions[0])}</span>'
        head += _status_badge(facts.statuses.get(name))
        out.append(f'<tr id="pkg-{_e(name)}"><th scope="row">{head}</th>')
        out += [_cell_html(row[t], not one) for t in facts.targets]
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return out


def _render_sizes(facts: PageFacts) -> list[str]:
    out = ['<h2 id="sizes">Sizes</h2>']
    if facts.locks:
        out.append('<div class="scroll"><table class="fold"><thead><tr><th>target</th>'
                   '<th class="num">packages</th><th class="num">wheels to install</th>'
                   '<th class="num">installer tools</th><th>lock</th></tr></thead><tbody>')  # fmt: skip
        for lk in facts.locks:
            tools = f"{lk.tools} · {_size(lk.tool_bytes)}" if lk.tools else "none"
            out.append(
                f'<tr><td data-label="target"><code>{_e(lk.target)}</code></td>'
                f'<td class="num" data-label="packages">{lk.packages}</td>'
                f'<td class="num" data-label="wheels">{_e(_size(lk.wheel_bytes))}</td>'
                f'<td class="num" data-label="tools">{_e(tools)}</td>'
                f'<td data-label="lock"><a href="{_href(lk.file)}">{_e(lk.file)}</a></td></tr>'
            )
        out.append("</tbody></table></div>")
    kept = [
        f"{n} {what} ({_size(b)})"
        for what, (n, b) in sorted(facts.kept.items(), key=lambda kv: kv[0] != "wheels")
    ]
    total = sum(b for _n, b in facts.kept.values())
    if kept:
        out.append(f"<p>Kept in the wheelhouse: {_e(', '.join(kept))}; {_e(_size(total))} in all.</p>")  # fmt: skip
    return out


def _render_licences(facts: PageFacts) -> list[str]:
    out = ['<h2 id="licences">Licences</h2>']
    if facts.licence_error:
        return [*out, f"<p>The licences could not be read: {_e(facts.licence_error)}</p>"]
    if not facts.licences:
        return [*out, "<p>No locked package.</p>"]
    counts: dict[str, int] = {}
    for lic in facts.licences:
        key = lic.licence or "unknown"
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{k} × {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))  # fmt: skip
    out.append(f"<p>{_e(summary)}. The answer comes from the wheel's own metadata: PEP 639 "
               "<code>License-Expression</code>, else an SPDX <code>License</code>, else one "
               "Trove classifier, else the <code>License</code> text.</p>")  # fmt: skip
    every = set(facts.targets)
    out.append('<div class="scroll"><table class="fold"><thead><tr><th>package</th>'
               "<th>version</th><th>licence</th><th>from</th><th>targets</th></tr></thead><tbody>")  # fmt: skip
    for lic in facts.licences:
        shown = _e(lic.licence) if lic.licence else '<span class="missing status">unknown</span>'
        source = _e(lic.source) + (f' <span class="muted">({_e(lic.detail)})</span>' if lic.detail else "")  # fmt: skip
        where = "all" if set(lic.targets) >= every else ", ".join(lic.targets)
        out.append(
            f'<tr><td data-label="package">{_e(lic.name)}</td>'
            f'<td data-label="version">{_e(lic.version)}</td>'
            f'<td data-label="licence">{shown}</td><td data-label="from">{source}</td>'
            f'<td data-label="targets">{_e(where)}</td></tr>'
        )
    out.append("</tbody></table></div>")
    return out


def _render_audit(facts: PageFacts) -> list[str]:
    out = ['<h2 id="audit">Audit</h2>']
    a = facts.audit
    if a is None:
        return [
            *out,
            "<p><b>No audit has run on this wheelhouse.</b> <code>wheelport audit -w WH --osv "
            "all.zip</code> (OSV records, offline) or <code>--online</code> checks every pinned "
            "package for known vulnerabilities and records the result here.</p>",
        ]
    if a.error:
        return [*out, f"<p>{_e(AUDIT_NAME)} could not be read: {_e(a.error)}</p>"]
    sources = ", ".join(a.sources) or "none"
    findings = _by_target(a.findings, ("name", "version", "id"))
    verdict = (
        f"{len(findings)} known vulnerabilit{'y' if len(findings) == 1 else 'ies'}"
        if findings
        else "no known vulnerability"
    )
    out.append(
        f"<p><b>{_e(verdict)}</b> in {a.packages} pinned packages of {len(a.targets)} "
        f"target(s), against {a.records} OSV records (sources: {_e(sources)}).</p>"
    )
    if a.stale:
        out.append(
            f'<p class="missing status">The locks changed since this audit ({_e(", ".join(a.stale))}): '
            "run <code>wheelport audit</code> again.</p>"
        )  # fmt: skip
    if findings:
        out.append('<div class="scroll"><table class="fold"><thead><tr><th>package</th>'
                   "<th>version</th><th>id</th><th>fixed in</th><th>summary</th><th>targets</th>"
                   "</tr></thead><tbody>")  # fmt: skip
        for f, targets in findings:
            ids = ", ".join([str(f.get("id", "")), *map(str, f.get("aliases") or [])])
            fixed = ", ".join(map(str, f.get("fixed") or [])) or "—"
            out.append(
                f'<tr class="missing"><td data-label="package">{_e(f.get("name", ""))}</td>'
                f'<td data-label="version">{_e(f.get("version", ""))}</td>'
                f'<td data-label="id">{_e(ids)}</td><td data-label="fixed in">{_e(fixed)}</td>'
                f'<td data-label="summary">{_e(f.get("summary", ""))}</td>'
                f'<td data-label="targets">{_e(", ".join(targets))}</td></tr>'
            )
        out.append("</tbody></table></div>")
    for st, targets in _by_target(a.statuses, ("name", "version", "status")):
        reason = f": {st.get('reason')}" if st.get("reason") else ""
        out.append(
            f"<p>{_e(st.get('name', ''))} {_e(st.get('version', ''))} is "
            f"<b>{_e(st.get('status', ''))}</b> on its index{_e(reason)} "
            f"({_e(', '.join(targets))}).</p>"
        )
    for line in a.unchecked:
        out.append(f"<p>Not checked online: {_e(line)}</p>")
    return out


def _by_target(
    rows: Iterable[Mapping[str, Any]], key: Sequence[str]
) -> list[tuple[Mapping[str, Any], list[str]]]:
    """One entry per ``key`` (the first row of each) with the targets of all its rows."""
    out: dict[tuple[str, ...], tuple[Mapping[str, Any], list[str]]] = {}
    for row in rows:
        _first, targets = out.setdefault(tuple(str(row.get(k, "")) for k in key), (row, []))
        targets.append(str(row.get("target", "")))
    return list(out.values())


def _inputs_html(inputs: Mapping[str, Any]) -> list[str]:
    out = ["<dl>"]

    def item(title: str, values: Iterable[object]) -> None:
        shown = [f"<code>{_e(v)}</code>" for v in values]
        out.append(f"<dt>{_e(title)}</dt><dd>{', '.join(shown) or 'none'}</dd>")

    source = inputs.get("from")
    if isinstance(source, Mapping):
        item("from the lock", [f"{source.get('name')} (sha256 {source.get('sha256')})"])
        for key in ("extras", "groups"):
            if source.get(key):
                item(key, source.get(key) or [])
    else:
        item("requirements", inputs.get("requirements") or [])
    if inputs.get("constraints"):
        item("constraints", inputs.get("constraints") or [])
    item("indexes", inputs.get("index-urls") or [])
    options = [k for k in ("pre", "prefer-binary") if inputs.get(k)]
    options += [f"{k} {v}" for k in ("only-binary", "from-source") for v in inputs.get(k) or []]
    if options:
        item("options", options)
    item("installer tools", inputs.get("tools") or [])
    out.append("</dl>")
    return out


def _render_inputs(facts: PageFacts) -> list[str]:
    out = ['<h2 id="inputs">Inputs and the command that makes it again</h2>']
    if not facts.locks:
        return [*out, "<p>No lock: nothing to say yet.</p>"]
    groups: dict[str, list[LockView]] = {}
    for lk in facts.locks:
        key = json.dumps([lk.digest, lk.inputs], sort_keys=True, default=str)
        groups.setdefault(key, []).append(lk)
    allow_missing = facts.count("missing") > 0
    for locks in groups.values():
        lk = locks[0]
        targets = [x.target for x in locks]
        versions = sorted({x.wheelport_version or "?" for x in locks})
        if len(groups) > 1:
            out.append(f"<h3>{_e(', '.join(targets))}</h3>")
        out.append(
            f"<p>Inputs digest <code>{_e(lk.digest or 'not recorded')}</code>; locked by "
            f"wheelport {_e(', '.join(versions))}.</p>"
        )
        if lk.inputs is None:
            out.append(
                "<p>These locks do not record their inputs (they were made before wheelport "
                "wrote <code>[tool.wheelport.inputs]</code>), so the command cannot be given.</p>"
            )
            continue
        out += _inputs_html(lk.inputs)
        # one set of inputs: the targets that could not be locked were asked for too
        command, constraints = reproduce_command(
            lk.inputs, facts.targets if len(groups) == 1 else targets, allow_missing=allow_missing
        )
        what = "this wheelhouse" if len(groups) == 1 else "these targets' part of it"
        out.append("<p>Run in an empty directory (without a <code>[tool.wheelport]</code> "
                   f"configuration of its own) to make {what} again:</p>")  # fmt: skip
        out.append(f'<pre class="command"><code>{_e(command)}</code></pre>')
        if constraints:
            out.append("<p>with <code>constraints.txt</code>:</p>")
            out.append(f"<pre><code>{_e(constraints)}</code></pre>")
    return out


def render_page(facts: PageFacts, stamp: str = "") -> str:
    """The whole page (pure: equal facts give equal text)."""
    n_pkg = sum(1 for n in facts.rows if n != ALL)
    missing = facts.count("missing")
    total = sum(b for _n, b in facts.kept.values())
    state = "complete" if not missing and not facts.count("deferred") else "incomplete"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="generator" content="wheelport">',
        f'<meta name="{STAMP_META}" content="{_e(stamp)}">',
        "<title>Wheelhouse</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body><main>",
        f'<h1>Wheelhouse <span class="muted">({_e(state)})</span></h1>',
        "<nav>"
        '<a href="#coverage">coverage</a><a href="#sizes">sizes</a>'
        '<a href="#licences">licences</a><a href="#audit">audit</a>'
        '<a href="#inputs">inputs</a><a href="simple/">package index</a>'
        '<a href="wheelport.json">wheelport.json</a><a href="bootstrap.py">bootstrap.py</a>'
        "</nav>",
        '<div class="summary">',
        f"<div><b>{n_pkg}</b>packages</div>",
        f"<div><b>{len(facts.targets)}</b>targets</div>",
        f'<div class="{"missing" if missing else "downloaded"}"><b>{missing}</b>missing</div>',
        f"<div><b>{_e(_size(total))}</b>stored</div>",
        "</div>",
        "<p>Install offline from this directory: <code>python bootstrap.py VENV</code> (Python "
        "alone), <code>wheelport provision VENV -w .</code>, or pip/uv with "
        "<code>--no-index --find-links wheels/</code>.</p>",
    ]
    for line in facts.lock_errors:
        out.append(f'<p class="missing status">{_e(line)}</p>')
    out += _render_matrix(facts)
    out += _render_sizes(facts)
    out += _render_licences(facts)
    out += _render_audit(facts)
    out += _render_inputs(facts)
    out += [
        '<p class="muted">Written by <code>wheelport index</code> from wheelport.json, the '
        "pylock.*.toml files, the wheels' metadata and audit.json.</p>",
        "</main></body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- reading the wheelhouse


def _read_locks(wh: Wheelhouse) -> tuple[dict[str, tuple[Path, Pylock]], list[str]]:
    from wheelport.lock import lock_tool, read_lock

    locks: dict[str, tuple[Path, Pylock]] = {}
    errors: list[str] = []
    for path in wh.lock_paths():
        try:
            lock = read_lock(path)
        except WheelportError as exc:
            errors.append(f"{path.name} cannot be read: {exc.message}")
            continue
        stem = path.name[len("pylock.") : -len(".toml")]
        locks[str(lock_tool(lock).get("target") or stem)] = (path, lock)
    return locks, errors


def _lock_view(target: str, path: Path, lock: Pylock, manifest: Manifest) -> LockView:
    from wheelport.lock import lock_tool

    tool = lock_tool(lock)
    wheel_bytes = 0
    for pkg in lock.packages:
        if pkg.wheels:
            w = pkg.wheels[0]
            rec = manifest.artifacts.get(w.path or f"wheels/{w.name}")
            wheel_bytes += w.size or (rec.size if rec and rec.size else 0)
    tools = [t for t in tool.get("tools") or [] if isinstance(t, Mapping)]
    inputs = tool.get("inputs")
    return LockView(
        target=target,
        file=path.name,
        packages=len(lock.packages),
        wheel_bytes=wheel_bytes,
        tools=len(tools),
        tool_bytes=sum(int(t.get("size") or 0) for t in tools),
        digest=str(tool["inputs-digest"]) if tool.get("inputs-digest") else None,
        wheelport_version=str(tool["wheelport-version"]) if tool.get("wheelport-version") else None,
        inputs=inputs if isinstance(inputs, Mapping) else None,
    )


def _licences(root: Path) -> tuple[tuple[LicenceView, ...], str | None]:
    """``wheelport licenses``'s answers (one reading of the wheels' metadata, shared code)."""
    from wheelport.inventory import license_report

    try:
        rows = license_report(root)
    except WheelportError as exc:
        return (), exc.message
    return tuple(
        LicenceView(
            name=r.name,
            version=r.version,
            licence=r.license.expression or r.license.name,
            source=r.license.source,
            detail=r.license.detail,
            targets=r.targets,
        )
        for r in rows
    ), None


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _rows(value: Any) -> tuple[Mapping[str, Any], ...]:
    return tuple(v for v in value if isinstance(v, Mapping)) if isinstance(value, list) else ()


def read_audit(wh: Wheelhouse, lock_digests: Mapping[str, str]) -> AuditView | None:
    """The recorded audit (None: no audit ran), with the lock files that changed since."""
    path = wh.root / AUDIT_NAME
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return AuditView(error=str(exc))
    if not isinstance(data, Mapping) or not isinstance(data.get("report"), Mapping):
        return AuditView(error="not an audit record of this wheelport")
    report = data["report"]
    audited = data.get("locks") if isinstance(data.get("locks"), Mapping) else {}
    assert isinstance(audited, Mapping)
    stale = sorted(
        name for name in {*audited, *lock_digests} if audited.get(name) != lock_digests.get(name)
    )
    sources = [*_strs(data.get("osv"))]
    if data.get("online"):
        sources.append("the index's JSON API")
    return AuditView(
        targets=_strs(report.get("targets")),
        packages=int(report.get("packages") or 0),
        records=int(report.get("osv_records") or 0),
        sources=tuple(sources),
        findings=_rows(report.get("findings")),
        statuses=_rows(report.get("project_statuses")),
        unchecked=_strs(report.get("unchecked")),
        stale=tuple(stale),
    )


def gather(
    root: Path,
    manifest: Manifest,
    statuses: Mapping[str, tuple[str, str | None]] | None = None,
) -> PageFacts:
    """Read what the page shows from the wheelhouse at ``root`` (``manifest``: its manifest;
    ``statuses``: the locks' PEP 792 statuses, as the index writer reads them)."""
    wh = Wheelhouse(Path(root))
    locks, lock_errors = _read_locks(wh)
    columns: dict[str, dict[str, Cell]] = {}
    views = []
    for target, (path, lock) in sorted(locks.items()):
        columns[target] = lock_cells(
            lock,
            manifest.artifacts,
            manifest.unserved.get(target, {}),
            present=lambda rel: (wh.root / rel).is_file(),
        )
        views.append(_lock_view(target, path, lock, manifest))
    for target, gaps in manifest.unserved.items():
        if target not in columns:  # a target that could not be locked
            columns[target] = {n: Cell(state=s, label=s, detail=w) for n, (s, w) in gaps.items()}
    targets, rows = matrix(columns)
    kept: dict[str, list[int]] = {}
    for rel, rec in manifest.artifacts.items():
        slot = kept.setdefault(rel.split("/", 1)[0], [0, 0])
        slot[0] += 1
        slot[1] += rec.size or 0
    licences, licence_error = _licences(wh.root) if locks else ((), None)
    digests = {path.name: _sha256(path.read_bytes()) for path, _lock in locks.values()}
    return PageFacts(
        targets=targets,
        rows=rows,
        locks=tuple(views),
        lock_errors=tuple(lock_errors),
        statuses=dict(statuses or {}),
        licences=licences,
        licence_error=licence_error,
        audit=read_audit(wh, digests),
        kept={k: (v[0], v[1]) for k, v in kept.items() if k in ("wheels", "sdists")},
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def page_stamp(wh: Wheelhouse, manifest: Manifest, statuses: Mapping[str, Any]) -> str:
    """A digest of every record the page is made from (the page's own version included)."""
    parts: dict[str, Any] = {
        "render": RENDER_VERSION,
        "manifest": manifest.to_dict(),
        "statuses": {k: list(v) for k, v in sorted(statuses.items())},
        "locks": {p.name: _sha256(p.read_bytes()) for p in wh.lock_paths()},
    }
    try:
        parts["audit"] = _sha256((wh.root / AUDIT_NAME).read_bytes())
    except OSError:
        parts["audit"] = None
    try:  # which wheels are there (a built wheel that is gone is a missing cell)
        parts["wheels"] = sorted(n for n in os.listdir(wh.wheels) if n.endswith(".whl"))
    except OSError:
        parts["wheels"] = []
    return _sha256(json.dumps(parts, sort_keys=True, default=str).encode())


_STAMP_RE = re.compile(rb'<meta name="' + STAMP_META.encode() + rb'" content="([0-9a-f]{64})">')


def write_page(
    root: Path,
    manifest: Manifest | None = None,
    statuses: Mapping[str, tuple[str, str | None]] | None = None,
) -> bool:
    """Write ``root/index.html`` (atomically) unless the records it is made from are unchanged
    since it was written; True when it was written. ``manifest`` defaults to the one on disk."""
    wh = Wheelhouse(Path(root))
    if manifest is None:
        manifest = load_manifest(wh.manifest_path)
    statuses = statuses or {}
    stamp = page_stamp(wh, manifest, statuses)
    path = wh.root / PAGE_NAME
    try:
        old: bytes | None = path.read_bytes()
    except OSError:
        old = None
    if old is not None:
        found = _STAMP_RE.search(old[:4096])
        if found is not None and found.group(1).decode() == stamp:
            return False
    data = render_page(gather(wh.root, manifest, statuses), stamp).encode("utf-8")
    if data == old:
        return False
    atomic_write_bytes(path, data, durable=False)
    return True
