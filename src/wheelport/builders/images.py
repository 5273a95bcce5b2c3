"""Builder images: which image serves a target's policy, and the images wheelport builds.

- :func:`policy_image`: cibuildwheel's own pinned images for manylinux2014,
  manylinux_2_28, manylinux_2_34, musllinux_1_2 (read from cibuildwheel's resources),
  overridable per policy; ``manylinux_2_36`` (x86_64) is the local base image.
- :func:`ensure_local_image`: a manylinux-compatible image built from a Debian release's
  own packages (``local-base.sh``: debootstrap, then ``podman import``) for x86_64 or
  aarch64 (under qemu, :func:`emulation_for`), with the release's CPython plus any CPython
  prefixes whose glibc needs fit (:func:`inspect_interpreter`, :func:`check_interpreter`),
  tagged by a hash of its recipe and inputs and labelled with what it serves
  (:func:`local_images`), for machines that reach no container registry.
  :func:`ensure_local_base_image` is the default one: bookworm x86_64, CPython 3.11.
- :func:`ensure_builder_image`: a derived image with the system packages a project needs
  (``builder.Containerfile.in``), tagged by a hash of base + packages.

The recipes and templates are package data of :mod:`wheelport.resources`, so a regular
install builds the same images (with the same tags) as a checkout.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from wheelport import bootstrap, resources
from wheelport.builders.container import engine_env
from wheelport.errors import BuildError, UsageError
from wheelport.process import Runner, subprocess_runner
from wheelport.targets import Target

#: the local base image carries bookworm's glibc 2.36 and CPython 3.11
LOCAL_BASE_POLICY = "manylinux_2_36"
LOCAL_BASE_ARCH = "x86_64"
LOCAL_BASE_PYTHONS = ((3, 11),)
LOCAL_BASE_REPO = f"localhost/wheelport-{LOCAL_BASE_POLICY}_{LOCAL_BASE_ARCH}"
LOCAL_BASE_RECIPE = resources.LOCAL_BASE_RECIPE
BUILDER_TEMPLATE = resources.BUILDER_TEMPLATE
BUILDER_REPO = "localhost/wheelport-builder"

_PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_:~-]*$")
_IMPORT_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["/bin/bash"]',
)


def policy_name(target: Target) -> str:
    """The policy a Linux target's image must match: manylinux2014, manylinux_2_28, ..."""
    if target.os not in ("manylinux", "musllinux") or target.policy_version is None:
        raise BuildError(
            f"target {target.identifier} has no manylinux/musllinux policy, so no build image",
            target=target.identifier,
        )
    major, minor = target.policy_version
    if target.os == "manylinux" and (major, minor) == (2, 17):
        return "manylinux2014"
    return f"{target.os}_{major}_{minor}"


def pinned_images(cfg_text: str | None = None) -> dict[str, dict[str, str]]:
    """cibuildwheel's pinned images: ``{arch: {policy: image}}``.

    Read from ``cibuildwheel/resources/pinned_docker_images.cfg`` unless ``cfg_text`` is given.
    """
    if cfg_text is None:
        ref = files("cibuildwheel") / "resources" / "pinned_docker_images.cfg"
        cfg_text = ref.read_text(encoding="utf-8")
    parser = configparser.ConfigParser(inline_comment_prefixes=("#",))
    parser.read_string(cfg_text)
    return {arch: dict(parser.items(arch)) for arch in parser.sections()}


def local_base_tag(recipe_dir: Path | None = None) -> str:
    """The default local image's tag: ``localhost/wheelport-manylinux_2_36_x86_64:<hash>``.

    Bookworm, x86_64, its own CPython 3.11 only (:func:`local_image_tag` with the defaults).
    The hash covers the names and contents of the recipe files (never their location), so an
    editable and a regular install agree. ``recipe_dir`` hashes another copy of the recipe
    instead of the package data.
    """
    return local_image_tag(recipe_dir=recipe_dir)


def builder_template() -> str:
    """The derived builder image's Containerfile template (``builder.Containerfile.in``)."""
    return resources.read_text(BUILDER_TEMPLATE)


@dataclass(frozen=True)
class ImageChoice:
    """The image chosen to build a target, and why it was chosen.

    ``source`` is ``"override"`` (``[tool.wheelport] images``), ``"local"`` (a present local
    image serving the target) or ``"pinned"`` (cibuildwheel's pinned image; it may need a
    pull). ``policy`` is the image's own policy — the newest tag its wheels can claim — and
    ``pythons`` the interpreters it carries (None: not known, every CPython manylinux ships).
    """

    image: str
    source: str
    policy: str
    pythons: tuple[str, ...] | None = None


def policy_glibc(policy: str) -> tuple[int, int] | None:
    """The glibc version of a manylinux policy name (``manylinux2014`` → (2, 17)); None for
    musllinux and unknown names."""
    legacy = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}
    if policy in legacy:
        return legacy[policy]
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)", policy)
    return (int(m.group(1)), int(m.group(2))) if m else None


