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
# strace delivers a signal at an exact system call: an interrupted rewrite without a race.
ensure_cmd strace strace
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

# The tests that mount through FUSE once more, through FUSE over io_uring, where this kernel
# offers it: fuse's enable_uring on for the pass, and every mount made checked to be served
# by the ring (test-support `ring_under_test`). Left out: the three slowest whose subject is
# an engine operation driven through a mount (device changes, NBD copies, resync; 3 of the
# pass's 7.7 minutes), not what the mount serves. Without the ring, everything ran through
# /dev/fuse only.
if [ -e "$RING_PARAMETER" ]; then
  mapfile -t mounting < <(grep -lE 'common::mount::|Mount::attach' tests/*.rs | xargs -n1 basename | sed 's/\.rs$//' |
    grep -vxE 'device_change_mount|nbd_copies|resync_cli')
  log "the ${#mounting[@]} test binaries that mount, again through FUSE over io_uring"
  URING=1 uring_on
  trap uring_restore EXIT
  HAMMER2_TEST_TRANSPORT=ring cargo test --release "${mounting[@]/#/--test=}"
  uring_restore
  trap - EXIT
else
  log "this kernel has no FUSE over io_uring ($RING_PARAMETER): the FUSE tests ran through /dev/fuse only"
fi
log "all tests passed"
