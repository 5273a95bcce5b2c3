"""``wheelport sync``: lock (if stale) → fetch → build → finish → index, idempotent.

Every stage does only what is missing: fresh locks are not re-resolved, present and
recorded files are not downloaded, a wheel already built from the same sdist (sha256) for a
target by the same builder is not rebuilt, and the index only rewrites changed pages.
The manifest is loaded once, changed in memory by fetch and build, and written once with the
rewritten locks at the end (:func:`wheelport.finish.finish`); the index is written last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelport import api
from wheelport.builders.plan import BuildOutcome, Coverage, served
from wheelport.builders.report import BuildReporter
from wheelport.config import Config
from wheelport.errors import JobError, UsageError
from wheelport.fetch import (
    FetchReporter,
    FetchResult,
    Prefetcher,
    fetch,
    recheck,
    save_stamps,
)
from wheelport.finish import finish, lock_texts, record_locks
from wheelport.index.client import IndexClient
from wheelport.lock import check_locks, read_lock
from wheelport.targets import Target, parse_targets
from wheelport.wheelhouse import Wheelhouse

if TYPE_CHECKING:
    from wheelport.builders.stage import Builders
    from wheelport.resolve import Reporter, TargetFailure


@dataclass
class SyncResult:
    wheelhouse: Path
    relocked: bool
    fetched: FetchResult
    builds: list[BuildOutcome]
    coverage: Coverage
    targets: list[str]
    index: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.coverage.red()

    def to_json(self) -> dict[str, Any]:
        return {
            "wheelhouse": str(self.wheelhouse),
            "relocked": self.relocked,
            "targets": self.targets,
            "fetch": self.fetched.to_json(),
            "builds": [dataclasses.asdict(b) for b in self.builds],
            "coverage": self.coverage.to_json(),
            "missing": [
                {"package": p, "target": t, "reason": d} for p, t, d in self.coverage.red()
            ],
            "index": self.index,
            "ok": self.ok,
        }


def sync(
    config: Config,
    *,
    client: IndexClient | None = None,
    reporter: Reporter | None = None,
    fetch_reporter: FetchReporter | None = None,
    build_reporter: BuildReporter | None = None,
    builders: Builders | None = None,
    allow_missing: bool = False,
    shard: tuple[int, int] | None = None,
    only_targets: Sequence[str] = (),
) -> SyncResult:
    """Make the wheelhouse complete for the config's targets. Raises on failure unless
    ``allow_missing`` (then red coverage cells are reported, not raised).

    ``shard`` (I, N) and ``only_targets`` build only part of the build work (every lock is
    still written and every download made): a partial wheelhouse for ``wheelport merge``."""
    targets = parse_targets(list(config.targets))
    only = _only_targets(targets, only_targets)
    wh = Wheelhouse(config.output)
    # exclusive: a second sync (or lock, merge into it) waits; provision/verify/bundle wait too
    with wh.locked("sync"):
        own = client is None
        client = client or api.make_client(config)
        # closed (awaited) once the index is written: no download of this run outlives it
        with contextlib.closing(Prefetcher(client)) as ahead:  # reads ahead while targets resolve
            try:
                digest = config.inputs_digest()
                relocked, failed = _lock_if_stale(  # (the read-ahead reporter: when stale)
                    wh, config, targets, client, functools.partial(ahead.reporter, reporter),
                    allow_missing,
                )  # fmt: skip
                unlocked = {f.target for f in failed}
                locked = [t for t in targets if t not in unlocked]
                locks = {t.identifier: read_lock(wh.lock_path(t.identifier)) for t in locked}
                manifest = wh.load_manifest()
                try:
                    # re-hash what is there; refuse escaping paths; damaged files are redone
                    recheck(wh, manifest)
                    ahead.hand_over()  # what it has not started, fetch downloads at full speed
                    fetched = fetch(wh, list(locks.values()), client, jobs=config.jobs,
                                    reporter=fetch_reporter, manifest=manifest)  # fmt: skip
                    built, needs = served(wh.root, locks)
                    if needs:  # sdists to build: only then is the build machinery loaded
                        from wheelport.builders.stage import build_stage, default_builders

                        built = build_stage(wh, manifest, locked, locks, client,
                                            builders or default_builders(config),
                                            reporter=build_reporter, shard=shard,
                                            only_targets=only)  # fmt: skip
                except Exception:
                    wh.save_manifest(manifest)  # the files placed before the failure stay recorded
                    raise
            finally:
                ahead.stop()  # its interpreter ends while the wheelhouse is finished
                if own:
                    client.close()
            for f in failed:
                reason = f"not locked: {f.error.message}"
                built.coverage.set(
                    f.error.package or "(all)", f.target.identifier, "missing", reason
                )
            manifest.set_unserved([t.identifier for t in targets], built.coverage.cells)
            record_locks(wh, manifest, locked, built.locks, inputs_digest=digest,
                         dropped={t.identifier for t in unlocked})  # fmt: skip
            finish(wh, manifest, lock_texts(built.locks, built.rewritten))
            save_stamps(wh, manifest)  # the next sync hashes only what changed since
            from wheelport.site.writer import write_index

            report = write_index(wh.root, manifest=manifest)
        result = SyncResult(
            wheelhouse=wh.root,
            relocked=relocked,
            fetched=fetched,
            builds=built.outcomes,
            coverage=built.coverage,
            targets=[t.identifier for t in targets],
            index=_report_json(report),
        )
        if result.coverage.red() and not allow_missing:
            raise _missing_error(result)
        return result


def _only_targets(targets: Sequence[Target], only_targets: Sequence[str]) -> set[str]:
    only = {t.identifier for t in parse_targets(list(only_targets))} if only_targets else set()
    unknown = sorted(only - {t.identifier for t in targets})
    if unknown:
        raise UsageError(
            f"--only-target {unknown[0]} is not a target of this sync",
            hint="name one of the -t targets",
        )
    return only


def _lock_if_stale(
    wh: Wheelhouse,
    config: Config,
    targets: Sequence[Target],
    client: IndexClient,
    reporter: Callable[[], Reporter],
    allow_missing: bool,
) -> tuple[bool, list[TargetFailure]]:
    """(whether it relocked, the targets that could not be locked). ``reporter`` makes the
    resolution's reporter, when there is a resolution."""
    stale = [s for s in check_locks(wh, targets, config.inputs_digest()) if s.reason]
    if not stale:
        return False, []
    locker = api.lock
    if config.from_lock is not None:  # lock --from: the pins of another tool's lock
        locker = functools.partial(api.lock_from, source=config.from_lock)
    result = locker(
        config, client=client, reporter=reporter(), targets=targets, allow_missing=allow_missing
    )
    return True, list(result.failed)


def _missing_error(result: SyncResult) -> JobError:
    pkg, tgt, why = result.coverage.red()[0]
    more = len(result.coverage.red()) - 1
    err = JobError(
        f"{pkg} cannot be served for {tgt}: {why}"
        + (f" (and {more} more missing)" if more else ""),
        hint="see the coverage table; --allow-missing finishes anyway",
        package=pkg,
        target=tgt,
    )
    err.result = result  # type: ignore[attr-defined]
    return err


def _report_json(report: object) -> dict[str, Any]:
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        return {
            k: (
                v
                if isinstance(v, int | str | bool)
                else len(v)
                if hasattr(v, "__len__")
                else str(v)
            )
            for k, v in dataclasses.asdict(report).items()
        }
    return {}
