"""Targets: an interpreter and a platform a wheelhouse must serve.

A target is written like a cibuildwheel build identifier (``cp312-manylinux_2_28_x86_64``,
``cp311-musllinux_1_2_aarch64``, ``cp312-win_amd64``, ``cp313-macosx_11_0_arm64``,
``cp310-linux_x86_64``) or ``host`` for the running interpreter. From it come the ordered
list of wheel tags it accepts and its PEP 508 marker environment. ``packaging`` does the
work; this module only describes the target. Nothing here reads the host except
:func:`host_target`.
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from packaging import tags as _tags
from packaging.markers import default_environment
from packaging.utils import parse_wheel_filename

from wheelport.errors import TargetError

ACCEPTED_FORMS = (
    "host, cpXY-manylinux_2_N_ARCH, cpXY-manylinux2014_ARCH, cpXY-musllinux_1_N_ARCH, "
    "cpXY-linux_ARCH, cpXY-win_amd64, cpXY-win32, cpXY-win_arm64, cpXY-macosx_X_Y_ARCH "
    "(ARCH: x86_64, aarch64, i686, ppc64le, s390x, armv7l; macOS: x86_64, arm64, universal2; "
    "cpXYt for free-threaded)"
)

_LEGACY_MANYLINUX = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}
_LINUX_ARCHES = ("x86_64", "aarch64", "i686", "ppc64le", "s390x", "armv7l", "ppc64", "riscv64")
_MAC_ARCHES = ("x86_64", "arm64", "universal2")
_WINDOWS = {"win_amd64": "AMD64", "win32": "x86", "win_arm64": "ARM64"}

_ID_RE = re.compile(r"^(?P<impl>cp)(?P<major>3)(?P<minor>\d{1,2})(?P<ft>t?)-(?P<plat>.+)$")


@dataclass(frozen=True, kw_only=True)
class Target:
    """One interpreter + platform. A frozen value: its tags and marker environment."""

    identifier: str
    python_version: tuple[int, int]
    free_threaded: bool = False
    #: "manylinux", "musllinux", "linux", "windows" or "macos"
    os: str
    #: the platform tag as written in the identifier (manylinux_2_28_x86_64, win_amd64, ...)
    platform: str
    arch: str
    #: (major, minor) of the glibc/musl/macOS policy where one applies
    policy_version: tuple[int, int] | None = None
    python_full_version: str = ""
    #: explicit tag list (used by ``host``); computed from the fields otherwise
    explicit_tags: tuple[_tags.Tag, ...] | None = field(default=None, repr=False, compare=False)
    explicit_markers: tuple[tuple[str, str], ...] | None = field(
        default=None, repr=False, compare=False
    )

    def __str__(self) -> str:
        return self.identifier

    @property
    def python_tag(self) -> str:
        return f"cp{self.python_version[0]}{self.python_version[1]}"

    @property
    def abi(self) -> str:
        return self.python_tag + ("t" if self.free_threaded else "")

    @property
    def full_version(self) -> str:
        return self.python_full_version or f"{self.python_version[0]}.{self.python_version[1]}.0"

    @cached_property
    def platform_tags(self) -> tuple[str, ...]:
        """Platform tags this target accepts, most specific first."""
        return tuple(_platform_tags(self))

    @cached_property
    def tags(self) -> tuple[_tags.Tag, ...]:
        """Every wheel tag this target accepts, in preference order (best first)."""
        if self.explicit_tags is not None:
            return self.explicit_tags
        platforms = list(self.platform_tags)
        out: list[_tags.Tag] = []
        out.extend(_tags.cpython_tags(self.python_version, abis=[self.abi], platforms=platforms))
        if self.free_threaded:
            # abi3 is not usable from a free-threaded interpreter
            out = [t for t in out if t.abi != "abi3"]
        out.extend(
            _tags.compatible_tags(
                self.python_version, interpreter=self.python_tag, platforms=platforms
            )
        )
        seen: set[_tags.Tag] = set()
        ordered = []
        for tag in out:
            if tag not in seen:
                seen.add(tag)
                ordered.append(tag)
        return tuple(ordered)

    @cached_property
    def tag_priority(self) -> dict[_tags.Tag, int]:
        """Tag → rank (0 is best) for choosing among compatible wheels."""
        return {tag: i for i, tag in enumerate(self.tags)}

    @cached_property
    def tag_rank(self) -> dict[str, int]:
        """``"interpreter-abi-platform"`` → rank (0 is best), for matching file names fast."""
        return {str(tag): i for i, tag in enumerate(self.tags)}

    @cached_property
    def _rank_memo(self) -> dict[str, int | None]:
        return {}

    def wheel_rank(self, filename: str) -> int | None:
        """The best rank among a wheel file name's (possibly compressed) tags, None if none fits."""
        parts = filename[:-4].split("-") if filename.endswith(".whl") else []
        if len(parts) < 5:
            return None
        key = "-".join(parts[-3:])  # the same tag triple recurs in every release of a project
        memo = self._rank_memo
        if key in memo:
            return memo[key]
        rank = self.tag_rank
        best: int | None = None
        for py in parts[-3].split("."):
            for abi in parts[-2].split("."):
                for plat in parts[-1].split("."):
                    r = rank.get(f"{py}-{abi}-{plat}".lower())
                    if r is not None and (best is None or r < best):
                        best = r
        memo[key] = best
        return best

    @cached_property
    def markers(self) -> dict[str, str]:
        """The PEP 508 marker environment of this target."""
        if self.explicit_markers is not None:
            return dict(self.explicit_markers)
        machine, sys_platform, system, os_name = _platform_facts(self)
        full = self.full_version
        return {
            "implementation_name": "cpython",
            "implementation_version": full,
            "os_name": os_name,
            "platform_machine": machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": system,
            "platform_version": "",
            "python_full_version": full,
            "python_version": f"{self.python_version[0]}.{self.python_version[1]}",
            "sys_platform": sys_platform,
        }

    @property
    def is_linux(self) -> bool:
        return self.os in ("manylinux", "musllinux", "linux")

    def supports(self, tag: _tags.Tag) -> bool:
        return tag in self.tag_priority


