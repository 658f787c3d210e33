#!/usr/bin/env bash
# Install what the real-QEMU integration tests need (tests/integration/), idempotently.
#
#   - qemu-system-x86 and busybox-static from Debian, where missing;
#   - the Debian cloud kernel package, downloaded with `apt-get download` and unpacked with
#     `dpkg -x` into the rig cache (no kernel is installed on the host): the tests take its
#     vmlinuz and the virtio modules from there;
#   - QEMU 10.0 from bookworm-backports BESIDE the system's 7.2, never replacing it: a private
#     apt configuration (its own sources list with bookworm-backports, its own lists and cache
#     under <cache>/apt-backports; the system's apt sources and state are not touched) resolves
#     what `apt-get install -t bookworm-backports qemu-system-x86` would upgrade or add
#     (qemu-system-x86, -common, -data and seabios, plus any library the host lacks),
#     `apt-get download`s those .debs and ipxe-qemu, and `dpkg -x` unpacks them into
#     <cache>/qemu-10.0. QEMU refuses modules of another build ("Only modules from the same
#     build can be loaded") and its compiled-in module directory holds the system 7.2's, so the
#     rig runs 10.0 with QEMU_MODULE_DIR=<prefix>/usr/lib/x86_64-linux-gnu/qemu, its own
#     firmware with -L (<prefix>/usr/share/qemu, .../seabios, /usr/lib/ipxe/qemu), and
#     LD_LIBRARY_PATH to the prefix's libraries only if some were unpacked. A smoke test starts
#     it headless (`-M none` and `-M q35 -accel tcg`) before the prefix is kept.
#
# The cache is $BLKREPLAY_RIG_DIR, else $HOME/.cache/blkreplay-rig; the kernel goes to
# <cache>/kernel, QEMU 10.0 to <cache>/qemu-10.0 (its `.packages` lists the unpacked
# package=version pairs). tests/integration/qemu_rig.py looks in the same places. Meant for
# root on Debian 12 (CI); prints every step it takes and what it skipped. A cached run makes no
# network access unless the backports version moved (then it downloads the new one).
set -euo pipefail

RIG_DIR="${BLKREPLAY_RIG_DIR:-${HOME:-/root}/.cache/blkreplay-rig}"
KERNEL_DIR="$RIG_DIR/kernel"
META_PKG=linux-image-cloud-amd64
Q10_DIR="$RIG_DIR/qemu-10.0"
Q10_APT="$RIG_DIR/apt-backports"
Q10_SERIES="1:10.0."   # the backports QEMU must be a 10.0.x (the tests name it 10.0)
BACKPORTS_URI="${BLKREPLAY_BACKPORTS_URI:-http://deb.debian.org/debian}"

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

# ---- QEMU 10.0 from bookworm-backports, unpacked into a private prefix -----------------------

