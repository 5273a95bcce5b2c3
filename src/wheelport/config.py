"""Configuration: ``[tool.wheelport]`` in pyproject.toml or ``wheelport.toml``, overridden by flags.

The result is one frozen :class:`Config` value. Requirement files are read here too, so every
later stage sees plain ``packaging`` requirements with the file and line they came from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from wheelport.errors import ConfigError, RequirementError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_INDEX = "https://pypi.org/simple"


@dataclass(frozen=True)
class SourcedRequirement:
    """A requirement and where it was written (``requirements.txt:3``, ``command line``)."""

    requirement: Requirement
    origin: str

    def __str__(self) -> str:
        return str(self.requirement)


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything a run needs, resolved from config files and flags."""

    requirements: tuple[SourcedRequirement, ...] = ()
    constraints: tuple[SourcedRequirement, ...] = ()
    targets: tuple[str, ...] = ("host",)
    index_urls: tuple[str, ...] = (DEFAULT_INDEX,)
    #: ``index_urls`` were given (flag, config file, requirements file), not defaulted: they
    #: win over the indexes a lock to import records
    explicit_indexes: bool = False
    output: Path = Path("wheelhouse")
    pre: bool = False
    prefer_binary: bool = False
    only_binary: frozenset[str] = frozenset()
    from_source: frozenset[str] = frozenset()
    #: only files uploaded before this instant (RFC 3339, UTC, as :func:`parse_cutoff` spells
    #: it) exist for the resolution; a file whose index gives no upload time is left out too
    exclude_newer: str | None = None
    jobs: int = 16
    #: per-package system packages for container builds (e.g. lxml → libxml2-dev)
    build_system_packages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: per-policy container image overrides (e.g. manylinux_2_28 → an image)
    images: Mapping[str, str] = field(default_factory=dict)
    tools: tuple[str, ...] = ("pip",)
    #: revalidate every cached index page (not part of the inputs)
    refresh: bool = False
    #: use a cache of this run only, removed when it ends (``--no-cache``; not an input)
    no_cache: bool = False
    #: seconds one target's resolution may take (None: the resolver's default; 0: no limit;
    #: not part of the inputs: it changes whether an answer is found, never which)
    resolve_timeout: float | None = None
    #: another tool's lock to take the pins from (``lock --from``), and its extras/groups
    from_lock: Path | None = None
    from_extras: tuple[str, ...] = ()
    from_groups: tuple[str, ...] = ()
    #: every group of the lock (``--all-groups``); only ``from_groups``, without the project's
    #: own dependencies (``--only-group``)
    from_all_groups: bool = False
    from_only_groups: bool = False

    def inputs_digest(self) -> str:
        """A digest of everything that changes a resolution (not the output dir or job count)."""
        data = {
            "requirements": sorted(str(r.requirement) for r in self.requirements),
            "constraints": sorted(str(r.requirement) for r in self.constraints),
            "index_urls": list(self.index_urls),
            "pre": self.pre,
            "prefer_binary": self.prefer_binary,
            "only_binary": sorted(self.only_binary),
            "from_source": sorted(self.from_source),
            "tools": list(self.tools),
        }
        if self.exclude_newer is not None:  # a key only when set: earlier digests stay
            data["exclude_newer"] = self.exclude_newer
        if self.from_lock is not None:
            try:
                lock_sha = hashlib.sha256(self.from_lock.read_bytes()).hexdigest()
            except OSError:
                lock_sha = "missing"
            source: dict[str, object] = {
                "sha256": lock_sha,
                "extras": sorted(self.from_extras),
                "groups": sorted(self.from_groups),
            }
            # keys only when set, so that earlier imports' digests stay what they were
            if self.from_all_groups:
                source["all_groups"] = True
            if self.from_only_groups:
                source["only_groups"] = True
            if self.explicit_indexes and self.index_urls == (DEFAULT_INDEX,):
                # a given default index is not the lock's own index (which is used otherwise)
                source["index_given"] = True
            data["from_lock"] = source
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def parse_cutoff(text: str, origin: str) -> str:
    """``--exclude-newer``'s value as one UTC instant in RFC 3339 (``2026-12-01T00:00:00Z``).
    A date alone means the whole of that day in UTC (up to the next midnight), as uv reads it;
    a timestamp needs its offset (``Z`` or ``+01:00``): a local time would resolve differently
    on another machine."""
    value = text.strip()
    try:
        day = dt.date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        day = None
    if day is not None:
        instant = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    else:
        try:
            parsed = dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None or "T" not in value.upper():
            raise UsageError(
                f"{origin}: exclude-newer {text!r} is neither a date nor a timestamp with an offset",
                hint="write a UTC date such as 2026-12-01 or a timestamp such as "
                "2026-12-01T12:00:00Z",
            )
        instant = parsed.astimezone(dt.timezone.utc)
    return instant.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{instant.microsecond:06d}Z" if instant.microsecond else "Z"
    )


