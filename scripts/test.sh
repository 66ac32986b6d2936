#!/usr/bin/env bash
# Installs what is missing, then runs the whole test suite: formatting, lints, and every
# test in release mode (the FUSE and property tests are slow without optimization).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
as_root "$@"
ensure_build_and_fuse
ensure_cmd mkfs.ext4 e2fsprogs
ensure_cmd fio fio
ensure_cmd setfattr attr
ensure_cmd wipefs util-linux
ensure_cmd mkfs.xfs xfsprogs
ensure_cmd mkfs.btrfs btrfs-progs
ensure_cmd pvcreate lvm2
ensure_cmd sfdisk fdisk
ensure_cmd xfs_io xfsprogs
ensure_cmd nbdkit nbdkit
ensure_cmd qemu-nbd qemu-utils
ensure_cmd setfacl acl
ensure_cmd man man-db
ensure_cmd script bsdutils
# systemd-analyze and the fstab generator: the boot-by-UUID test verifies a generated mount unit.
ensure_cmd systemd-analyze systemd
ensure_cmd udevadm udev

clear_dead_test_mounts

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
log "cargo test --workspace --release"
cargo test --workspace --release
log "all tests passed"
