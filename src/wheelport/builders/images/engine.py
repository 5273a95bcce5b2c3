"""The container engine's image calls (podman or docker): the environment it runs in, whether
an image is present, and its content ID."""

from __future__ import annotations

import os

from wheelport import resources
from wheelport.process import Runner, subprocess_runner


def engine_env() -> dict[str, str]:
    """Environment additions for running the engine: ``CONTAINERS_CONF`` for podman.

    podman here needs runc (crun fails on hybrid cgroups) and explicit ulimits; both are in
    ``containers.conf`` of the package data (:mod:`wheelport.resources`). docker ignores the
    variable.
    """
    return {"CONTAINERS_CONF": str(resources.path(resources.CONTAINERS_CONF))}


def engine_environ() -> dict[str, str]:
    """This process's environment with :func:`engine_env`, for an engine subprocess."""
    env = dict(os.environ)
    env.update(engine_env())
    return env


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
    return runner(argv, env=engine_environ()).returncode == 0


def image_id(engine: str, image: str, runner: Runner = subprocess_runner) -> str | None:
    """The engine's content ID of ``image`` (``sha256:…``), or None when it is not present.

    For the build cache: a wheel built from the same sdist for the same target by an image
    with the same ID need not be built again.
    """
    result = runner(
        [engine, "image", "inspect", "--format", "{{.Id}}", image], env=engine_environ()
    )
    if result.returncode != 0:
        return None
    value = result.last_line
    if not value:
        return None
    return value if value.startswith("sha256:") else f"sha256:{value}"
