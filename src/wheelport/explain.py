"""The one line a failed resolution ends with.

:func:`explain_impossible` turns resolvelib's causes into one line — a project no index has, a
project none of whose versions supports the target's Python, versions the user's own
requirements rule out, no version with a file for the target, or the chain of requirements in
conflict; :func:`gave_up` names the conflict a search that ran out of time met most. Both read
what the search learned (:class:`Search`: the resolver's provider), and decide nothing.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName
from packaging.version import InvalidVersion, Version

from wheelport.conflicts import Conflicts, Requirement, narrowed, where
from wheelport.credentials import redact
from wheelport.errors import ResolutionError
from wheelport.index.models import DistFile
from wheelport.selection import Why, verdict, wheel_tag_set
from wheelport.targets import Target


class SearchPolicy(Protocol):
    @property
    def time_limit(self) -> float | None: ...

    def rule(self, name: str) -> str: ...


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

    def files_of(self, name: NormalizedName) -> Mapping[Version, Sequence[DistFile]]: ...

    def left_out(self, name: NormalizedName) -> str: ...


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
        if name in provider.unknown and provider.left_out(name):
            return ResolutionError(
                f"no file of {name} on {indexes} is older than the cutoff: "
                f"{provider.left_out(name)}",
                hint="choose a later --exclude-newer, or leave it out",
                package=name,
                target=str(target),
            )
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
            reqs = [c.requirement for c in causes]
            return no_file(name, wanted, reqs, provider)
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


#: what each verdict (:func:`wheelport.selection.verdict`) says of the versions it counts:
#: (of several, of one)
_SAYS = {
    "elsewhere": ("have only wheels for other targets", "has only wheels for other targets"),
    "sdist": (
        "have only an sdist, which --only-binary excludes",
        "has only an sdist, which --only-binary excludes",
    ),
    "both": (
        "have wheels for other targets and an sdist, which --only-binary excludes",
        "has wheels for other targets and an sdist, which --only-binary excludes",
    ),
    "no-sdist": (
        "have no sdist, which --from-source builds from",
        "has no sdist, which --from-source builds from",
    ),
    "python": ("exclude Python {python}", "excludes Python {python}"),
    "yanked": ("are yanked", "is yanked"),
    "empty": ("list no file wheelport reads", "lists no file wheelport reads"),
}


def no_file(
    name: NormalizedName, wanted: str, reqs: Sequence[Any], search: Search
) -> ResolutionError:
    """The line for a project whose versions give the resolver nothing to try for the target:
    which versions the requirement allows, how many of them have a file for the target and
    why the others have none (the counts add up), and which targets their wheels serve."""
    target = search.target
    by_version = search.files_of(name)
    versions = sorted(by_version)
    spec = functools.reduce(lambda a, b: a & b, (r.specifier for r in reqs), SpecifierSet())
    allowed = [v for v in versions if spec.contains(v, prereleases=True)]
    cutoff = f"; {search.left_out(name)}" if search.left_out(name) else ""
    if not allowed:
        shown = ", ".join(str(v) for v in versions[-12:]) or "none"
        return ResolutionError(
            f"no version of {name} satisfies {wanted} for target {target} (available: {shown})"
            + cutoff,
            package=name,
            target=str(target),
        )
    exact = {_version(s.version) for s in spec if s.operator in ("==", "===")}
    rule = search.policy.rule(name)
    metadata_python = search.why.get(name, Why()).metadata_python
    verdicts: dict[Version, str] = {}
    for v in allowed:
        found = verdict(by_version[v], target, rule, allow_yanked=v in exact)
        verdicts[v] = "python" if found == "fits" and v in metadata_python else found
    counts = Counter(verdicts.values())
    fits = counts.pop("fits", 0)
    scope = (
        f"the {len(allowed)} version(s) it has"
        if len(allowed) == len(versions)
        else f"the {len(allowed)} of its {len(versions)} versions that {wanted} allows"
    )
    head = f"no version of {name} satisfies {wanted} for target {target}: "
    if fits:
        which = (
            "has a file for this target, which the search could not use"
            if fits == 1
            else "have a file for this target, none of which the search could use"
        )
        head += f"{fits} of {scope} ({_span(allowed)}) {which}"
    else:
        head += f"none of {scope} ({_span(allowed)}) has a file for this target"
    parts: list[str] = []
    for k, (several, one) in _SAYS.items():
        n = counts[k]
        if n:
            # the first count names what it counts: "54 version(s) have …; 1 has …"
            said = f"version(s) {several}" if not parts and not fits else several if n > 1 else one
            parts.append(f"{n} {said.format(python=target.full_version)}")
    serving = [by_version[v] for v in allowed if verdicts[v] in ("elsewhere", "both")]
    served = _served(serving)
    return ResolutionError(
        head
        + (f"; {'; '.join(parts)}" if parts else "")
        + (f"; the wheels are for {served}" if served else "")
        + cutoff,
        package=name,
        target=str(target),
    )


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _span(versions: Sequence[Version]) -> str:
    """``1.0, 1.1`` for a few versions, ``0.1 … 4.4.5`` for more (oldest to newest)."""
    if len(versions) <= 4:
        return ", ".join(map(str, versions))
    return f"{versions[0]} … {versions[-1]}"


#: platforms a summary names before it counts the rest
_PLATFORMS_SHOWN = 6
#: the legacy manylinux names (PEP 600 spells them manylinux_2_5, _2_12, _2_17)
_LEGACY = re.compile(r"^manylinux(1|2010|2014)_")
_GLIBC = {"1": "2_5", "2010": "2_12", "2014": "2_17"}


def _modern(m: re.Match[str]) -> str:
    return f"manylinux_{_GLIBC[m.group(1)]}_"


def _served(versions: Sequence[Sequence[DistFile]]) -> str:
    """What the wheels of some versions (oldest first) serve: their interpreters (a range per
    implementation) on their platforms, those of the newest versions first, then those most
    versions have: ``cp38…cp313 on manylinux_2_17_x86_64, win_amd64 and 4 more platforms``."""
    interpreters: set[str] = set()
    platforms: Counter[str] = Counter()
    newest: dict[str, int] = {}
    for i, files in enumerate(versions):
        tags = wheel_tag_set(files)
        interpreters |= {t.interpreter for t in tags}
        names = {_LEGACY.sub(_modern, t.platform) for t in tags}
        platforms.update(names)
        newest.update(dict.fromkeys(names, i))
    if not platforms:
        return ""
    ranked = sorted(platforms, key=lambda p: (-newest[p], -platforms[p], p))
    shown = ", ".join(ranked[:_PLATFORMS_SHOWN])
    if len(ranked) > _PLATFORMS_SHOWN:
        shown += f" and {len(ranked) - _PLATFORMS_SHOWN} more platforms"
    return f"{_interpreter_ranges(interpreters)} on {shown}"


def _interpreter_ranges(tags: Iterable[str]) -> str:
    """``cp38…cp313, py3``: per implementation, its lowest and highest tag (or the one or two)."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for tag in tags:
        m = re.fullmatch(r"([a-z]+)(\d*)", tag)
        impl, number = (m.group(1), int(m.group(2) or 0)) if m else (tag, 0)
        groups.setdefault(impl, []).append((number, tag))
    out = []
    for impl in sorted(groups):
        found = [tag for _, tag in sorted(groups[impl])]
        out.append(", ".join(found) if len(found) <= 2 else f"{found[0]}…{found[-1]}")
    return ", ".join(out)
