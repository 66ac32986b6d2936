#!/usr/bin/env bash
# Runs the peer benchmark (../shared/bench/peers.sh, or $PEERS) with hammer2 added as two
# targets beside the peers, in one run:
#   hammer2-c1   copies=1 on one image file
#   hammer2-c2   copies=2 on two image files (each copy on its own image)
#   fuse-floor   tools/src/fuse_floor.rs: a FUSE filesystem that does no work (keeps names,
#                drops data) and negotiates what hammer2 does, so it gets the same requests.
#                Its figures are the most any FUSE filesystem reaches on this machine.
#   hammer2-c2-devfuse  the same with `-o nouring`: every request through /dev/fuse.
# FUSE over io_uring: hammer2 and the floor serve requests on the caller's CPU when the
# kernel (6.14+) has fuse's `enable_uring` on. It is off by default; this script turns it on
# for its run and back after. URING=0 measures the kernel's default path: the parameter is
# left alone and every hammer2 target and the floor are served through /dev/fuse
# (`-o nouring`, FLOOR_NO_URING), even where another run left the ring on. Only daemons that ask for the ring
# use it: none of the peers here do (bindfs and fuse2fs link libfuse 3.14, zfs-fuse libfuse 2).
# Usage (as root):  ./scripts/bench-peers.sh
#                   TARGETS="bindfs hammer2-c1 hammer2-c2" ./scripts/bench-peers.sh
# Every knob of peers.sh (WORK, WORKLOADS, SEQ_SIZE, ...) passes through. The table and a
# CSV land in $WORK (default /tmp/fsbench); each hammer2 daemon's thread count and peak RSS,
# read before each unmount, in $WORK/hammer2-daemons.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
as_root "$@"
ensure_build_and_fuse

PEERS=${PEERS:-$(cd .. && pwd)/shared/bench/peers.sh}
[ -f "$PEERS" ] || die "peers.sh not found at $PEERS (set PEERS=/path/to/peers.sh)"
# (the workspace build includes the tools member, whose fuse-floor binary is the floor)
cargo build --release --workspace
BIN=$PWD/target/release
export WORK=${WORK:-/tmp/fsbench}
mkdir -p "$WORK"
export TARGETS=${TARGETS:-"raw bindfs fuse2fs zfs-fuse-c1 zfs-fuse-c2 btrfs-dup ext4-loop fuse-floor hammer2-c1 hammer2-c2 hammer2-c2-devfuse"}

trap uring_restore EXIT
uring_on
if [ "${URING:-1}" = 1 ]; then DEFAULT_OPTS=""; FLOOR_ENV=""; else DEFAULT_OPTS=nouring; FLOOR_ENV=FLOOR_NO_URING=1; fi

# peers.sh ends by calling main; our targets are defined before that line in a copy made
# for this run (nothing of peers.sh is kept in the repository).
RUN=$WORK/peers-with-hammer2.sh
sed '/^main "\$@"$/d' "$PEERS" >"$RUN"
cat >>"$RUN" <<HAMMER2
# ---- hammer2 (added by scripts/bench-peers.sh) ----
H2=$BIN
h2_mount() { local o=\${H2_OPTS:-$DEFAULT_OPTS}; fuse_start "\$MNT" "\$H2/hammer2" mount -f \${o:+-o \$o} "\$@" "\$MNT"; local rc=\$?; H2_PID=\$FUSE_PID; return \$rc; }
# Before each unmount: the daemon's threads and peak RSS (VmHWM) so far, one line per mount.
h2_umount() { h2_record; fuse_stop "\$MNT" "\${H2_PID:-}"; H2_PID=""; }
h2_record() {
    [ -n "\${H2_PID:-}" ] && [ -r "/proc/\$H2_PID/status" ] || return 0
    echo "\${CUR_TARGET:-?} threads=\$(ls "/proc/\$H2_PID/task" | wc -l) peak_rss_kB=\$(awk '/^VmHWM/ {print \$2}' "/proc/\$H2_PID/status")" >>"\$WORK/hammer2-daemons.txt"
}
setup_hammer2_c1() {
    MNT=\$MNTDIR/hammer2-c1; mkdir -p "\$MNT"
    H2_IMGS=(\$(make_img hammer2-c1)) || { SKIP_REASON="cannot create image"; return 1; }
    "\$H2/mkfs-hammer2" -f --copies 1 "\${H2_IMGS[@]}" || { SKIP_REASON="mkfs failed"; return 1; }
    h2_mount "\${H2_IMGS[@]}" || { SKIP_REASON="mount failed (see \$TLOG)"; return 1; }
}
remount_hammer2_c1() { h2_umount; h2_mount "\${H2_IMGS[@]}"; }
teardown_hammer2_c1() { MNT=\$MNTDIR/hammer2-c1; h2_umount; rm -f "\$IMGDIR"/hammer2-c1*.img; }
setup_hammer2_c2() {
    MNT=\$MNTDIR/hammer2-c2; mkdir -p "\$MNT"
    H2_IMGS=(\$(make_img hammer2-c2a) \$(make_img hammer2-c2b)) || { SKIP_REASON="cannot create images"; return 1; }
    "\$H2/mkfs-hammer2" -f --copies 2 "\${H2_IMGS[@]}" || { SKIP_REASON="mkfs failed"; return 1; }
    h2_mount "\${H2_IMGS[@]}" || { SKIP_REASON="mount failed (see \$TLOG)"; return 1; }
}
remount_hammer2_c2() { h2_umount; h2_mount "\${H2_IMGS[@]}"; }
teardown_hammer2_c2() { MNT=\$MNTDIR/hammer2-c2; h2_umount; rm -f "\$IMGDIR"/hammer2-c2*.img; }
setup_hammer2_c2_devfuse() {
    MNT=\$MNTDIR/hammer2-c2-devfuse; mkdir -p "\$MNT"; H2_OPTS=nouring
    H2_IMGS=(\$(make_img hammer2-c2-devfuse-a) \$(make_img hammer2-c2-devfuse-b)) || { SKIP_REASON="cannot create images"; return 1; }
    "\$H2/mkfs-hammer2" -f --copies 2 "\${H2_IMGS[@]}" || { SKIP_REASON="mkfs failed"; return 1; }
    h2_mount "\${H2_IMGS[@]}" || { SKIP_REASON="mount failed (see \$TLOG)"; return 1; }
}
remount_hammer2_c2_devfuse() { h2_umount; h2_mount "\${H2_IMGS[@]}"; }
teardown_hammer2_c2_devfuse() { MNT=\$MNTDIR/hammer2-c2-devfuse; h2_umount; H2_OPTS=""; rm -f "\$IMGDIR"/hammer2-c2-devfuse*.img; }
setup_fuse_floor() {
    MNT=\$MNTDIR/fuse-floor; mkdir -p "\$MNT"
    fuse_start "\$MNT" env $FLOOR_ENV "\$H2/fuse-floor" "\$MNT" || { SKIP_REASON="mount failed (see \$TLOG)"; return 1; }
    FLOOR_PID=\$FUSE_PID
}
# No remount hook: the tree lives only in the daemon, so cold phases just drop the kernel caches.
teardown_fuse_floor() { MNT=\$MNTDIR/fuse-floor; fuse_stop "\$MNT" "\${FLOOR_PID:-}"; FLOOR_PID=""; }
main "\$@"
HAMMER2
log "running $RUN with TARGETS=\"$TARGETS\""
bash "$RUN"
