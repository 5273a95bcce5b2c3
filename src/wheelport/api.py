"""One library function per verb. The CLI parses flags, calls these, and prints.

Each function takes plain values (a :class:`Config`, paths), returns a result value, and
raises :mod:`wheelport.errors` on failure. Side effects that tests swap (the index client,
a reporter) are parameters.

The resolver, the importers and the file selection are imported by the verbs that use them:
a sync whose locks are current (a no-op) loads none of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import Requirement

from wheelport.cache import Cache
from wheelport.config import Config, SourcedRequirement, parse_requirement
from wheelport.credentials import redact, split_credentials
from wheelport.errors import FetchError, IndexAccessError, ResolutionError, UsageError
from wheelport.index.client import IndexClient
from wheelport.lock import Staleness, build_lock, check_locks, write_locks
from wheelport.targets import Target, parse_targets
from wheelport.wheelhouse import Wheelhouse, sha256_file

if TYPE_CHECKING:
    from wheelport.importers import ImportedPin, Selected
    from wheelport.index.parse import ProjectStatus
    from wheelport.index.sources import SdistMetadataBuilder
    from wheelport.resolve import Pin, Reporter, Resolution, TargetFailure


def make_client(config: Config, cache: Cache | None = None) -> IndexClient:
    """The index client for a config (credentials from URLs/netrc; sdist metadata via PEP 517,
    whose logs of failed builds are kept in the cache: a failed lock writes no wheelhouse)."""
    cache = cache or (Cache.temporary() if config.no_cache else Cache.default())
    return IndexClient(
        config.index_urls,
        cache=cache,
        concurrency=max(4, config.jobs * 2),
        sdist_metadata=_sdist_metadata(config.index_urls, cache, config.exclude_newer),
        refresh=config.refresh,
        exclude_newer=config.exclude_newer,
    )


def _sdist_metadata(
    index_urls: Sequence[str], cache: Cache, exclude_newer: str | None
) -> SdistMetadataBuilder:
    """The PEP 517 metadata builder for sdists whose metadata is not static (its build
    requirements as the index stood at ``exclude_newer`` when given); its machinery (isolated
    environments, hooks) is imported when an sdist first needs it, not by every run."""
    made: list[SdistMetadataBuilder] = []

    def build(sdist: Path, filename: str) -> bytes:
        if not made:  # two threads may both make one: the same builder
            from wheelport.builders.isolated import sdist_metadata_online

            made.append(
                sdist_metadata_online(
                    index_urls, cache.logs, cache=cache, exclude_newer=exclude_newer
                )
            )
        return made[0](sdist, filename)

    return build


@dataclass
class LockResult:
    wheelhouse: Path
    resolutions: list[Resolution]
    tools: dict[str, list[Pin]]
    paths: list[Path]
    skipped: list[str] = field(default_factory=list)
    #: targets that could not be resolved (only with ``allow_missing``)
    failed: list[TargetFailure] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "wheelhouse": str(self.wheelhouse),
            "locks": [str(p) for p in self.paths],
            "targets": {
                r.target.identifier: {
                    name: {
                        "version": str(pin.version),
                        "file": pin.file.filename,
                        "kind": "wheel" if pin.file.is_wheel else "sdist",
                        "markers": list(pin.markers) if pin.markers else None,
                    }
                    for name, pin in r.pins.items()
                }
                for r in self.resolutions
            },
            "failed": {f.target.identifier: f.error.to_json() for f in self.failed},
        }


def lock(
    config: Config,
    *,
    client: IndexClient | None = None,
    reporter: Reporter | None = None,
    targets: Sequence[Target] | None = None,
    allow_missing: bool = False,
) -> LockResult:
    """Resolve every target and write ``pylock.<target>.toml`` for each.

    All or nothing: when a target cannot be resolved nothing is written and its error (naming
    the target and the package) is raised — unless ``allow_missing``, which locks the targets
    that resolve, removes the now stale locks of those that did not, and reports them in
    :attr:`LockResult.failed` (it still raises when no target resolves).
    """
    targets = list(targets) if targets is not None else parse_targets(list(config.targets))
    own = client is None
    client = client or make_client(config)
    from wheelport.resolve import Policy, resolve_each

    try:
        policy = Policy.from_config(config)
        resolutions, failed = resolve_each(
            client,
            targets,
            config.requirements,
            config.constraints,
            policy=policy,
            reporter=reporter,
        )
        resolutions, tools = _complete(client, config, resolutions, failed, allow_missing)
    finally:
        if own:
            client.close()
    return _write(config, resolutions, tools, failed, client.project_statuses())


def _complete(
    client: IndexClient,
    config: Config,
    resolutions: list[Resolution],
    failed: list[TargetFailure],
    allow_missing: bool,
) -> tuple[list[Resolution], dict[str, list[Pin]]]:
    """Raise for the failed targets (unless ``allow_missing`` and some target resolved: with
    none, there is nothing to write); give every pin a hash and every resolved target its
    installer tools."""
    from wheelport.resolve import first_failure, none_locked

    if failed and not allow_missing:
        raise first_failure(failed)
    if failed and not resolutions:
        raise none_locked(failed)
    tools = resolve_tools(client, [r.target for r in resolutions], config.tools)
    hashed = [_with_hashes(client, r) for r in resolutions]
    return hashed, {tid: _with_hashes_pins(client, pins) for tid, pins in tools.items()}


def _write(
    config: Config,
    resolutions: list[Resolution],
    tools: dict[str, list[Pin]],
    failed: list[TargetFailure],
    statuses: Mapping[str, ProjectStatus],
) -> LockResult:
    """Write every resolved target's lock (all validated first) and remove the stale locks of
    the targets that failed; the PEP 792 statuses of the projects go into the locks."""
    wh = Wheelhouse(config.output)
    digest = config.inputs_digest()
    inputs = inputs_record(config)
    locks = {
        r.target.identifier: build_lock(
            r,
            inputs_digest=digest,
            inputs=inputs,
            tools=tools[r.target.identifier],
            statuses=statuses,
        )
        for r in resolutions
    }
    with wh.locked("lock"):  # exclusive while writing (re-entered when sync calls this)
        paths = write_locks(wh, locks)
        for f in failed:
            wh.lock_path(f.target.identifier).unlink(missing_ok=True)
    return LockResult(config.output, resolutions, tools, paths, failed=failed)


def inputs_record(config: Config) -> dict[str, Any]:
    """What a lock is made from, as ``[tool.wheelport.inputs]`` records it for people and for
    the command that makes the wheelhouse again (docs/lock-format.md): the inputs of
    :meth:`Config.inputs_digest` — requirements and constraints (sorted, as the digest takes
    them), index URLs without credentials, installer tools, the options that are set, and
    for ``--from`` the source lock's file name and sha256 (not its path: the record is the
    same on every machine)."""
    record: dict[str, Any] = {
        "requirements": sorted(str(r.requirement) for r in config.requirements),
        "constraints": sorted(str(r.requirement) for r in config.constraints),
        # no credentials at all: a user name in an index URL is often a token
        "index-urls": [split_credentials(u)[0] for u in config.index_urls],
        "tools": list(config.tools),
    }
    flags = {
        "index-given": config.explicit_indexes,
        "pre": config.pre,
        "prefer-binary": config.prefer_binary,
    }
    record.update({k: True for k, v in flags.items() if v})
    if config.only_binary:
        record["only-binary"] = sorted(config.only_binary)
    if config.from_source:
        record["from-source"] = sorted(config.from_source)
    if config.exclude_newer is not None:
        record["exclude-newer"] = config.exclude_newer
    if config.from_lock is not None:
        try:
            sha = sha256_file(config.from_lock)
        except OSError:
            sha = "missing"
        source: dict[str, Any] = {"name": config.from_lock.name, "sha256": sha}
        source.update(extras=sorted(config.from_extras), groups=sorted(config.from_groups))
        if config.from_all_groups:
            source["all-groups"] = True
        if config.from_only_groups:
            source["only-groups"] = True
        record["from"] = source
    return record


def _with_hashes_pins(client: IndexClient, pins: Sequence[Pin]) -> list[Pin]:
    """Pins whose index gave no sha256 (PEP 503 makes it optional) get one by downloading the
    file into the cache: a PEP 751 lock needs a hash for every artifact."""
    out = []
    for pin in pins:
        f = pin.file
        if not f.sha256:
            path = client.download(f)
            f = dataclasses.replace(f, sha256=sha256_file(path), size=path.stat().st_size)
            pin = dataclasses.replace(pin, file=f)
        out.append(pin)
    return out


def _with_hashes(client: IndexClient, resolution: Resolution) -> Resolution:
    pins = _with_hashes_pins(client, list(resolution.pins.values()))
    return dataclasses.replace(resolution, pins={p.name: p for p in pins})


def resolve_tools(
    client: IndexClient, targets: Sequence[Target], names: Sequence[str]
) -> dict[str, list[Pin]]:
    """The installer wheels (pip, and uv when asked) per target, binary only."""
    out: dict[str, list[Pin]] = {t.identifier: [] for t in targets}
    if not names:
        return out
    from wheelport.resolve import Policy, resolve_all

    reqs = [SourcedRequirement(Requirement(n), "tools") for n in names]
    policy = Policy(only_binary=frozenset({":all:"}))
    try:
        results = resolve_all(client, targets, reqs, policy=policy)
    except ResolutionError as exc:
        raise ResolutionError(
            f"cannot carry the installer {exc.package or ', '.join(names)} for target {exc.target}: {exc.message}",
            hint="wheelport puts a pip wheel in every wheelhouse for offline provisioning; "
            "make it available on the index or pass --tool none",
            package=exc.package,
            target=exc.target,
        ) from None
    for res in results:
        out[res.target.identifier] = list(res.pins.values())
    return out


def check(config: Config, targets: Sequence[Target] | None = None) -> list[Staleness]:
    """Which locks are missing or stale for the current inputs (nothing is written)."""
    targets = list(targets) if targets is not None else parse_targets(list(config.targets))
    return check_locks(Wheelhouse(config.output), targets, config.inputs_digest())


def lock_from(
    config: Config,
    source: Path,
    *,
    client: IndexClient | None = None,
    reporter: Reporter | None = None,
    targets: Sequence[Target] | None = None,
    allow_missing: bool = False,
) -> LockResult:
    """Write wheelport's locks from another tool's lock, keeping its pins exactly.

    ``source`` is a uv.lock, poetry.lock, Pipfile.lock, pdm.lock, pylock.toml or environment.yml
    (see :mod:`wheelport.importers`). Per target, the pins whose markers (or, in uv.lock, some
    path from the project) hold are kept, with ``config.from_extras``/``from_groups`` selected;
    each pin's file for the target is chosen from the index, and every hash the source records
    for a file must equal the index's (else :class:`FetchError`, nothing written). A pin with no
    file for a target is that target's failure, as in :func:`lock` (``allow_missing``).
    environment.yml is not a lock: its pip requirements are resolved (``==`` pins stay exact).
    """
    from wheelport import importers
    from wheelport.resolve import NullReporter, Policy, Resolution, TargetFailure, for_target

    if config.from_lock != source:
        config = dataclasses.replace(config, from_lock=source)
    parsed = importers.load(source)
    recorded = _recorded_indexes(config, parsed.index_urls)
    if isinstance(parsed, importers.Requirements):
        if config.from_extras or config.from_groups or config.from_all_groups:
            raise UsageError(f"{source}: environment.yml has no extras or groups to select")
        reqs = tuple(parse_requirement(line, f"{source.name} pip") for line in parsed.lines)
        resolving = dataclasses.replace(config, requirements=reqs)
        if recorded:
            resolving = dataclasses.replace(resolving, index_urls=recorded)
        with _naming_recorded(recorded, source):
            return lock(
                resolving,
                client=client,
                reporter=reporter,
                targets=targets,
                allow_missing=allow_missing,
            )
    targets = list(targets) if targets is not None else parse_targets(list(config.targets))
    index_config = dataclasses.replace(config, index_urls=recorded) if recorded else config
    choice = importers.Choice(
        extras=config.from_extras,
        groups=config.from_groups,
        all_groups=config.from_all_groups,
        only_groups=config.from_only_groups,
    )
    own = client is None
    client = client or make_client(index_config)
    policy = Policy.from_config(config)
    reporter = reporter or NullReporter()
    try:
        selections = {t.identifier: parsed.select(t.markers, choice) for t in targets}
        names = sorted({n for sel in selections.values() for n in sel})
        for n in names:
            client.prefetch_project(n)
        resolutions: list[Resolution] = []
        failed: list[TargetFailure] = []
        with _naming_recorded(recorded, source):
            for t in targets:
                reporter.target_started(t)
                try:
                    pins = {
                        name: _imported_pin(client, t, s, policy.rule(name), source)
                        for name, s in sorted(selections[t.identifier].items())
                    }
                except ResolutionError as exc:
                    failure = TargetFailure(t, for_target(exc, t))
                    failed.append(failure)
                    reporter.target_failed(t, failure.error)
                    continue
                resolution = Resolution(t, pins)
                reporter.target_done(t, resolution)
                resolutions.append(resolution)
            resolutions, tools = _complete(client, config, resolutions, failed, allow_missing)
        for r in resolutions:
            for pin in r.pins.values():
                _check_downloaded_hash(pin, selections[r.target.identifier][pin.name].pin, source)
    finally:
        if own:
            client.close()
    return _write(config, resolutions, tools, failed, client.project_statuses())


def _recorded_indexes(config: Config, lock_indexes: Sequence[str]) -> tuple[str, ...]:
    """The indexes a lock to import records, when they are the ones to use: an index given by
    flag or config file wins over them (``()``: use ``config.index_urls``)."""
    if config.explicit_indexes or not lock_indexes:
        return ()
    return tuple(dict.fromkeys(u.rstrip("/") for u in lock_indexes))


@contextlib.contextmanager
def _naming_recorded(recorded: Sequence[str], source: Path) -> Iterator[None]:
    """A recorded index that fails says so, and which flag replaces it, in its one line."""
    try:
        yield
    except IndexAccessError as exc:
        where = next((u for u in recorded if (exc.path or "").startswith(redact(u))), None)
        if where is None:
            raise
        why = exc.message.removeprefix("cannot reach ")
        raise IndexAccessError(
            f"{source.name}'s recorded index {redact(where)} cannot be reached ({why})",
            hint="pass --index-url URL to use another index (flags win over the lock's indexes)",
            package=exc.package,
            target=exc.target,
            path=exc.path,
        ) from None


def _imported_pin(
    client: IndexClient, target: Target, selected: Selected, rule: str, source: Path
) -> Pin:
    """The :class:`Pin` of an imported pin for one target: its version's file on the index that
    serves the target and whose hash the source lock records."""
    from wheelport.resolve import Pin
    from wheelport.selection import select_file

    imp = selected.pin
    where = ", ".join(redact(u) for u in client.index_urls)
    if imp.version is None:
        raise ResolutionError(
            f"{source.name} does not pin {imp.name} (its tool locked it for another platform), "
            f"which target {target} needs",
            hint="lock it where the tool can pin it, or pass --allow-missing to leave this target unlocked",
            package=imp.name,
            target=target.identifier,
        )
    by_version = client.versions_of(imp.name)
    files = list(by_version.get(imp.version, []))
    if not files:
        shown = ", ".join(str(v) for v in sorted(by_version)[-8:]) or "nothing"
        raise ResolutionError(
            f"{imp} (pinned in {source.name}) is not on {where}; it has {shown}",
            hint="point --index-url at the index the lock was made from",
            package=imp.name,
            target=target.identifier,
        )
    for f in files:
        recorded = imp.files.get(f.filename)
        if recorded and f.sha256 and f.sha256.lower() != recorded:
            raise FetchError(
                f"hash mismatch for {f.filename}: {source.name} records sha256 {recorded}, "
                f"{where} serves {f.sha256}",
                hint="the file changed on the index or the lock was edited; re-lock with the source tool",
                package=imp.name,
                path=f.filename,
            )
    # only files whose hash the lock records (files the index gives no hash for are checked
    # after they are downloaded)
    usable = [f for f in files if not imp.hashes or not f.sha256 or f.sha256.lower() in imp.hashes]
    chosen = select_file(usable, target, rule, allow_yanked=True)
    if chosen is None:
        other = select_file(files, target, rule, allow_yanked=True)
        if other is not None:
            raise FetchError(
                f"{other.filename} serves target {target} but its hash is not in {source.name}'s hashes for {imp}",
                hint="re-lock with the source tool so it records that file",
                package=imp.name,
                target=target.identifier,
                path=other.filename,
            )
        raise ResolutionError(
            f"{imp} (pinned in {source.name}) has no file for target {target}; "
            f"{where} has {', '.join(sorted(f.filename for f in files))}",
            hint="pass --allow-missing to lock the other targets",
            package=imp.name,
            target=target.identifier,
        )
    return Pin(
        name=imp.name,
        version=imp.version,
        file=chosen,
        extras=selected.extras,
        dependencies=imp.dependencies,
        markers=selected.markers,
        requires_python=chosen.requires_python,
    )


def _check_downloaded_hash(pin: Pin, imported: ImportedPin, source: Path) -> None:
    sha = (pin.file.sha256 or "").lower()
    if imported.hashes and sha not in imported.hashes:
        raise FetchError(
            f"hash mismatch for {pin.file.filename}: sha256 {sha} is not among the hashes "
            f"{source.name} records for {imported}",
            package=pin.name,
            path=pin.file.filename,
        )