def parse_requirement(text: str, origin: str) -> SourcedRequirement:
    """Parse one PEP 508 requirement; a bad one is a :class:`RequirementError` naming its origin."""
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise RequirementError(
            f"{origin}: invalid requirement {text!r}: {str(exc).splitlines()[0]}",
            hint="write a PEP 508 requirement such as 'requests>=2.31'",
            path=origin,
        ) from None
    if req.url:
        raise RequirementError(
            f"{origin}: direct URL requirement {text!r} is not supported",
            hint="name the project and a version; wheelport resolves from indexes",
            path=origin,
        )
    return SourcedRequirement(req, origin)


def read_requirements_file(
    path: Path, *, _seen: frozenset[Path] = frozenset()
) -> tuple[list[SourcedRequirement], list[SourcedRequirement], list[str]]:
    """Read a pip-style requirements file.

    Returns (requirements, constraints, index URLs). Understands comments, line continuations,
    ``-r``/``-c`` includes, ``--index-url``/``-i`` and ``--extra-index-url``; ``--hash`` options are
    ignored (wheelport computes its own). Anything else that starts with ``-`` is an error.
    """
    if not path.is_file():
        raise UsageError(f"requirements file not found: {path}", path=str(path))
    path = path.resolve()
    if path in _seen:
        return [], [], []
    reqs: list[SourcedRequirement] = []
    cons: list[SourcedRequirement] = []
    indexes: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i]
        i += 1
        line = _strip_comment(line).strip()
        if not line:
            continue
        origin = f"{path.name}:{lineno}"
        if line.startswith("-"):
            opt, _, value = line.partition(" ")
            if "=" in opt:
                opt, _, value = opt.partition("=")
            value = value.strip()
            if opt in ("-r", "--requirement", "-c", "--constraint"):
                sub = (path.parent / value).resolve()
                r, c, ix = read_requirements_file(sub, _seen=_seen | {path})
                if opt in ("-c", "--constraint"):
                    cons.extend(r)
                    cons.extend(c)
                else:
                    reqs.extend(r)
                    cons.extend(c)
                indexes.extend(ix)
            elif opt in ("-i", "--index-url", "--extra-index-url"):
                indexes.append(value)
            elif opt in ("--pre", "--prefer-binary", "--only-binary", "--no-binary"):
                continue
            else:
                raise RequirementError(
                    f"{origin}: unsupported option {opt!r} in requirements file",
                    hint="use wheelport's command-line flags for options",
                    path=origin,
                )
            continue
        # drop per-requirement options like --hash=...
        text = line.split(" --", 1)[0].strip()
        reqs.append(parse_requirement(text, origin))
    return reqs, cons, indexes


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    idx = line.find(" #")
    return line if idx < 0 else line[:idx]


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
            return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", path=str(path)) from None


def find_config(directory: Path) -> tuple[Path | None, dict[str, Any], dict[str, Any]]:
    """(config file, its [tool.wheelport] table, the pyproject data) for a project directory.

    ``wheelport.toml`` (top-level keys) wins over ``[tool.wheelport]`` in pyproject.toml.
    """
    pyproject: dict[str, Any] = {}
    pp = directory / "pyproject.toml"
    if pp.is_file():
        pyproject = _load_toml(pp)
    wt = directory / "wheelport.toml"
    if wt.is_file():
        return wt, _load_toml(wt), pyproject
    table = pyproject.get("tool", {}).get("wheelport")
    if table is not None:
        return pp, dict(table), pyproject
    return None, {}, pyproject


