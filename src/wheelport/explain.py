"""The one line a failed resolution ends with.

:func:`explain_impossible` turns resolvelib's causes into one line — a project no index has, a
project none of whose versions supports the target's Python, versions the user's own
requirements rule out, no version with a file for the target, or the chain of requirements in
conflict; :func:`gave_up` names the conflict a search that ran out of time met most. Both read
what the search learned (:class:`Search`: the resolver's provider), and decide nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName

from wheelport.conflicts import Conflicts, Requirement, narrowed, where
from wheelport.credentials import redact
from wheelport.errors import ResolutionError
from wheelport.selection import Why
from wheelport.targets import Target


class SearchPolicy(Protocol):
    @property
    def time_limit(self) -> float | None: ...


class Search(Protocol):
    """What a failed search learned (``wheelport.resolve.Provider``)."""

    @property
    def target(self) -> Target: ...
    @property
    def policy(self) -> SearchPolicy: ...
    @property
    def conflicts(self) -> Conflicts: ...
    @property
    def unknown(self) -> Collection[NormalizedName]: ...
    @property
    def why(self) -> Mapping[NormalizedName, Why]: ...
    @property
    def via(self) -> Mapping[str, str]: ...

    def ruled_out(self, name: NormalizedName, reqs: Sequence[Any]) -> list[str]: ...

    def has_version(self, name: NormalizedName, spec: SpecifierSet) -> bool: ...


def gave_up(provider: Search, elapsed: float) -> ResolutionError:
    """The one line for a search that ran out of time: how long, and the conflict it met most,
    each side with where it comes from."""
    target = provider.target
    limit = provider.policy.time_limit
    worst = provider.conflicts.worst()
    if worst is None:
        what = "without meeting a conflict (a slow index or metadata builds?)"
    else:
        _, text, count = worst
        what = f"the conflict it met most ({count} time{'s' * (count != 1)}): {text}"
    limit_text = f"its {limit:g} s limit" if limit is not None else "too many rounds"
    return ResolutionError(
        f"resolution for target {target} gave up after {elapsed:.0f} s ({limit_text}); {what}",
        hint="pin or loosen one side of that conflict, add a constraint (-c), "
        "or allow more time (--resolve-timeout SECONDS, WHEELPORT_RESOLVE_TIMEOUT)",
        package=None if worst is None else worst[0].project,
        target=str(target),
    )


def explain_impossible(
    causes: Collection[Any], provider: Search, index_urls: Sequence[str]
) -> ResolutionError:
    """Turn resolvelib's causes into one line: unknown project, nothing matches, or a conflict chain."""
    target = provider.target
    names = {c.requirement.name for c in causes}
    indexes = ", ".join(redact(u) for u in index_urls)
    for name in sorted(names):
        if name in provider.unknown:
            return ResolutionError(
                f"no project named {name!r} on {indexes}",
                hint="check the spelling or add --index-url",
                package=name,
                target=str(target),
            )
    if len(names) == 1:
        name = next(iter(names))
        why = provider.why.get(name, Why())
        wanted = ", ".join(sorted({c.requirement.text for c in causes}))
        if (
            why.versions
            and why.requires_python
            and len(why.requires_python) >= len(why.versions - why.yanked)
        ):
            specs = sorted(set(why.requires_python.values()))
            return ResolutionError(
                f"no version of {name} supports Python {target.full_version} (target {target}); "
                f"requires-python of its releases: {', '.join(specs[:4])}",
                hint="choose another target or an older pin",
                package=name,
                target=str(target),
            )
        all_parents_root = all(c.parent is None for c in causes)
        if all_parents_root or len({str(c.requirement.specifier) for c in causes}) == 1:
            ruled_out = provider.ruled_out(name, [c.requirement for c in causes])
            if ruled_out:
                more = ""
                if len(ruled_out) > 1:
                    more = f" (and {len(ruled_out) - 1} more version(s) likewise)"
                return ResolutionError(
                    f"no version of {name} that {wanted} allows fits your other requirements "
                    f"for target {target}: {ruled_out[0]}{more}",
                    hint="loosen one of these requirements or add a constraint",
                    package=name,
                    target=str(target),
                )
            avail = sorted(why.versions)
            shown = ", ".join(str(v) for v in avail[-12:]) or "none"
            extra = []
            if why.no_tag:
                extra.append(
                    f"{len(why.no_tag)} version(s) have no wheel for {target} and no sdist"
                )
            if why.requires_python:
                extra.append(f"{len(why.requires_python)} exclude Python {target.full_version}")
            if why.sdist_only:
                extra.append(
                    f"{len(why.sdist_only)} have only an sdist, which --only-binary excludes"
                )
            return ResolutionError(
                f"no version of {name} satisfies {wanted} for target {target} (available: {shown})"
                + (f"; {'; '.join(extra)}" if extra else ""),
                package=name,
                target=str(target),
            )
    kept = []
    for name in sorted(names):
        on_name = [(c.requirement, c.parent) for c in causes if c.requirement.name == name]
        kept += narrowed(on_name, provider.has_version)
    chain = "; ".join(dict.fromkeys(_describe(req, parent, provider.via) for req, parent in kept))
    return ResolutionError(
        f"conflicting requirements for target {target}: {chain}",
        hint="loosen one of these requirements or add a constraint",
        package=", ".join(sorted(names)),
        target=str(target),
    )


def _describe(req: Requirement, parent: object | None, via: Mapping[str, str]) -> str:
    if parent is None:
        return f"you ask for {req.text} ({req.origin})"
    return f"{where(str(parent), via)} requires {req.text}"
