"""Which image builds a Linux target's wheels: its policy's, chosen among overrides, local
images and cibuildwheel's pinned ones.

- :func:`choose_image`: ``[tool.wheelport] images`` > a present local image serving the target
  (:func:`serving_local_images`) > cibuildwheel's pinned image for the policy
  (:func:`pinned_images`, read from cibuildwheel's resources); ``manylinux_2_36`` (x86_64) is the
  local base image. No image is one line naming the missing piece and the command that adds it
  (:func:`image_hint`, :func:`build_local_command`).
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files

from wheelport.builders.images.interpreters import Interpreter
from wheelport.builders.images.recipe import (
    BUILDER_REPO,
    LOCAL_BASE_ARCH,
    LOCAL_BASE_POLICY,
    LOCAL_BASE_PYTHONS,
    RELEASES,
    LocalImage,
    local_base_tag,
)
from wheelport.errors import BuildError
from wheelport.targets import Target


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
