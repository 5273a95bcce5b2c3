"""Builder images: which image serves a target's policy, and the images wheelport builds.

- :mod:`~wheelport.builders.images.choice`: the image that builds a target (an override, a
  local image serving it, or cibuildwheel's pinned image for its policy);
- :mod:`~wheelport.builders.images.recipe`: the local images built from a Debian release's own
  packages, and the derived builder images with a project's system packages;
- :mod:`~wheelport.builders.images.interpreters`: what a CPython prefix needs (ELF, glibc);
- :mod:`~wheelport.builders.images.emulation`: qemu binfmt_misc for foreign architectures;
- :mod:`~wheelport.builders.images.engine`: the engine's image calls (podman or docker).

The names the builders, the CLI and the tests reach through ``images.<name>`` are these.
"""

from wheelport.builders.images.choice import (
    ImageChoice,
    choose_image,
    image_hint,
    pinned_images,
    policy_glibc,
    policy_image,
)
from wheelport.builders.images.emulation import emulation_for
from wheelport.builders.images.engine import image_exists, image_id
from wheelport.builders.images.interpreters import Interpreter, inspect_interpreter
from wheelport.builders.images.recipe import (
    LOCAL_BASE_RECIPE,
    RELEASES,
    LocalImage,
    builder_containerfile,
    builder_tag,
    builder_template,
    check_interpreter,
    ensure_builder_image,
    ensure_local_base_image,
    ensure_local_image,
    is_local_base,
    local_base_tag,
    local_image_tag,
    local_images,
    recipe_files_digest,
)
from wheelport.errors import BuildError

__all__ = [
    "LOCAL_BASE_RECIPE",
    "RELEASES",
    "BuildError",
    "ImageChoice",
    "Interpreter",
    "LocalImage",
    "builder_containerfile",
    "builder_tag",
    "builder_template",
    "check_interpreter",
    "choose_image",
    "emulation_for",
    "ensure_builder_image",
    "ensure_local_base_image",
    "ensure_local_image",
    "image_exists",
    "image_hint",
    "image_id",
    "inspect_interpreter",
    "is_local_base",
    "local_base_tag",
    "local_image_tag",
    "local_images",
    "pinned_images",
    "policy_glibc",
    "policy_image",
    "recipe_files_digest",
]
