"""One library function per verb. The CLI parses flags, calls these, and prints.

Each function takes plain values (a :class:`Config`, paths), returns a result value, and
raises :mod:`wheelport.errors` on failure. Side effects that tests swap (the index client,
a reporter) are parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from wheelport.build.isolated import sdist_metadata_online
from wheelport.cache import Cache
from wheelport.config import Config, SourcedRequirement
from wheelport.errors import ResolutionError
from wheelport.index.client import IndexClient
from wheelport.lock import Staleness, build_lock, check_locks, write_locks
from wheelport.resolve import (
    Pin,
    Policy,
    Reporter,
    Resolution,
    TargetFailure,
    first_failure,
    resolve_all,
    resolve_each,
)
from wheelport.targets import Target, parse_targets
from wheelport.wheelhouse import Wheelhouse, sha256_file


def make_client(config: Config, cache: Cache | None = None) -> IndexClient:
    """The index client for a config (credentials from URLs/netrc; sdist metadata via PEP 517,
    whose logs of failed builds are kept in the cache: a failed lock writes no wheelhouse)."""
    cache = cache or Cache.default()
    return IndexClient(
        config.index_urls,
        cache=cache,
        concurrency=max(4, config.jobs * 2),
        sdist_metadata=sdist_metadata_online(config.index_urls, cache.root / "logs"),
        refresh=config.refresh,
    )


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
        if failed and (not allow_missing or not resolutions):
            raise first_failure(failed)
        resolved = [r.target for r in resolutions]
        tools = resolve_tools(client, resolved, config.tools)
        resolutions = [_with_hashes(client, r) for r in resolutions]
        tools = {tid: list(_with_hashes_pins(client, pins)) for tid, pins in tools.items()}
    finally:
        if own:
            client.close()
    wh = Wheelhouse(config.output)
    digest = config.inputs_digest()
    locks = {
        r.target.identifier: build_lock(r, inputs_digest=digest, tools=tools[r.target.identifier])
        for r in resolutions
    }
    with wh.locked("lock"):  # exclusive while writing (re-entered when sync calls this)
        paths = write_locks(wh, locks)
        for f in failed:
            wh.lock_path(f.target.identifier).unlink(missing_ok=True)
    return LockResult(config.output, resolutions, tools, paths, failed=failed)


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