def serving_local_images(target: Target, local: Sequence[LocalImage]) -> list[LocalImage]:
    """The local images that can build ``target``, best first.

    An image serves a manylinux target when it has the target's arch, carries the target's
    interpreter (``cp312`` in ``pythons``), and its glibc is not newer than the target's
    policy: auditwheel then tags the wheel with what it really needs, which the target
    accepts. The highest such policy comes first (newest toolchain that stays honest); among
    equals one built from this wheelport's recipe before one an older wheelport left (its
    tools may be out of date), then the one with the fewest interpreters (the plainest, e.g.
    the default local image for its own CPython), then by tag, so the choice is stable.
    """
    if target.os != "manylinux" or target.policy_version is None:
        return []
    fits = []
    for img in local:
        glibc = policy_glibc(img.policy)
        if (
            not img.tag.startswith(BUILDER_REPO + ":")  # derived images inherit the labels
            and img.arch == target.arch
            and target.abi in img.pythons
            and glibc is not None
            and glibc <= target.policy_version
        ):
            fits.append(((-glibc[0], -glibc[1]), not img.current, len(img.pythons), img.tag, img))
    return [img for *_, img in sorted(fits, key=lambda f: f[:4])]


def choose_image(
    target: Target,
    overrides: Mapping[str, str] | None = None,
    *,
    local: Sequence[LocalImage] | None = None,
    pinned: Mapping[str, Mapping[str, str]] | None = None,
    interpreter: Interpreter | None = None,
) -> ImageChoice:
    """Pick the image that builds ``target``: override > local image serving it > pinned.

    ``overrides`` maps a policy (``manylinux_2_28``) or a policy and arch
    (``manylinux_2_28_aarch64``) to any image. ``local`` are the local images present here
    (:func:`local_images`); None means they were not looked up, and only the local base
    image stands for ``manylinux_2_36`` x86_64 CPython 3.11. Then cibuildwheel's pinned
    image for the policy. No image raises :class:`BuildError` naming the missing piece and
    the command that adds it (``interpreter``: a CPython of the target's version found here,
    to suggest for the image).
    """
    policy = policy_name(target)
    overrides = overrides or {}
    for key in (f"{policy}_{target.arch}", policy):
        if key in overrides:
            return ImageChoice(overrides[key], "override", policy)
    if local is not None:
        serving = serving_local_images(target, local)
        if serving:
            best = serving[0]
            return ImageChoice(best.tag, "local", best.policy, tuple(best.pythons))
    elif policy == LOCAL_BASE_POLICY and target.arch == LOCAL_BASE_ARCH:
        if target.python_version not in LOCAL_BASE_PYTHONS or target.free_threaded:
            raise BuildError(
                f"the local {LOCAL_BASE_POLICY} image carries only CPython 3.11, not "
                f"{target.identifier}",
                hint=f"use cp311-{LOCAL_BASE_POLICY}_{LOCAL_BASE_ARCH} or configure an image "
                f"for {policy}",
                target=target.identifier,
            )
        return ImageChoice(local_base_tag(), "local", LOCAL_BASE_POLICY, ("cp311",))
    table = pinned if pinned is not None else pinned_images()
    image = table.get(target.arch, {}).get(policy)
    if image is not None:
        return ImageChoice(image, "pinned", policy)
    known = sorted(table.get(target.arch, {}))
    if local is None and target.arch == LOCAL_BASE_ARCH:
        known.append(LOCAL_BASE_POLICY)
    raise BuildError(
        f"no container image for policy {policy} ({target.arch}) to build {target.identifier}"
        + (f": {_local_gap(target, local)}" if local is not None else ""),
        hint=_image_hint(target, local, known, interpreter),
        target=target.identifier,
    )


def policy_image(
    target: Target,
    overrides: Mapping[str, str] | None = None,
    *,
    pinned: Mapping[str, Mapping[str, str]] | None = None,
    local: Sequence[LocalImage] | None = None,
) -> str:
    """The image that builds wheels for ``target``'s policy (see :func:`choose_image`)."""
    return choose_image(target, overrides, local=local, pinned=pinned).image


