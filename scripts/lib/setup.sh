# Shared by scripts/demo.sh and scripts/test.sh: get a fresh Debian/Ubuntu machine to the
# point where hammer2 builds and its tests run. Sourced, not executed.

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Loop devices, kernel mounts and FUSE mounts all need root: re-run the calling script
# under sudo, keeping PATH so a per-user Rust toolchain is still found. The scripts cd to the
# repository root before calling this, so the script is named from there ($0 may have been
# relative to another directory).
as_root() {
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "run this as root (loop devices and mounts need it)"
        log "re-running as root with sudo"
        exec sudo -E env "PATH=$PATH" bash "$PWD/scripts/${0##*/}" "$@"
    fi
}

# ensure_cmd COMMAND PACKAGE: installs PACKAGE with apt-get when COMMAND is missing.
APT_UPDATED=
ensure_cmd() {
    local cmd=$1 pkg=$2
    if command -v "$cmd" >/dev/null 2>&1 || [ -x "/sbin/$cmd" ] || [ -x "/usr/sbin/$cmd" ]; then
        return 0
    fi
    command -v apt-get >/dev/null || die "$cmd is missing and this is not a Debian/Ubuntu machine: install $pkg"
    if [ -z "$APT_UPDATED" ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "installing $pkg (for $cmd)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
}

# Everything every script here needs: build dependencies, FUSE and a Rust toolchain.
ensure_build_and_fuse() {
    ensure_build_deps
    ensure_fuse
    ensure_rust
}

# What building hammer2 needs: a C linker and curl for rustup.
ensure_build_deps() {
    ensure_cmd cc build-essential
    ensure_cmd curl curl
    ensure_cmd update-ca-certificates ca-certificates
    ensure_cmd losetup mount
}

# What running a mount needs: fusermount3 (package fuse3) and the /dev/fuse device.
ensure_fuse() {
    ensure_cmd fusermount3 fuse3
    [ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
    [ -e /dev/fuse ] || die "/dev/fuse is missing: this machine (or container) cannot run FUSE filesystems"
}

# A Rust toolchain new enough for edition 2024 (1.85), with rustfmt and clippy. Distribution
# packages are too old on current Debian stable, so rustup installs it when cargo is missing.
ensure_rust() {
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    if ! command -v cargo >/dev/null; then
        log "installing Rust with rustup"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --profile minimal --component rustfmt,clippy >/dev/null
        . "$HOME/.cargo/env"
    fi
    local v
    v=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n1.85.0\n' "$v" | sort -V | head -n1)" != "1.85.0" ]; then
        command -v rustup >/dev/null || die "Rust $v is too old (1.85 or newer is needed) and rustup is not installed"
        log "Rust $v is too old: updating the stable toolchain"
        rustup toolchain install stable --profile minimal >/dev/null
        rustup default stable >/dev/null
    fi
    if command -v rustup >/dev/null; then
        cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
        cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    fi
}

# Cargo cannot name a binary with a dot (rust-lang/cargo#4418): give the build output its
# installed name next to it, so the scripts run the same commands a user types.
link_mkfs_name() {
    local dir=$1
    ln -sf mkfs-hammer2 "$dir/mkfs.hammer2"
}

# FUSE over io_uring (Linux 6.14+) serves hammer2's requests on the caller's CPU, but only
# while the fuse module's `enable_uring` is on, and it is off by default. The benchmarks
# switch it on for their run (URING=0 leaves it alone) and call uring_restore at exit.
RING_PARAMETER=/sys/module/fuse/parameters/enable_uring
uring_on() {
    [ "${URING:-1}" = 1 ] || return 0
    [ -w "$RING_PARAMETER" ] || die "this kernel has no FUSE over io_uring ($RING_PARAMETER); run with URING=0"
    RING_BEFORE=$(cat "$RING_PARAMETER")
    echo Y >"$RING_PARAMETER"
    log "fuse enable_uring: Y for this run (was $RING_BEFORE)"
}
uring_restore() {
    [ -n "${RING_BEFORE:-}" ] && echo "$RING_BEFORE" >"$RING_PARAMETER"
    return 0
}

# A run killed midway (a lost session, a ^C) leaves its test mounts behind with their daemons
# gone: every access answers ENOTCONN until they are unmounted. `hammer2 status` without
# arguments rightly reports such a mount (exit 8), so a new run clears away the dead ones its
# predecessors left under /tmp; live mounts, and anything elsewhere, are left alone.
clear_dead_test_mounts() {
  local mp
  while read -r mp; do
    [[ $mp == /tmp/h2* ]] || continue
    if [[ "$(stat -c %i "$mp" 2>&1)" == *"not connected"* ]]; then
      log "clearing the dead test mount $mp (its daemon is gone)"
      umount -l "$mp" || true
    fi
  done < <(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "fuse.hammer2") print $5; break } }' /proc/self/mountinfo)
}