_KNOWN_KEYS = {
    "requirements", "dependencies", "constraints", "extras", "groups", "targets", "index-urls",
    "index-url", "output", "pre", "prefer-binary", "only-binary", "from-source", "jobs",
    "build-system-packages", "images", "tools", "exclude-newer",
}  # fmt: skip


@dataclass(frozen=True)
class FileSettings:
    """The project's settings as its config file gives them, before any flag.

    Each setting is converted (and a wrong type reported) when it is read, so a setting that a
    flag overrides is never looked at.
    """

    #: the config file (None: the project has none)
    path: Path | None
    #: the directory the file's relative paths start from
    base: Path
    table: Mapping[str, Any]
    #: the project's pyproject.toml ({} when there is none): [project] and dependency groups
    pyproject: Mapping[str, Any]

    @property
    def origin(self) -> str:
        """The config file as messages name it."""
        return self.path.name if self.path else "config"

    def _list(self, key: str) -> list[Any]:
        value = self.table.get(key, [])
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise ConfigError(f"{self.origin}: '{key}' must be a list")
        return value

    @property
    def requirement_files(self) -> list[Path]:
        return [self.base / p for p in self._list("requirements")]

    @property
    def dependencies(self) -> list[str]:
        return self._list("dependencies")

    @property
    def constraint_files(self) -> list[Path]:
        return [self.base / p for p in self._list("constraints")]

    @property
    def extras(self) -> list[str]:
        return self._list("extras")

    @property
    def groups(self) -> list[str]:
        return self._list("groups")

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self._list("targets"))

    @property
    def index_urls(self) -> list[str]:
        return self._list("index-urls") + self._list("index-url")

    @property
    def output(self) -> Path:
        out = Path(self.table.get("output", "wheelhouse"))
        return self.base / out if self.path else out

    @property
    def pre(self) -> bool:
        return bool(self.table.get("pre", False))

    @property
    def prefer_binary(self) -> bool:
        return bool(self.table.get("prefer-binary", False))

    @property
    def only_binary(self) -> list[str]:
        return self._list("only-binary")

    @property
    def from_source(self) -> list[str]:
        return self._list("from-source")

    @property
    def exclude_newer(self) -> str | None:
        value = self.table.get("exclude-newer")
        if value is None:
            return None
        if isinstance(value, dt.datetime | dt.date):  # TOML's own date and date-time values
            value = value.isoformat()
        if not isinstance(value, str):
            raise ConfigError(f"{self.origin}: 'exclude-newer' must be a date or a timestamp")
        return parse_cutoff(value, self.origin)

    @property
    def jobs(self) -> int:
        return int(self.table.get("jobs", 16))

    @property
    def build_system_packages(self) -> dict[str, tuple[str, ...]]:
        bsp = self.table.get("build-system-packages", {})
        return {canonicalize_name(k): tuple(v) for k, v in bsp.items()}

    @property
    def images(self) -> dict[str, str]:
        return dict(self.table.get("images", {}))

    @property
    def tools(self) -> tuple[str, ...]:
        return tuple(self._list("tools"))


def read_settings(directory: Path) -> FileSettings:
    """The config file of a project directory (see :func:`find_config`), its keys checked."""
    path, table, pyproject = find_config(directory)
    settings = FileSettings(path, path.parent if path else directory, table, pyproject)
    unknown = set(table) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(
            f"{settings.origin}: unknown key(s) in wheelport config: {', '.join(sorted(unknown))}",
            hint=f"known keys: {', '.join(sorted(_KNOWN_KEYS))}",
        )
    return settings


def _dependency_group(
    pyproject: Mapping[str, Any], name: str, origin: str, stack: tuple[str, ...] = ()
) -> list[str]:
    groups = pyproject.get("dependency-groups", {})
    norm = {canonicalize_name(k): v for k, v in groups.items()}
    key = canonicalize_name(name)
    if key not in norm:
        raise ConfigError(
            f"{origin}: no dependency group {name!r}",
            hint=f"groups defined: {', '.join(sorted(groups)) or 'none'}",
        )
    if key in stack:
        raise ConfigError(f"{origin}: dependency group {name!r} includes itself")
    out: list[str] = []
    for item in norm[key]:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and "include-group" in item:
            out.extend(_dependency_group(pyproject, item["include-group"], origin, (*stack, key)))
        else:
            raise ConfigError(f"{origin}: invalid entry in dependency group {name!r}: {item!r}")
    return out