def build_local_command(target: Target, python: Interpreter | None = None) -> str | None:
    """The ``wheelport image build-local`` command that adds a local image serving ``target``,
    or None when no Debian release wheelport builds is old enough for its policy.

    The newest release whose glibc the target's policy allows; ``--python`` unless that
    release's own CPython is the target's: ``python`` (a CPython of the target's version
    found here) when its glibc needs fit the release, else a placeholder saying what fits.
    """
    fitting = [
        (glibc, name, own)
        for name, (_policy, glibc, own) in RELEASES.items()
        if target.os == "manylinux"
        and target.policy_version is not None
        and tuple(glibc) <= target.policy_version
    ]
    if not fitting:
        return None
    glibc, name, own = max(fitting)
    argv = ["wheelport", "image", "build-local", "--release", name]
    if own != target.abi:
        major, minor = target.python_version
        if python is not None and (python.glibc is None or python.glibc <= glibc):
            argv += ["--python", str(python.prefix)]
        else:
            argv += [
                "--python",
                f"<a CPython {major}.{minor} built for glibc <= {glibc[0]}.{glibc[1]}>",
            ]
    if target.arch != LOCAL_BASE_ARCH:
        argv += ["--arch", target.arch]
    return " ".join(argv)


def image_hint(target: Target, python: Interpreter | None = None) -> str:
    """What to do when no image builds ``target``: the local image to build, or the
    ``[tool.wheelport] images`` setting (any image this machine can pull or has loaded)."""
    policy = policy_name(target)
    setting = f'set [tool.wheelport] images "{policy}" to an image this machine can pull'
    command = build_local_command(target, python)
    if command:
        return f"build one: {command}, or {setting}"
    oldest = min(RELEASES.items(), key=lambda kv: kv[1][1])
    return (
        f"{setting} (or load one: podman load); no Debian release wheelport builds is old "
        f"enough for {policy} (the oldest, {oldest[0]}, is {oldest[1][0]})"
    )


def _local_gap(target: Target, local: Sequence[LocalImage]) -> str:
    """What the present local images lack for ``target``: all, its arch, or its Python."""
    same_arch = [img for img in local if img.arch == target.arch]
    old_enough = [
        img
        for img in same_arch
        if (g := policy_glibc(img.policy)) is not None
        and target.policy_version is not None
        and g <= target.policy_version
    ]
    if not same_arch:
        return f"no local {target.arch} image"
    if not old_enough:
        have = ", ".join(sorted({img.policy for img in same_arch}))
        return f"the local {target.arch} images ({have}) are newer than {policy_name(target)}"
    pythons = ", ".join(sorted({p for img in old_enough for p in img.pythons}))
    return f"no interpreter {target.abi} in the local images that fit (they carry {pythons})"


def _image_hint(
    target: Target,
    local: Sequence[LocalImage] | None,
    known: list[str],
    python: Interpreter | None = None,
) -> str:
    if target.os == "manylinux" and local is not None:
        return image_hint(target, python)
    policy = policy_name(target)
    return f"configure an image for {policy}, or use one of: {', '.join(known) or 'none'}"


def is_local_base(image: str) -> bool:
    """Whether ``image`` is the local base image (built here, never pulled)."""
    return image.startswith(LOCAL_BASE_REPO + ":")


def is_local_image(image: str) -> bool:
    """Whether ``image`` is one of the local images :func:`ensure_local_image` builds."""
    return image.startswith(LOCAL_REPO_PREFIX) and not image.startswith(BUILDER_REPO + ":")


def image_exists(engine: str, image: str, runner: Runner = subprocess_runner) -> bool:
    """Whether the engine has ``image`` locally."""
    argv = (
        [engine, "image", "exists", image]
        if engine == "podman"
        else [
            engine,
            "image",
            "inspect",
            image,
        ]
    )
    return runner(argv, env=_engine_environ()).returncode == 0


def image_id(engine: str, image: str, runner: Runner = subprocess_runner) -> str | None:
    """The engine's content ID of ``image`` (``sha256:…``), or None when it is not present.

    For the build cache: a wheel built from the same sdist for the same target by an image
    with the same ID need not be built again.
    """
    result = runner(
        [engine, "image", "inspect", "--format", "{{.Id}}", image], env=_engine_environ()
    )
    if result.returncode != 0:
        return None
    value = result.last_line
    if not value:
        return None
    return value if value.startswith("sha256:") else f"sha256:{value}"


# ---------------------------------------------------------------- local images

#: Debian release → (the manylinux policy its glibc serves, its glibc, its own CPython's tag)
RELEASES: dict[str, tuple[str, tuple[int, int], str]] = {
    "bullseye": ("manylinux_2_31", (2, 31), "cp39"),
    "bookworm": ("manylinux_2_36", (2, 36), "cp311"),
    "trixie": ("manylinux_2_41", (2, 41), "cp313"),
}
DEFAULT_RELEASE = "bookworm"
#: wheelport's (and manylinux's) architecture names → Debian's and OCI's
DEBIAN_ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}
LOCAL_REPO_PREFIX = "localhost/wheelport-"
LABEL_POLICY = "io.wheelport.policy"
LABEL_ARCH = "io.wheelport.arch"
LABEL_PYTHONS = "io.wheelport.pythons"
LABEL_RECIPE = "io.wheelport.recipe"
#: the digest of the recipe files alone: an image another wheelport version built is not current
LABEL_RECIPE_FILES = "io.wheelport.recipe-files"
#: where the kernel lists its binfmt_misc handlers (emulated foreign-arch containers)
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
EMULATION_PACKAGES = "apt-get install qemu-user-static binfmt-support"

