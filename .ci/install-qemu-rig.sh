#!/usr/bin/env bash
# Install what the real-QEMU integration tests need (tests/integration/), idempotently.
#
#   - qemu-system-x86 and busybox-static from Debian, where missing;
#   - the Debian cloud kernel package, downloaded with `apt-get download` and unpacked with
#     `dpkg -x` into the rig cache (no kernel is installed on the host): the tests take its
#     vmlinuz and the virtio modules from there.
#
# The cache is $BLKREPLAY_RIG_DIR, else $HOME/.cache/blkreplay-rig; the kernel goes to
# <cache>/kernel. tests/integration/qemu_rig.py looks in the same place. Meant for root on
# Debian 12 (CI); prints every step it takes and what it skipped.
set -euo pipefail

RIG_DIR="${BLKREPLAY_RIG_DIR:-${HOME:-/root}/.cache/blkreplay-rig}"
KERNEL_DIR="$RIG_DIR/kernel"
META_PKG=linux-image-cloud-amd64

say() { echo "install-qemu-rig: $*"; }

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        $SUDO apt-get update -qq
        apt_updated=1
    fi
}

# apt lists present at all? (a fresh container has none; apt-cache / download need them)
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    apt_update_once
fi

missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
# the static build: the guest's initramfs has no libc (Debian's plain `busybox` conflicts with it)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
    || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
        apt_update_once
        $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
else
    say "qemu-system-x86 and busybox-static already installed"
fi

# The versioned kernel image package the meta package depends on, e.g.
# linux-image-6.1.0-28-cloud-amd64.
resolve_kernel_pkg() {
    apt-cache depends "$META_PKG" 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
kernel_pkg="$(resolve_kernel_pkg || true)"
if [ -z "$kernel_pkg" ]; then
    apt_update_once
    kernel_pkg="$(resolve_kernel_pkg || true)"
fi
if [ -z "$kernel_pkg" ]; then
    say "cannot resolve the kernel package from $META_PKG's Depends" >&2
    exit 1
fi

stamp="$KERNEL_DIR/.package"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$kernel_pkg" ] \
    && compgen -G "$KERNEL_DIR/boot/vmlinuz-*" >/dev/null; then
    say "kernel $kernel_pkg already unpacked in $KERNEL_DIR"
else
    say "downloading $kernel_pkg"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download -qq "$kernel_pkg" 2>/dev/null) || {
        apt_update_once
        (cd "$tmp" && apt-get download -qq "$kernel_pkg")
    }
    deb="$(ls "$tmp"/*.deb)"
    say "unpacking $(basename "$deb") into $KERNEL_DIR"
    rm -rf "$KERNEL_DIR.new"
    mkdir -p "$KERNEL_DIR.new"
    dpkg -x "$deb" "$KERNEL_DIR.new"
    echo "$kernel_pkg" >"$KERNEL_DIR.new/.package"
    rm -rf "$KERNEL_DIR"
    mv "$KERNEL_DIR.new" "$KERNEL_DIR"
fi

say "qemu: $(qemu-system-x86_64 --version | head -n1)"
say "busybox: $(/bin/busybox 2>&1 | head -n1)"
say "kernel: $(ls "$KERNEL_DIR"/boot/vmlinuz-*)"