def build_config(
    *,
    directory: Path,
    requirement_files: Sequence[Path] = (),
    requirements: Sequence[str] = (),
    constraint_files: Sequence[Path] = (),
    extras: Sequence[str] = (),
    groups: Sequence[str] = (),
    targets: Sequence[str] = (),
    index_urls: Sequence[str] = (),
    output: Path | None = None,
    pre: bool | None = None,
    prefer_binary: bool | None = None,
    only_binary: Sequence[str] = (),
    from_source: Sequence[str] = (),
    exclude_newer: str | None = None,
    jobs: int | None = None,
    tools: Sequence[str] = (),
    refresh: bool = False,
    no_cache: bool = False,
    resolve_timeout: float | None = None,
    from_lock: Path | None = None,
    all_groups: bool = False,
    only_groups: Sequence[str] = (),
) -> Config:
    """Merge the project's config file with command-line values (flags win) into a :class:`Config`.

    With ``from_lock`` the pins come from that lock: ``extras``/``groups`` select its extras and
    groups (``all_groups``: every group; ``only_groups``: just those, without the project's
    own dependencies), and no requirements are read."""
    _check_group_choice(from_lock, extras, groups, all_groups, only_groups)
    if from_lock is not None and exclude_newer is not None:
        raise UsageError(
            "--exclude-newer limits what a resolution may choose; --from takes the pins of "
            f"{from_lock} as they are",
            hint="leave out --exclude-newer, or lock from requirements instead of --from",
        )
    if from_lock is not None:
        _check_lock_to_import(from_lock, [*requirement_files, *requirements, *constraint_files])
        base_config = build_config(
            directory=directory,
            requirements=["wheelport-from-lock-placeholder"],
            targets=targets,
            index_urls=index_urls,
            output=output,
            pre=pre,
            prefer_binary=prefer_binary,
            only_binary=only_binary,
            from_source=from_source,
            jobs=jobs,
            tools=tools,
            refresh=refresh,
            no_cache=no_cache,
            resolve_timeout=resolve_timeout,
        )
        return dataclasses.replace(
            base_config,
            requirements=(),
            constraints=(),
            from_lock=from_lock,
            from_extras=tuple(extras),
            from_groups=tuple(only_groups or groups),
            from_all_groups=all_groups,
            from_only_groups=bool(only_groups),
        )
    settings = read_settings(directory)
    reqs, cons, found_indexes = _requirements(
        settings, requirement_files, requirements, constraint_files
    )
    extras = list(extras) or settings.extras
    groups = list(groups) or settings.groups
    if extras or groups or not reqs:
        reqs.extend(_project_requirements(settings.pyproject, directory, extras, groups))
    if not reqs:
        raise UsageError(
            "nothing to lock: no requirements given",
            hint="pass requirements, -r FILE, or run in a project with [project] dependencies",
        )
    given = list(index_urls) or settings.index_urls or found_indexes
    out = _output_dir(output if output is not None else settings.output)
    return Config(
        requirements=tuple(reqs),
        constraints=tuple(cons),
        targets=tuple(targets) or settings.targets or ("host",),
        index_urls=tuple(dict.fromkeys(u.rstrip("/") for u in given or [DEFAULT_INDEX])),
        explicit_indexes=bool(given),
        output=out,
        pre=settings.pre if pre is None else pre,
        prefer_binary=settings.prefer_binary if prefer_binary is None else prefer_binary,
        only_binary=_names(list(only_binary) or settings.only_binary),
        from_source=_names(list(from_source) or settings.from_source),
        exclude_newer=(
            settings.exclude_newer
            if exclude_newer is None
            else parse_cutoff(exclude_newer, "--exclude-newer")
        ),
        jobs=jobs or settings.jobs,
        build_system_packages=settings.build_system_packages,
        images=settings.images,
        tools=_tools(tuple(tools) or settings.tools or ("pip",)),
        refresh=refresh,
        no_cache=no_cache,
        resolve_timeout=resolve_timeout,
    )