# apt with a private sources list (the system's sources plus bookworm-backports), lists and
# cache; it reads the system's dpkg status (to know what is installed) and writes nothing else.
apt_bpo_opts=(
    -o "Dir::Etc::SourceList=$Q10_APT/sources.list"
    -o "Dir::Etc::SourceParts=/etc/apt/sources.list.d"
    -o "Dir::State::Lists=$Q10_APT/lists"
    -o "Dir::Cache=$Q10_APT/cache"
    -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
    -o "APT::Sandbox::User=root"
    -o "Debug::NoLocking=1"
)
mkdir -p "$Q10_APT/lists/partial" "$Q10_APT/cache/archives/partial"
{
    [ -f /etc/apt/sources.list ] && grep -v '^[[:space:]]*#' /etc/apt/sources.list || true
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $BACKPORTS_URI bookworm-backports main"
} >"$Q10_APT/sources.list.new"
if ! cmp -s "$Q10_APT/sources.list.new" "$Q10_APT/sources.list" 2>/dev/null; then
    mv "$Q10_APT/sources.list.new" "$Q10_APT/sources.list"
    rm -f "$Q10_APT"/lists/*_Packages*   # other sources: fetch the lists again
else
    rm -f "$Q10_APT/sources.list.new"
fi
bpo_updated=0
bpo_update_once() {
    if [ "$bpo_updated" -eq 0 ]; then
        say "apt-get update (private lists with bookworm-backports, in $Q10_APT)"
        apt-get "${apt_bpo_opts[@]}" update -qq
        bpo_updated=1
    fi
}
compgen -G "$Q10_APT/lists/*bookworm-backports*_Packages*" >/dev/null || bpo_update_once

# package=version pairs `apt-get install -t bookworm-backports qemu-system-x86` would install or
# upgrade (simulated: nothing is installed), plus ipxe-qemu (the NIC ROMs; same in bookworm)
resolve_q10_pkgs() {
    {
        apt-get "${apt_bpo_opts[@]}" -s install -t bookworm-backports --no-install-recommends \
            qemu-system-x86 2>/dev/null \
            | awk '/^Inst / { v = ($3 ~ /^\[/) ? $4 : $3; gsub(/[()]/, "", v); print $2 "=" v }'
        apt-cache "${apt_bpo_opts[@]}" policy ipxe-qemu 2>/dev/null \
            | awk '/Candidate:/ && $2 != "(none)" { print "ipxe-qemu=" $2 }'
    } | sort
}
q10_pkgs="$(resolve_q10_pkgs)"
if ! grep -q "^qemu-system-x86=$Q10_SERIES" <<<"$q10_pkgs"; then
    bpo_update_once
    q10_pkgs="$(resolve_q10_pkgs)"
fi
if ! grep -q "^qemu-system-x86=$Q10_SERIES" <<<"$q10_pkgs"; then
    say "bookworm-backports offers no qemu-system-x86 ${Q10_SERIES}x; resolved: ${q10_pkgs:-nothing}" >&2
    exit 1
fi

# the unpacked QEMU 10.0 as the rig runs it (own modules, own firmware, own libraries if any):
# sets the array Q10_CMD
q10_cmd() {  # q10_cmd PREFIX
    local prefix="$1" libs="" d
    for d in "$prefix/lib/x86_64-linux-gnu" "$prefix/usr/lib/x86_64-linux-gnu"; do
        if compgen -G "$d/*.so*" >/dev/null; then libs="${libs:+$libs:}$d"; fi
    done
    Q10_CMD=(env "QEMU_MODULE_DIR=$prefix/usr/lib/x86_64-linux-gnu/qemu")
    [ -n "$libs" ] && Q10_CMD+=("LD_LIBRARY_PATH=$libs")
    Q10_CMD+=("$prefix/usr/bin/qemu-system-x86_64"
        -L "$prefix/usr/share/qemu" -L "$prefix/usr/share/seabios" -L "$prefix/usr/lib/ipxe/qemu")
}
q10_smoke() {  # q10_smoke PREFIX : every library found, starts headless, answers QMP, quits
    local prefix="$1" machine out lddout
    lddout="$(LD_LIBRARY_PATH="$prefix/lib/x86_64-linux-gnu:$prefix/usr/lib/x86_64-linux-gnu" \
        ldd "$prefix/usr/bin/qemu-system-x86_64")"
    if grep -q 'not found' <<<"$lddout"; then
        say "QEMU 10.0 lacks shared libraries: $(grep 'not found' <<<"$lddout" | tr -s ' \t\n' ' ')" >&2
        return 1
    fi
    q10_cmd "$prefix"
    for machine in none q35; do
        out="$(printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"query-version"}' \
                '{"execute":"quit"}' \
            | timeout 60 "${Q10_CMD[@]}" -M "$machine" -accel tcg -nodefaults -no-user-config \
                -display none -qmp stdio 2>&1)" || {
            say "QEMU 10.0 failed to start with -M $machine: $out" >&2
            return 1
        }
        if ! grep -q '"minor": 0, "major": 10' <<<"$out"; then
            say "QEMU 10.0 smoke test (-M $machine): no 10.0 in query-version: $out" >&2
            return 1
        fi
        if grep -v '^{' <<<"$out" | grep -q .; then
            say "QEMU 10.0 smoke test (-M $machine) printed: $(grep -v '^{' <<<"$out")" >&2
            return 1
        fi
        say "QEMU 10.0 starts headless with -M $machine -accel tcg and answers QMP"
    done
}

q10_stamp="$Q10_DIR/.packages"
if [ -f "$q10_stamp" ] && [ "$(cat "$q10_stamp")" = "$q10_pkgs" ] \
    && [ -x "$Q10_DIR/usr/bin/qemu-system-x86_64" ]; then
    say "QEMU 10.0 ($(tr '\n' ' ' <"$q10_stamp")) already unpacked in $Q10_DIR"
else
    q10_tmp="$(mktemp -d)"
    trap 'rm -rf "$q10_tmp" ${tmp:+"$tmp"}' EXIT
    say "downloading from bookworm-backports: $(tr '\n' ' ' <<<"$q10_pkgs")"
    # shellcheck disable=SC2086  # one word per package=version
    (cd "$q10_tmp" && apt-get "${apt_bpo_opts[@]}" download -qq $q10_pkgs) || {
        bpo_update_once
        q10_pkgs="$(resolve_q10_pkgs)"
        # shellcheck disable=SC2086
        (cd "$q10_tmp" && apt-get "${apt_bpo_opts[@]}" download -qq $q10_pkgs)
    }
    rm -rf "$Q10_DIR.new"
    mkdir -p "$Q10_DIR.new"
    for deb in "$q10_tmp"/*.deb; do
        say "unpacking $(basename "$deb") into $Q10_DIR"
        dpkg -x "$deb" "$Q10_DIR.new"
    done
    q10_smoke "$Q10_DIR.new"
    echo "$q10_pkgs" >"$Q10_DIR.new/.packages"
    rm -rf "$Q10_DIR"
    mv "$Q10_DIR.new" "$Q10_DIR"
fi

say "qemu: $(qemu-system-x86_64 --version | head -n1)"
q10_cmd "$Q10_DIR"
say "qemu 10.0: $("${Q10_CMD[@]}" --version | head -n1) in $Q10_DIR"
say "busybox: $(/bin/busybox 2>&1 | head -n1)"
say "kernel: $(ls "$KERNEL_DIR"/boot/vmlinuz-*)"