_ELF_MACHINES = {3: "i686", 40: "armv7l", 62: "x86_64", 183: "aarch64", 21: "ppc64le", 22: "s390x"}
_SHT_GNU_VERNEED = 0x6FFFFFFE
_GLIBC_RE = re.compile(rb"^GLIBC_(\d+)\.(\d+)")


@dataclass(frozen=True)
class LocalImage:
    """A local image wheelport built: its tag and what it serves (its labels)."""

    tag: str
    policy: str  # e.g. "manylinux_2_36"
    arch: str  # "x86_64" | "aarch64"
    pythons: tuple[str, ...]  # ("cp311", "cp312")
    #: built from this wheelport's recipe (False: an older wheelport's, or not recorded)
    current: bool = True

    def to_json(self) -> dict[str, object]:
        return {
            "tag": self.tag,
            "policy": self.policy,
            "arch": self.arch,
            "pythons": list(self.pythons),
        }


@dataclass(frozen=True, kw_only=True)
class Interpreter:
    """A CPython prefix to copy into a local image, as :func:`inspect_interpreter` found it."""

    prefix: Path
    tag: str  # "cp312", "cp313t"
    version: str  # "3.12.1"
    arch: str | None  # from its ELF header
    glibc: tuple[int, int] | None  # the highest GLIBC_x.y its binaries need
    identity: str  # hash of its file list and sizes (cheap, stable)

    @property
    def directory(self) -> str:
        """Its directory under ``/opt/python``: ``cp312-cp312``, ``cp313-cp313t``."""
        return f"{self.tag.removesuffix('t')}-{self.tag}"


def elf_needs(data: bytes) -> tuple[str | None, tuple[int, int] | None]:
    """An ELF file's architecture and the highest ``GLIBC_x.y`` symbol version it needs.

    Reads the ``.gnu.version_r`` section (what ``objdump -T`` shows as ``GLIBC_2.35``); None
    for a file that needs no glibc version.
    """
    if data[:4] != b"\x7fELF" or len(data) < 52:
        raise ValueError("not an ELF file")
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    machine = _ELF_MACHINES.get(struct.unpack_from(end + "H", data, 18)[0])
    if is64:
        shoff = struct.unpack_from(end + "Q", data, 0x28)[0]
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        fmt = end + "IIQQQQII"
    else:
        shoff = struct.unpack_from(end + "I", data, 0x20)[0]
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        fmt = end + "IIIIIIII"
    sections = [
        struct.unpack_from(fmt, data, shoff + i * shentsize)
        for i in range(shnum)
        if shoff + (i + 1) * shentsize <= len(data)
    ]
    best: tuple[int, int] | None = None
    for _name, kind, _flags, _addr, offset, _size, link, count in sections:
        if kind != _SHT_GNU_VERNEED or link >= len(sections):
            continue
        strtab = sections[link][4]
        pos = offset
        for _ in range(count):
            _version, aux_count, _file, aux, following = struct.unpack_from(
                end + "HHIII", data, pos
            )
            apos = pos + aux
            for _ in range(aux_count):
                _hash, _aflags, _other, name, anext = struct.unpack_from(end + "IHHII", data, apos)
                start = strtab + name
                match = _GLIBC_RE.match(data[start : data.find(b"\0", start)])
                if match:
                    found = (int(match[1]), int(match[2]))
                    best = found if best is None or found > best else best
                apos += anext
            pos += following
    return machine, best


def inspect_interpreter(prefix: Path) -> Interpreter:
    """What a CPython prefix (``$PYENV_ROOT/versions/3.12.1``) is: version, arch, glibc needs.

    The glibc requirement is the highest ``GLIBC_x.y`` needed by its ``python3.X`` binary, its
    ``libpython`` and its extension modules (``lib-dynload``). A directory that is not a
    CPython prefix raises :class:`UsageError`.
    """
    root = prefix.expanduser().resolve()
    stdlibs = sorted(
        d for d in (root / "lib").glob("python3.*") if re.fullmatch(r"python3\.\d+t?", d.name)
    )
    stdlibs = [d for d in stdlibs if (d / "os.py").is_file()]
    if len(stdlibs) != 1:
        raise UsageError(
            f"--python {prefix}: not a CPython prefix (no single lib/python3.X/os.py)",
            hint="give an installation prefix such as $PYENV_ROOT/versions/3.12.1",
            path=str(prefix),
        )
    stdlib = stdlibs[0]
    name = stdlib.name.removeprefix("python")  # "3.12" or "3.13t"
    binary = root / "bin" / f"python{name}"
    if not binary.is_file():
        raise UsageError(f"--python {prefix}: no bin/python{name} in it", path=str(prefix))
    version = name.rstrip("t")
    patchlevel = root / "include" / f"python{name}" / "patchlevel.h"
    if patchlevel.is_file():
        found = re.search(r'#define\s+PY_VERSION\s+"([^"]+)"', patchlevel.read_text("latin-1"))
        version = found[1] if found else version
    elfs = [binary, *(root / "lib").glob("libpython3*.so*"), *(stdlib / "lib-dynload").glob("*.so")]
    arch: str | None = None
    glibc: tuple[int, int] | None = None
    for path in elfs:
        if path.is_symlink() or not path.is_file():
            continue
        try:
            machine, needs = elf_needs(path.read_bytes())
        except (ValueError, struct.error):
            continue
        if path == binary:
            arch = machine
        if needs is not None and (glibc is None or needs > glibc):
            glibc = needs
    return Interpreter(
        prefix=root,
        tag="cp" + name.replace(".", ""),
        version=version,
        arch=arch,
        glibc=glibc,
        identity=_tree_identity(root),
    )


