"""The images wheelport builds, and their recipes.

- :func:`ensure_local_image`: a manylinux-compatible image built from a Debian release's own
  packages (``local-base.sh``: debootstrap, then ``podman import``) for x86_64 or aarch64 (under
  qemu, :func:`~wheelport.builders.images.emulation.emulation_for`), with the release's CPython
  plus any CPython prefixes whose glibc needs fit (:func:`check_interpreter`), tagged by a hash
  of its recipe and inputs and labelled with what it serves (:func:`local_images` reads the
  labels back), for machines that reach no container registry. :func:`ensure_local_base_image`
  is the default one: bookworm x86_64, CPython 3.11.
- :func:`ensure_builder_image`: a derived image with the system packages a project needs
  (``builder.Containerfile.in``), tagged by a hash of base + packages.

The recipes and templates are package data of :mod:`wheelport.resources`, so a regular install
builds the same images (with the same tags) as a checkout.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelport import bootstrap, resources
from wheelport.builders.images.emulation import emulation_for
from wheelport.builders.images.engine import engine_environ, image_exists
from wheelport.builders.images.interpreters import Interpreter, inspect_interpreter
from wheelport.errors import BuildError, UsageError
from wheelport.process import Runner, subprocess_runner

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


def local_base_tag(recipe_dir: Path | None = None) -> str:
    """The default local image's tag: ``localhost/wheelport-manylinux_2_36_x86_64:<hash>``.

    Bookworm, x86_64, its own CPython 3.11 only (:func:`local_image_tag` with the defaults).
    The hash covers the names and contents of the recipe files (never their location), so an
    editable and a regular install agree. ``recipe_dir`` hashes another copy of the recipe
    instead of the package data.
    """
    return local_image_tag(recipe_dir=recipe_dir)


def is_local_base(image: str) -> bool:
    """Whether ``image`` is the local base image (built here, never pulled)."""
    return image.startswith(LOCAL_BASE_REPO + ":")


def is_local_image(image: str) -> bool:
    """Whether ``image`` is one of the local images :func:`ensure_local_image` builds."""
    return image.startswith(LOCAL_REPO_PREFIX) and not image.startswith(BUILDER_REPO + ":")


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
        env=engine_environ(),
    )
    if result.returncode != 0:
        raise BuildError(f"listing the {engine} images failed: {(result.last_line or 'no output')}")
    ids = list(dict.fromkeys(line.strip() for line in result.output.splitlines() if line.strip()))
    if not ids:
        return []
    result = runner([engine, "image", "inspect", *ids], env=engine_environ())
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
        result = runner([engine, "tag", tag, extra_tag], env=engine_environ())
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
        result = runner([*argv, str(tarball), tag], env=engine_environ())
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


def builder_template() -> str:
    """The derived builder image's Containerfile template (``builder.Containerfile.in``)."""
    return resources.read_text(BUILDER_TEMPLATE)


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
            result = runner(argv, env=engine_environ(), log=log)
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