def _platform_facts(target: Target) -> tuple[str, str, str, str]:
    """platform_machine, sys_platform, platform_system, os_name."""
    if target.os == "windows":
        return _WINDOWS[target.platform], "win32", "Windows", "nt"
    if target.os == "macos":
        machine = "arm64" if target.arch == "universal2" else target.arch
        return machine, "darwin", "Darwin", "posix"
    machine = {"armv7l": "armv7l", "i686": "i686"}.get(target.arch, target.arch)
    return machine, "linux", "Linux", "posix"


def _platform_tags(target: Target) -> list[str]:
    arch = target.arch
    if target.os == "windows":
        return [target.platform]
    if target.os == "macos":
        assert target.policy_version is not None
        return list(_tags.mac_platforms(target.policy_version, arch))
    out: list[str] = []
    if target.os == "manylinux":
        assert target.policy_version is not None
        major, minor = target.policy_version
        lowest = 5 if arch in ("x86_64", "i686") else 17
        for glibc_minor in range(minor, lowest - 1, -1):
            out.append(f"manylinux_{major}_{glibc_minor}_{arch}")
            for legacy, (lmaj, lmin) in _LEGACY_MANYLINUX.items():
                if (lmaj, lmin) == (major, glibc_minor) and (
                    legacy == "manylinux2014" or arch in ("x86_64", "i686")
                ):
                    out.append(f"{legacy}_{arch}")
    elif target.os == "musllinux":
        assert target.policy_version is not None
        major, minor = target.policy_version
        for musl_minor in range(minor, -1, -1):
            out.append(f"musllinux_{major}_{musl_minor}_{arch}")
    out.append(f"linux_{arch}")
    return out


def parse_target(text: str) -> Target:
    """Parse a target identifier; ``host`` is the running interpreter.

    Raises :class:`TargetError` (exit code 2) naming the accepted forms.
    """
    text = text.strip()
    if text == "host":
        return host_target()
    m = _ID_RE.match(text)
    if not m:
        raise TargetError(
            f"unknown target {text!r}", hint=f"accepted forms: {ACCEPTED_FORMS}", target=text
        )
    version = (int(m["major"]), int(m["minor"]))
    if version < (3, 6):
        raise TargetError(f"unsupported Python version in target {text!r}", target=text)
    free = bool(m["ft"])
    plat = m["plat"]
    os_, arch, policy, plat = _parse_platform(plat, text)
    return _target(version, free, os_, plat, arch, policy)


