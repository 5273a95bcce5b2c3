"""Builder images: which image serves a target's policy, and the images wheelport builds.

- :func:`policy_image`: cibuildwheel's own pinned images for manylinux2014,
  manylinux_2_28, manylinux_2_34, musllinux_1_2 (read from cibuildwheel's resources),
  overridable per policy; ``manylinux_2_36`` (x86_64) is the local base image.
- :func:`ensure_local_base_image`: a manylinux-compatible base built from Debian's own
  packages (``local-base.sh``: debootstrap, then ``podman import``), tagged by a hash of
  its recipe, for machines that reach no container registry.
- :func:`ensure_builder_image`: a derived image with the system packages a project needs
  (``builder.Containerfile.in``), tagged by a hash of base + packages.

The recipes and templates are package data of :mod:`wheelport.resources`, so a regular
install builds the same images (with the same tags) as a checkout.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from importlib.resources import files
from pathlib import Path

from wheelport import bootstrap, resources
from wheelport.build.container import Runner, engine_env, subprocess_runner
from wheelport.errors import BuildError
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
    """The local base image's tag: ``localhost/wheelport-manylinux_2_36_x86_64:<recipe hash>``.

    The hash covers the names and contents of the recipe files (never their location), so an
    editable and a regular install agree. ``recipe_dir`` hashes another copy of the recipe
    instead of the package data.
    """
    return f"{LOCAL_BASE_REPO}:{_digest(_recipe(recipe_dir))}"


def builder_template() -> str:
    """The derived builder image's Containerfile template (``builder.Containerfile.in``)."""
    return resources.read_text(BUILDER_TEMPLATE)


def policy_image(
    target: Target,
    overrides: Mapping[str, str] | None = None,
    *,
    pinned: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """The image that builds wheels for ``target``'s policy.

    ``overrides`` maps a policy (``manylinux_2_28``) or a policy and arch
    (``manylinux_2_28_aarch64``) to an image and wins over the defaults: cibuildwheel's pinned
    images, and the local base image for ``manylinux_2_36`` x86_64. A policy with no image
    raises :class:`BuildError` saying which.
    """
    policy = policy_name(target)
    overrides = overrides or {}
    for key in (f"{policy}_{target.arch}", policy):
        if key in overrides:
            return overrides[key]
    if policy == LOCAL_BASE_POLICY and target.arch == LOCAL_BASE_ARCH:
        if target.python_version not in LOCAL_BASE_PYTHONS or target.free_threaded:
            raise BuildError(
                f"the local {LOCAL_BASE_POLICY} image carries only CPython 3.11, not "
                f"{target.identifier}",
                hint=f"use cp311-{LOCAL_BASE_POLICY}_{LOCAL_BASE_ARCH} or configure an image "
                f"for {policy}",
                target=target.identifier,
            )
        return local_base_tag()
    table = pinned if pinned is not None else pinned_images()
    image = table.get(target.arch, {}).get(policy)
    if image is None:
        known = sorted(table.get(target.arch, {}))
        if target.arch == LOCAL_BASE_ARCH:
            known.append(LOCAL_BASE_POLICY)
        raise BuildError(
            f"no container image for policy {policy} ({target.arch}) to build {target.identifier}",
            hint=f"configure an image for {policy}, or use one of: {', '.join(known) or 'none'}",
            target=target.identifier,
        )
    return image


def is_local_base(image: str) -> bool:
    """Whether ``image`` is the local base image (built here, never pulled)."""
    return image.startswith(LOCAL_BASE_REPO + ":")


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
    value = result.output.strip().splitlines()[-1].strip() if result.output.strip() else ""
    if not value:
        return None
    return value if value.startswith("sha256:") else f"sha256:{value}"


def ensure_local_base_image(
    engine: str = "podman",
    *,
    runner: Runner = subprocess_runner,
    log_dir: Path | None = None,
    work_dir: Path | None = None,
    extra_tag: str | None = None,
) -> str:
    """Build the local manylinux_2_36 base image when missing; return its tag.

    Runs ``local-base.sh`` (debootstrap + Python tools; needs root and network), copied with
    its sibling recipe files out of the package data into a work directory, then imports the
    root filesystem with linux/amd64 metadata. Tagged by the recipe's hash, so a second call
    returns at once. Concurrent callers wait for the first. ``extra_tag`` also names the
    image (``wheelport image build-local --tag NAME``).
    """
    tag = _ensure_local_base(engine, runner=runner, log_dir=log_dir, work_dir=work_dir)
    if extra_tag:
        result = runner([engine, "tag", tag, extra_tag], env=_engine_environ())
        if result.returncode != 0:
            raise BuildError(
                f"tagging {tag} as {extra_tag} failed: {_last_line(result.output)}",
                hint="give a valid image name such as localhost/manylinux:local",
            )
    return tag


def _ensure_local_base(
    engine: str,
    *,
    runner: Runner,
    log_dir: Path | None,
    work_dir: Path | None,
) -> str:
    tag = local_base_tag()
    if image_exists(engine, tag, runner):
        return tag
    with _image_lock(tag):
        if image_exists(engine, tag, runner):
            return tag
        for tool in ("debootstrap", "chroot", "mount"):
            if shutil.which(tool) is None:
                raise BuildError(
                    f"cannot build the local base image {tag}: {tool} is not installed",
                    hint="run .ci/setup-containers.sh (apt-get install debootstrap podman runc)",
                )
        logs = log_dir or Path(tempfile.gettempdir())
        log = logs / f"wheelport-local-base.{tag.rsplit(':', 1)[1]}.log"
        with tempfile.TemporaryDirectory(prefix="wheelport-base-", dir=work_dir) as tmp:
            rootfs = Path(tmp) / "rootfs"
            tarball = Path(tmp) / "rootfs.tar"
            # the script reads local-base.packages/.requirements from its own directory
            recipe = resources.copy_to(Path(tmp) / "recipe", LOCAL_BASE_RECIPE)
            env = bootstrap.scrubbed_env()
            result = runner(
                ["bash", str(recipe / LOCAL_BASE_RECIPE[0]), str(rootfs), str(tarball)],
                env=env,
                log=log,
            )
            if result.returncode != 0:
                raise BuildError(
                    f"building the local base image {tag} failed (log: {log})", path=str(log)
                )
            shutil.rmtree(rootfs, ignore_errors=True)
            argv = [engine, "import", "--os", "linux", "--arch", "amd64"]
            if engine == "docker":
                argv = [engine, "import", "--platform", "linux/amd64"]
            for change in _IMPORT_CHANGES:
                argv += ["--change", change]
            result = runner([*argv, str(tarball), tag], env=_engine_environ())
            if result.returncode != 0:
                raise BuildError(
                    f"importing the local base image {tag} failed: {_last_line(result.output)}"
                )
    return tag


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
    """(name, contents) of each local base recipe file: package data, or ``recipe_dir``."""
    if recipe_dir is None:
        return [(name, resources.read_bytes(name)) for name in LOCAL_BASE_RECIPE]
    out = []
    for name in LOCAL_BASE_RECIPE:
        path = recipe_dir / name
        if not path.is_file():
            raise BuildError(f"image recipe file {path} is missing", path=str(path))
        out.append((name, path.read_bytes()))
    return out


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


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