def check_interpreter(interp: Interpreter, release: str, arch: str) -> None:
    """Raise :class:`UsageError` (one line) when ``interp`` cannot go into that image.

    It must be built for ``arch`` and need no newer glibc than the release carries.
    """
    policy, glibc, _own = _release(release)
    where = f"the {release} {arch} image ({policy})"
    if interp.arch != arch:
        raise UsageError(
            f"--python {interp.prefix} (CPython {interp.version}) is built for "
            f"{interp.arch or 'an unknown architecture'}, so it cannot go into {where}",
            hint=f"give a CPython prefix built for {arch}",
            path=str(interp.prefix),
        )
    if interp.glibc is not None and interp.glibc > glibc:
        fits = [r for r, (_p, g, _o) in RELEASES.items() if g >= interp.glibc]
        raise UsageError(
            f"--python {interp.prefix} (CPython {interp.version}) needs glibc "
            f"{interp.glibc[0]}.{interp.glibc[1]}, but {where} has glibc {glibc[0]}.{glibc[1]}",
            hint=(
                f"use --release {' or '.join(fits)}, or a CPython built against an older glibc"
                if fits
                else "give a CPython built against an older glibc"
            ),
            path=str(interp.prefix),
        )


@dataclass(frozen=True)
class _Plan:
    image: LocalImage
    release: str
    own: str
    interpreters: tuple[Interpreter, ...]


def _plan(
    release: str,
    arch: str,
    pythons: Sequence[Path | Interpreter],
    recipe_dir: Path | None = None,
) -> _Plan:
    policy, _glibc, own = _release(release)
    if arch not in DEBIAN_ARCHES:
        raise UsageError(
            f"unknown architecture {arch!r} for a local image",
            hint=f"use one of: {', '.join(DEBIAN_ARCHES)}",
        )
    interps = [p if isinstance(p, Interpreter) else inspect_interpreter(p) for p in pythons]
    seen = {own: f"{release}'s own python3"}
    for interp in interps:
        check_interpreter(interp, release, arch)
        if interp.tag in seen:
            raise UsageError(
                f"--python {interp.prefix}: the image already has {interp.tag} "
                f"({seen[interp.tag]})",
                hint="give each CPython version once",
                path=str(interp.prefix),
            )
        seen[interp.tag] = str(interp.prefix)
    interps.sort(key=lambda i: _python_order(i.tag))
    parts = [
        *_recipe(recipe_dir),
        ("release", release.encode()),
        ("arch", arch.encode()),
        *((f"python:{i.tag}", f"{i.version} {i.identity}".encode()) for i in interps),
    ]
    digest = _digest(parts)
    pythons_served = tuple(sorted((own, *(i.tag for i in interps)), key=_python_order))
    image = LocalImage(f"{LOCAL_REPO_PREFIX}{policy}_{arch}:{digest}", policy, arch, pythons_served)
    return _Plan(image, release, own, tuple(interps))


def local_image_tag(
    release: str = DEFAULT_RELEASE,
    arch: str = LOCAL_BASE_ARCH,
    pythons: Sequence[Path] = (),
    *,
    recipe_dir: Path | None = None,
) -> str:
    """The tag of the local image for these inputs (``localhost/wheelport-<policy>_<arch>:<hash>``).

    The hash covers the recipe files' names and contents (never their location), the
    release, the architecture and each copied interpreter's version and file list.
    """
    return _plan(release, arch, pythons, recipe_dir).image.tag