def _target(
    version: tuple[int, int],
    free: bool,
    os_: str,
    plat: str,
    arch: str,
    policy: tuple[int, int] | None,
    **measured: Any,
) -> Target:
    """A Target with its identifier; ``measured`` carries a real interpreter's facts."""
    return Target(
        identifier=f"cp{version[0]}{version[1]}{'t' if free else ''}-{plat}",
        python_version=version,
        free_threaded=free,
        os=os_,
        platform=plat,
        arch=arch,
        policy_version=policy,
        **measured,
    )


def _parse_platform(plat: str, original: str) -> tuple[str, str, tuple[int, int] | None, str]:
    def bad(why: str = "") -> TargetError:
        return TargetError(
            f"unknown target {original!r}{': ' + why if why else ''}",
            hint=f"accepted forms: {ACCEPTED_FORMS}",
            target=original,
        )

    if plat in _WINDOWS:
        arch = {"win_amd64": "AMD64", "win32": "x86", "win_arm64": "ARM64"}[plat]
        return "windows", arch, None, plat
    for legacy, ver in _LEGACY_MANYLINUX.items():
        if plat.startswith(legacy + "_"):
            arch = plat[len(legacy) + 1 :]
            if arch not in _LINUX_ARCHES:
                raise bad(f"unknown architecture {arch!r}")
            return "manylinux", arch, ver, f"manylinux_{ver[0]}_{ver[1]}_{arch}"
    m = re.match(r"^(manylinux|musllinux)_(\d+)_(\d+)_(.+)$", plat)
    if m:
        kind, major, minor, arch = m[1], int(m[2]), int(m[3]), m[4]
        if arch not in _LINUX_ARCHES:
            raise bad(f"unknown architecture {arch!r}")
        if kind == "manylinux" and major != 2:
            raise bad("manylinux policies are manylinux_2_N")
        if kind == "musllinux" and major != 1:
            raise bad("musllinux policies are musllinux_1_N")
        return kind, arch, (major, minor), plat
    m = re.match(r"^linux_(.+)$", plat)
    if m:
        if m[1] not in _LINUX_ARCHES:
            raise bad(f"unknown architecture {m[1]!r}")
        return "linux", m[1], None, plat
    m = re.match(r"^macosx_(\d+)_(\d+)_(.+)$", plat)
    if m:
        major, minor, arch = int(m[1]), int(m[2]), m[3]
        if arch not in _MAC_ARCHES:
            raise bad(f"unknown macOS architecture {arch!r}")
        if major < 10 or (major >= 11 and minor != 0):
            raise bad("macOS versions are 10.X or N.0 for N >= 11")
        return "macos", arch, (major, minor), plat
    raise bad()


def host_target() -> Target:
    """The running interpreter on this machine, with its real tags and markers."""
    version = (sys.version_info[0], sys.version_info[1])
    free = bool(getattr(sys, "_is_gil_enabled", lambda: True)() is False)
    tags = tuple(_tags.sys_tags())
    markers = default_environment()
    system = platform.system()
    if system == "Linux":
        best = next(
            (t.platform for t in tags if t.platform.startswith(("manylinux_", "musllinux_"))), None
        )
        arch = platform.machine()
        if best:
            os_ = best.split("_", 1)[0]
            parts = best.split("_")
            policy: tuple[int, int] | None = (int(parts[1]), int(parts[2]))
            plat = best
        else:
            os_, policy, plat = "linux", None, f"linux_{arch}"
    elif system == "Windows":
        plat = tags[0].platform
        os_, arch, policy = "windows", _WINDOWS.get(plat, "AMD64"), None
    elif system == "Darwin":
        plat = next(t.platform for t in tags if t.platform.startswith("macosx_"))
        parts = plat.split("_")
        os_, arch, policy = "macos", "_".join(parts[3:]), (int(parts[1]), int(parts[2]))
    else:  # pragma: no cover - other systems: use the first tag's platform
        plat = tags[0].platform
        os_, arch, policy = "linux", platform.machine(), None
    return _target(
        version,
        free,
        os_,
        plat,
        arch,
        policy,
        python_full_version=platform.python_version(),
        explicit_tags=tags,
        explicit_markers=tuple(sorted((str(k), str(v)) for k, v in markers.items())),
    )