def _check_group_choice(
    from_lock: Path | None,
    extras: Sequence[str],
    groups: Sequence[str],
    all_groups: bool,
    only_groups: Sequence[str],
) -> None:
    """``--all-groups`` and ``--only-group`` select a lock's groups, as ``uv export`` does."""
    if not (all_groups or only_groups):
        return
    if from_lock is None:
        raise UsageError(
            "--all-groups and --only-group select the groups of a lock given with --from",
            hint="for this project, name each group with --group",
        )
    if only_groups and (groups or all_groups or extras):
        raise UsageError(
            "--only-group cannot be combined with --group, --all-groups or --extra",
            hint="--only-group NAME takes just that group; --group NAME adds it to the "
            "project's own dependencies",
        )


def _check_lock_to_import(from_lock: Path, requirements: Sequence[object]) -> None:
    """``--from LOCK`` takes no requirements, and the lock must exist."""
    if requirements:
        raise UsageError(
            "--from takes the pins from a lock: do not pass requirements or constraints too",
            hint="drop the requirements, or drop --from to resolve them",
        )
    if not from_lock.is_file():
        raise UsageError(f"lock to import not found: {from_lock}", path=str(from_lock))


def _requirements(
    settings: FileSettings,
    requirement_files: Sequence[Path],
    requirements: Sequence[str],
    constraint_files: Sequence[Path],
) -> tuple[list[SourcedRequirement], list[SourcedRequirement], list[str]]:
    """(requirements, constraints, index URLs the files name): the files and requirements the
    flags give, else the config file's. Requirements on the command line replace the config
    file's ``dependencies``; requirement files replace both."""
    reqs: list[SourcedRequirement] = []
    cons: list[SourcedRequirement] = []
    indexes: list[str] = []
    for f in list(requirement_files) or settings.requirement_files:
        r, c, ix = read_requirements_file(Path(f))
        reqs.extend(r)
        cons.extend(c)
        indexes.extend(ix)
    if requirements:
        reqs.extend(parse_requirement(t, "command line") for t in requirements)
    elif not requirement_files:
        reqs.extend(parse_requirement(t, settings.origin) for t in settings.dependencies)
    for f in list(constraint_files) or settings.constraint_files:
        r, c, _ = read_requirements_file(Path(f))
        cons.extend(r)
        cons.extend(c)
    return reqs, cons, indexes


def _project_requirements(
    pyproject: Mapping[str, Any], directory: Path, extras: Sequence[str], groups: Sequence[str]
) -> list[SourcedRequirement]:
    """pyproject.toml's ``[project] dependencies``, its ``extras`` and its dependency ``groups``."""
    origin = "pyproject.toml"
    if (extras or groups) and not pyproject:
        raise UsageError(
            f"--extra/--group need a pyproject.toml in {directory}",
            hint="run from the project directory",
        )
    project = pyproject.get("project", {})
    reqs = [parse_requirement(t, origin) for t in project.get("dependencies", [])]
    optional = {
        canonicalize_name(k): v for k, v in project.get("optional-dependencies", {}).items()
    }
    for extra in extras:
        key = canonicalize_name(extra)
        if key not in optional:
            raise ConfigError(
                f"{origin}: no extra {extra!r}",
                hint=f"extras defined: {', '.join(sorted(optional)) or 'none'}",
            )
        reqs.extend(parse_requirement(t, f"{origin} [{extra}]") for t in optional[key])
    for group in groups:
        reqs.extend(
            parse_requirement(t, f"{origin} group {group}")
            for t in _dependency_group(pyproject, group, origin)
        )
    return reqs


def _output_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UsageError(
            f"output {out} exists and is not a directory",
            hint="pass -o with a directory for the wheelhouse",
            path=str(out),
        )
    return out


def _names(values: Sequence[str]) -> frozenset[str]:
    return frozenset(v if v == ":all:" else canonicalize_name(v) for v in values)


def _tools(values: tuple[str, ...]) -> tuple[str, ...]:
    """Installer wheels to carry; ``none`` carries none."""
    return () if values in (("none",), ("",)) else values