def local_images(engine: str, runner: Runner = subprocess_runner) -> list[LocalImage]:
    """The local wheelport images present in the engine, read from their labels.

    An image without wheelport's labels (such as the unlabelled local base image of earlier
    releases) is not listed, nor a derived builder image (which inherits its base's labels).
    """
    result = runner(
        [engine, "images", "--filter", f"label={LABEL_POLICY}", "--format", "{{.ID}}"],
        env=_engine_environ(),
    )
    if result.returncode != 0:
        raise BuildError(f"listing the {engine} images failed: {(result.last_line or 'no output')}")
    ids = list(dict.fromkeys(line.strip() for line in result.output.splitlines() if line.strip()))
    if not ids:
        return []
    result = runner([engine, "image", "inspect", *ids], env=_engine_environ())
    if result.returncode != 0:
        raise BuildError(
            f"inspecting the {engine} images failed: {(result.last_line or 'no output')}"
        )
    text = result.output
    try:
        entries = json.loads(text[text.index("[") :])
    except (ValueError, json.JSONDecodeError) as exc:
        raise BuildError(f"cannot read '{engine} image inspect' output: {exc}") from None
    found: list[LocalImage] = []
    for entry in entries:
        labels = entry.get("Labels") or (entry.get("Config") or {}).get("Labels") or {}
        policy, arch = labels.get(LABEL_POLICY), labels.get(LABEL_ARCH)
        if not policy or not arch:
            continue
        # derived builder images inherit their base's labels; they are not local images
        names = [n for n in entry.get("RepoTags") or [] if n and not n.startswith(BUILDER_REPO)]
        if not names:
            continue
        preferred = f"{LOCAL_REPO_PREFIX}{policy}_{arch}:{labels.get(LABEL_RECIPE, '')}"
        tag = preferred if preferred in names else names[0]
        pythons = tuple(p for p in labels.get(LABEL_PYTHONS, "").split(",") if p)
        current = labels.get(LABEL_RECIPE_FILES) == recipe_files_digest()
        found.append(LocalImage(tag, policy, arch, pythons, current))
    return sorted(found, key=lambda i: (i.policy, i.arch, i.tag))


def emulation_for(
    arch: str,
    *,
    binfmt_dir: Path = BINFMT_DIR,
    host_arch: str | None = None,
    register: bool = True,
    qemu_dir: Path = Path("/usr/bin"),
    runner: Runner = subprocess_runner,
) -> None:
    """Make sure this machine can run ``arch`` containers; raise :class:`BuildError` if not.

    A foreign architecture needs an enabled ``qemu-<arch>`` binfmt_misc handler (Debian's
    ``qemu-user-static``). When it is installed but not registered and ``register`` is true
    and we are root, it is registered (``binfmt_misc`` mounted, ``update-binfmts --enable``).
    Otherwise one line says what is missing and the command that adds it. ``binfmt_dir``
    and ``qemu_dir`` (where ``qemu-<arch>-static`` is) let tests use a fake system.
    """
    host = host_arch or os.uname().machine
    if arch == host:
        return
    handler = binfmt_dir / f"qemu-{arch}"
    if _handler_enabled(handler):
        return
    qemu = qemu_dir / f"qemu-{arch}-static"
    if register and os.geteuid() == 0 and qemu.exists():
        if not (binfmt_dir / "register").exists():
            runner(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt_dir)])
        conf = Path(f"/usr/lib/binfmt.d/qemu-{arch}.conf")  # systemd-binfmt's copy
        if shutil.which("update-binfmts"):
            runner(["update-binfmts", "--enable", f"qemu-{arch}"])
        elif conf.is_file() and (binfmt_dir / "register").exists():
            with contextlib.suppress(OSError):
                (binfmt_dir / "register").write_text(conf.read_text(encoding="utf-8").strip())
        if _handler_enabled(handler):
            return
    where = f"cannot run {arch} containers on this {host} machine"
    if not (binfmt_dir / "register").exists() and qemu.exists():
        raise BuildError(
            f"{where}: binfmt_misc is not mounted at {binfmt_dir}",
            hint=f"as root: mount -t binfmt_misc binfmt_misc {binfmt_dir} && "
            f"update-binfmts --enable qemu-{arch}",
        )
    if handler.exists() or qemu.exists():
        raise BuildError(
            f"{where}: the qemu-{arch} binfmt_misc handler is not enabled",
            hint=f"as root: update-binfmts --enable qemu-{arch} (or {EMULATION_PACKAGES})",
        )
    raise BuildError(
        f"{where}: no qemu-{arch} binfmt_misc handler in {binfmt_dir}",
        hint=f"as root: {EMULATION_PACKAGES}",
    )