def target_for_interpreter(info: dict[str, object]) -> Target:
    """A target describing another interpreter from its reported facts.

    ``info`` is what :data:`INTERPRETER_PROBE` prints as JSON when run by that interpreter:
    its tags (best first), marker environment, version and platform.
    """
    raw_tags = info["tags"]
    raw_markers = info["markers"]
    assert isinstance(raw_tags, list) and isinstance(raw_markers, dict)
    tag_list = tuple(t for s in raw_tags for t in _tags.parse_tag(str(s)))
    markers = {str(k): str(v) for k, v in raw_markers.items()}
    version = tuple(int(x) for x in str(markers["python_version"]).split("."))[:2]
    plat = next(
        (
            t.platform
            for t in tag_list
            if t.platform.startswith(("manylinux_", "musllinux_", "macosx_", "win"))
        ),
        tag_list[0].platform,
    )
    if plat.startswith(("manylinux_", "musllinux_")):
        parts = plat.split("_")
        os_, policy, arch = parts[0], (int(parts[1]), int(parts[2])), "_".join(parts[3:])
    elif plat.startswith("macosx_"):
        parts = plat.split("_")
        os_, policy, arch = "macos", (int(parts[1]), int(parts[2])), "_".join(parts[3:])
    elif plat.startswith("win"):
        os_, policy, arch = "windows", None, _WINDOWS.get(plat, "AMD64")
    else:
        os_, policy, arch = "linux", None, plat.split("_", 1)[-1]
    free = bool(info.get("free_threaded", False))
    return _target(
        (version[0], version[1]),
        free,
        os_,
        plat,
        arch,
        policy,
        python_full_version=markers["python_full_version"],
        explicit_tags=tag_list,
        explicit_markers=tuple(sorted(markers.items())),
    )


#: A stdlib-only script any interpreter can run to describe itself (no packaging needed):
#: used by provision to infer the target of ``--python``. The tag list is computed by
#: the ``packaging`` copy that ships inside pip (pip._vendor.packaging) when importable.
INTERPRETER_PROBE = r"""
import json, os, platform, sys
try:
    from pip._vendor.packaging import tags, markers
    tag_list = [str(t) for t in tags.sys_tags()]
    env = markers.default_environment()
except Exception:
    tag_list = []
    env = {}
if not env:
    iver = sys.implementation.version
    env = {
        "implementation_name": sys.implementation.name,
        "implementation_version": "%d.%d.%d" % (iver.major, iver.minor, iver.micro),
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }
print(json.dumps({"tags": tag_list, "markers": env,
                  "free_threaded": getattr(sys, "_is_gil_enabled", lambda: True)() is False,
                  "executable": sys.executable}))
"""


def parse_targets(texts: list[str] | tuple[str, ...]) -> list[Target]:
    """Parse several targets, dropping duplicates but keeping order. Empty means ``host``."""
    out: list[Target] = []
    seen: set[str] = set()
    for text in texts or ["host"]:
        t = parse_target(text)
        if t.identifier not in seen:
            seen.add(t.identifier)
            out.append(t)
    return out


# --------------------------------------------------------------------------- wheel tags


def wheel_tags(filename: str) -> frozenset[_tags.Tag]:
    """The tags a wheel's file name claims."""
    return parse_wheel_filename(filename)[3]


def is_pure(filename: str) -> bool:
    """A wheel any Python 3 on any platform installs (py3-none-any, py2.py3-none-any)."""
    return all(
        t.abi == "none" and t.platform == "any" and t.interpreter.startswith("py")
        for t in wheel_tags(filename)
    )


def served_targets(filename: str, targets: Iterable[Target]) -> list[Target]:
    """The targets whose tag lists accept a wheel."""
    tags = wheel_tags(filename)
    return [t for t in targets if any(tag in t.tag_priority for tag in tags)]
