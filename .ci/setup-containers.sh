#!/usr/bin/env bash
# Install what wheelport's container builds need on a Debian host: podman (run with runc,
# see src/wheelport/resources/containers.conf, the package data wheelport itself points
# CONTAINERS_CONF at), runc, debootstrap (for `wheelport image build-local`), uidmap and
# fuse-overlayfs, and qemu-user-static + binfmt-support (aarch64 images run under emulation).
# Idempotent: installs only what is missing.
set -euo pipefail

need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
command -v fuse-overlayfs >/dev/null 2>&1 || need+=(fuse-overlayfs)
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
command -v update-binfmts >/dev/null 2>&1 || need+=(binfmt-support)
command -v nginx >/dev/null 2>&1 || need+=(nginx)  # the mirror tests serve a published tree

if ((${#need[@]})); then
    echo "setup-containers: installing ${need[*]}"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CONTAINERS_CONF="$here/src/wheelport/resources/containers.conf"
podman --version
runc --version | head -n 1