def ensure_local_image(
    engine: str,
    *,
    release: str = DEFAULT_RELEASE,
    arch: str = LOCAL_BASE_ARCH,
    pythons: Sequence[Path] = (),
    log_dir: Path | None = None,
    extra_tag: str | None = None,
    runner: Runner = subprocess_runner,
    work_dir: Path | None = None,
) -> LocalImage:
    """Build the local image for ``release``/``arch`` with ``pythons`` copied in, when missing.

    The image has the release's own CPython at ``/opt/python/cpXY-cpXY`` plus each CPython
    prefix of ``pythons`` (checked: its arch and glibc needs must fit; :class:`UsageError`
    otherwise). It is tagged by its recipe hash (:func:`local_image_tag`), so a second call
    returns at once; concurrent callers wait for the first. The image's labels record what
    it serves (see :func:`local_images`). ``extra_tag`` also names the image.
    """
    plan = _plan(release, arch, pythons)
    tag = plan.image.tag
    if not image_exists(engine, tag, runner):
        with _image_lock(tag):
            if not image_exists(engine, tag, runner):
                _build_local_image(engine, plan, runner=runner, log_dir=log_dir, work_dir=work_dir)
    if extra_tag:
        result = runner([engine, "tag", tag, extra_tag], env=_engine_environ())
        if result.returncode != 0:
            raise BuildError(
                f"tagging {tag} as {extra_tag} failed: {(result.last_line or 'no output')}",
                hint="give a valid image name such as localhost/manylinux:local",
            )
    return plan.image


def ensure_local_base_image(
    engine: str = "podman",
    *,
    runner: Runner = subprocess_runner,
    log_dir: Path | None = None,
    work_dir: Path | None = None,
    extra_tag: str | None = None,
) -> str:
    """Build the default local image (bookworm x86_64, its own CPython 3.11) when missing.

    Returns its tag, :func:`local_base_tag`. See :func:`ensure_local_image`.
    """
    image = ensure_local_image(
        engine, log_dir=log_dir, extra_tag=extra_tag, runner=runner, work_dir=work_dir
    )
    return image.tag


def _build_local_image(
    engine: str,
    plan: _Plan,
    *,
    runner: Runner,
    log_dir: Path | None,
    work_dir: Path | None,
) -> None:
    image = plan.image
    tag = image.tag
    for tool in ("debootstrap", "chroot", "mount"):
        if shutil.which(tool) is None:
            raise BuildError(
                f"cannot build the local image {tag}: {tool} is not installed",
                hint="run .ci/setup-containers.sh (apt-get install debootstrap podman runc)",
            )
    emulation_for(image.arch, runner=runner)
    logs = log_dir or Path(tempfile.gettempdir())
    log = logs / f"wheelport-local-{plan.release}-{image.arch}.{tag.rsplit(':', 1)[1]}.log"
    oci_arch = DEBIAN_ARCHES[image.arch]
    with tempfile.TemporaryDirectory(prefix="wheelport-base-", dir=work_dir) as tmp:
        rootfs = Path(tmp) / "rootfs"
        tarball = Path(tmp) / "rootfs.tar"
        # the script reads local-base.packages/.requirements from its own directory
        recipe = resources.copy_to(Path(tmp) / "recipe", LOCAL_BASE_RECIPE)
        env = bootstrap.scrubbed_env()
        env.update(
            WHEELPORT_SUITE=plan.release,
            WHEELPORT_ARCH=oci_arch,
            WHEELPORT_OWN_TAG=f"{plan.own}-{plan.own}",
        )
        pairs = [f"{i.directory}={i.prefix}" for i in plan.interpreters]
        result = runner(
            ["bash", str(recipe / LOCAL_BASE_RECIPE[0]), str(rootfs), str(tarball), *pairs],
            env=env,
            log=log,
        )
        if result.returncode != 0:
            raise BuildError(
                f"building the local image {tag} failed: {(result.last_line or 'no output')} (log: {log})",
                path=str(log),
            )
        shutil.rmtree(rootfs, ignore_errors=True)
        labels = {
            LABEL_POLICY: image.policy,
            LABEL_ARCH: image.arch,
            LABEL_PYTHONS: ",".join(image.pythons),
            LABEL_RECIPE: tag.rsplit(":", 1)[1],
            LABEL_RECIPE_FILES: recipe_files_digest(),
        }
        argv = [engine, "import", "--os", "linux", "--arch", oci_arch]
        if engine == "docker":
            argv = [engine, "import", "--platform", f"linux/{oci_arch}"]
        changes = [*_IMPORT_CHANGES, *(f"LABEL {k}={v}" for k, v in labels.items())]
        for change in changes:
            argv += ["--change", change]
        result = runner([*argv, str(tarball), tag], env=_engine_environ())
        if result.returncode != 0:
            raise BuildError(
                f"importing the local image {tag} failed: {(result.last_line or 'no output')}"
            )


def _release(release: str) -> tuple[str, tuple[int, int], str]:
    if release not in RELEASES:
        raise UsageError(
            f"unknown Debian release {release!r} for a local image",
            hint=f"use one of: {', '.join(RELEASES)}",
        )
    return RELEASES[release]


def _python_order(tag: str) -> tuple[int, int, bool]:
    digits = tag.removeprefix("cp").rstrip("t")
    return (int(digits[0]), int(digits[1:] or 0), tag.endswith("t"))


