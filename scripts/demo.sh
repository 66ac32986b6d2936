#!/usr/bin/env bash
# The main job, end to end: build hammer2, format a 1 GiB image with two copies of every
# block, mount it, write files, unmount, mount again and read them back, then show what the
# volume headers say. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
as_root "$@"
ensure_build_and_fuse

log "building (release)"
cargo build --release --workspace
BIN=$PWD/target/release
link_mkfs_name "$BIN"
export PATH="$BIN:$PATH"

WORK=$(mktemp -d /tmp/hammer2-demo.XXXXXX)
IMG=$WORK/demo.img
MNT=$WORK/mnt
mkdir "$MNT"
cleanup() {
    if mountpoint -q "$MNT"; then umount "$MNT" 2>/dev/null || fusermount3 -u "$MNT" || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

log "mkfs.hammer2 --size 1G --copies 2 -L demo $IMG"
mkfs.hammer2 --size 1G --copies 2 -L demo "$IMG"

log "hammer2 mount $IMG $MNT"
hammer2 mount "$IMG" "$MNT"
echo "hello from hammer2: every block of this file is stored twice" >"$MNT/hello.txt"
mkdir "$MNT/dir"
head -c 64M /dev/urandom >"$MNT/dir/random.bin"
want=$(sha256sum <"$MNT/dir/random.bin")
ls -l "$MNT" "$MNT/dir"
umount "$MNT"

log "mounting again and reading back"
hammer2 mount "$IMG" "$MNT"
cat "$MNT/hello.txt"
got=$(sha256sum <"$MNT/dir/random.bin")
[ "$got" = "$want" ] || die "random.bin reads back different after a remount"
echo "random.bin: 64 MiB read back intact (sha256 ${got%% *})"
df -h "$MNT"
umount "$MNT"

log "hammer2 info $IMG"
hammer2 info "$IMG"