def _tree_identity(root: Path) -> str:
    """A hash of a prefix's file list and sizes (bytecode caches aside, which come and go)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".pyc"):
                continue
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            size = os.readlink(path) if path.is_symlink() else str(path.lstat().st_size)
            h.update(f"{rel}\0{size}\n".encode())
    return h.hexdigest()[:16]


def _handler_enabled(handler: Path) -> bool:
    try:
        return handler.read_text(encoding="utf-8").splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def builder_containerfile(base_image: str, packages: Sequence[str], template: str) -> str:
    """The derived image's Containerfile: ``template`` filled with base and packages."""
    pkgs = " ".join(packages)
    install = (
        "set -e; "
        "if command -v apt-get >/dev/null; then export DEBIAN_FRONTEND=noninteractive;"
        f" apt-get update; apt-get install -y --no-install-recommends {pkgs};"
        " rm -rf /var/lib/apt/lists/*;"
        f" elif command -v dnf >/dev/null; then dnf install -y {pkgs}; dnf clean all;"
        f" elif command -v yum >/dev/null; then yum install -y {pkgs}; yum clean all;"
        f" elif command -v apk >/dev/null; then apk add --no-cache {pkgs};"
        " else echo 'no known package manager in the base image' >&2; exit 1; fi"
    )
    return (
        template.replace("@BASE_IMAGE@", base_image)
        .replace("@PACKAGES@", pkgs)
        .replace("@INSTALL@", install)
    )


def builder_tag(base_image: str, packages: Sequence[str], template: str) -> str:
    """Tag of the derived image: a hash of base image, packages and template."""
    h = hashlib.sha256()
    for part in (base_image, "\0".join(packages), template):
        h.update(part.encode())
        h.update(b"\n\0")
    return f"{BUILDER_REPO}:{h.hexdigest()[:16]}"


def ensure_builder_image(
    base_image: str,
    system_packages: Sequence[str],
    engine: str = "podman",
    *,
    runner: Runner = subprocess_runner,
    log_dir: Path | None = None,
) -> str:
    """A derived image of ``base_image`` with ``system_packages`` installed; return its tag.

    Built once with network (image build time) and reused; with no packages, the base image
    itself is returned.
    """
    packages = sorted(set(system_packages))
    if not packages:
        return base_image
    bad = [p for p in packages if not _PACKAGE_RE.match(p)]
    if bad:
        raise BuildError(
            f"invalid system package name(s) for the builder image: {', '.join(bad)}",
            hint="give distribution package names such as libxml2-dev",
        )
    template = builder_template()
    tag = builder_tag(base_image, packages, template)
    if image_exists(engine, tag, runner):
        return tag
    with _image_lock(tag):
        if image_exists(engine, tag, runner):
            return tag
        logs = log_dir or Path(tempfile.gettempdir())
        log = logs / f"wheelport-builder.{tag.rsplit(':', 1)[1]}.log"
        with tempfile.TemporaryDirectory(prefix="wheelport-builder-") as tmp:
            containerfile = Path(tmp) / "Containerfile"
            containerfile.write_text(
                builder_containerfile(base_image, packages, template), encoding="utf-8"
            )
            argv = [engine, "build", "--network=host", "-t", tag, "-f", str(containerfile), tmp]
            if engine == "podman":
                argv.insert(2, "--pull=never" if is_local_base(base_image) else "--pull=missing")
            result = runner(argv, env=_engine_environ(), log=log)
        if result.returncode != 0:
            raise BuildError(
                f"building the builder image {tag} from {base_image} with "
                f"{' '.join(packages)} failed (log: {log})",
                path=str(log),
            )
    return tag


def _recipe(recipe_dir: Path | None) -> list[tuple[str, bytes]]:
    """(name, contents) of each local image recipe file: package data, or ``recipe_dir``."""
    if recipe_dir is None:
        return [(name, resources.read_bytes(name)) for name in LOCAL_BASE_RECIPE]
    out = []
    for name in LOCAL_BASE_RECIPE:
        path = recipe_dir / name
        if not path.is_file():
            raise BuildError(f"image recipe file {path} is missing", path=str(path))
        out.append((name, path.read_bytes()))
    return out


@functools.lru_cache(maxsize=1)
def recipe_files_digest() -> str:
    """The digest of this wheelport's image recipe files (the ``io.wheelport.recipe-files``
    label of the images it builds)."""
    return _digest(_recipe(None))


def _digest(parts: Sequence[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in parts:
        h.update(name.encode() + b"\0")
        h.update(data)
        h.update(b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _image_lock(tag: str) -> Iterator[None]:
    """An exclusive lock per image tag, so concurrent callers build an image once."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", tag)
    path = Path(tempfile.gettempdir()) / f"wheelport-image-{name}.lock"
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _engine_environ() -> dict[str, str]:
    env = dict(os.environ)
    env.update(engine_env())
    return env
