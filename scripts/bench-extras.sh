#!/usr/bin/env bash
# What the peer benchmark does not measure, on a filesystem with 2 copies on two image files:
#   - the mount daemon's peak RSS during each workload (VmHWM, reset between workloads)
#     next to the configured cache size;
#   - mount time of a filled filesystem;
#   - fsck.hammer2 -n and offline `hammer2 scrub` speed on it (MB/s of copies read);
#   - resync of a device that missed 1% of the data against one that missed all of it.
# Usage (as root):  ./scripts/bench-extras.sh
# Knobs: WORK (default /tmp/h2extras), SIZE of each image (4G), FILL of data (3G),
#        CACHE (the mount's cache=, 256M), URING (1: FUSE over io_uring on for the run, as
#        in bench-peers.sh; 0: the kernel's setting as it is).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
as_root "$@"
ensure_build_and_fuse
ensure_cmd fio fio

cargo build --release --workspace
BIN=$PWD/target/release
WORK=${WORK:-/tmp/h2extras}
SIZE=${SIZE:-4G}
FILL=${FILL:-3G}
CACHE=${CACHE:-256M}
A=$WORK/a.img
B=$WORK/b.img
MNT=$WORK/mnt
mkdir -p "$WORK" "$MNT"
cleanup() { mountpoint -q "$MNT" && umount "$MNT"; rm -f "$A" "$B"; uring_restore; }
trap cleanup EXIT
uring_on

h2mount() { "$BIN/hammer2" mount -o "cache=$CACHE${1:+,$1}" "${@:2}" "$MNT"; }
daemon() { pgrep -n -f "hammer2 mount .*$MNT" || die "no daemon for $MNT"; }
mib() { echo $(( $1 / 1024 )); }
# Peak RSS since the last reset, in KiB; then reset it for the next workload.
peak() { local p; p=$(daemon); awk '/VmHWM/ {print $2}' "/proc/$p/status"; echo 5 >"/proc/$p/clear_refs"; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
row() { printf '%-34s %s\n' "$1" "$2"; }

log "fresh filesystem: 2 copies on $A and $B ($SIZE each)"
rm -f "$A" "$B"
"$BIN/mkfs-hammer2" --size "$SIZE" --copies 2 "$A" "$B" >/dev/null

echo "== daemon peak RSS per workload (cache=$CACHE) =="
h2mount "" "$A" "$B"
peak >/dev/null
fio --name=seqwrite --filename="$MNT/seq" --rw=write --bs=1M --size=1G --end_fsync=1 >/dev/null
row "seqwrite 1 GiB" "$(mib "$(peak)") MiB"
umount "$MNT"; cold; h2mount "" "$A" "$B"; peak >/dev/null
fio --name=seqread --filename="$MNT/seq" --rw=read --bs=1M --size=1G >/dev/null
row "seqread 1 GiB" "$(mib "$(peak)") MiB"
fio --name=randwrite --filename="$MNT/seq" --rw=randwrite --bs=4k --size=1G --ioengine=libaio \
    --iodepth=16 --direct=1 --runtime=20 --time_based --end_fsync=1 >/dev/null
row "randwrite 4 KiB qd16 20 s" "$(mib "$(peak)") MiB"
fio --name=randread --filename="$MNT/seq" --rw=randread --bs=4k --size=1G --ioengine=libaio \
    --iodepth=16 --direct=1 --runtime=20 --time_based >/dev/null
row "randread 4 KiB qd16 20 s" "$(mib "$(peak)") MiB"
rm -f "$MNT/seq"
python3 - "$MNT/meta" <<'EOF'
import os, sys
root = sys.argv[1]
blob = b"x" * 4096
for d in range(100):
    os.makedirs(f"{root}/d{d}")
for i in range(20000):
    with open(f"{root}/d{i % 100}/f{i}", "wb") as f:
        f.write(blob)
for i in range(20000):
    os.stat(f"{root}/d{i % 100}/f{i}")
for i in range(20000):
    os.unlink(f"{root}/d{i % 100}/f{i}")
EOF
row "create+stat+delete 20,000 files" "$(mib "$(peak)") MiB"
mkdir "$MNT/src"
tar -C /usr -cf - share lib 2>/dev/null | head -c 350M | tar -C "$MNT/src" -xf - 2>/dev/null || true
sync -f "$MNT"
row "untar $(du -sm "$MNT/src" | cut -f1) MiB, sync" "$(mib "$(peak)") MiB"
rm -rf "$MNT/src" "$MNT/meta"
umount "$MNT"

log "filling the filesystem: $FILL in 24 large files and 20,000 small ones"
h2mount "" "$A" "$B"
fill_bytes=$(numfmt --from=iec "$FILL")
per=$(( fill_bytes / 24 / 1048576 ))
for i in $(seq 1 24); do
    fio --name=fill --filename="$MNT/big$i" --rw=write --bs=1M --size="${per}M" --refill_buffers >/dev/null
done
mkdir "$MNT/small"
for d in $(seq 0 99); do
    mkdir "$MNT/small/$d"
    for f in $(seq 0 199); do head -c 4096 /dev/urandom >"$MNT/small/$d/$f"; done
done
umount "$MNT"
cold

echo "== filled filesystem (${FILL} of data, 2 copies) =="
t=$(now); h2mount "" "$A" "$B"; row "mount time" "$(since "$t") s"
umount "$MNT"; cold
t=$(now); h2mount "" "$A" "$B"; ls "$MNT/small/7" >/dev/null; row "mount + first readdir" "$(since "$t") s"
umount "$MNT"; cold
"$BIN/fsck-hammer2" -n --json "$A" "$B" >"$WORK/fsck.json" || true
row "fsck -n" "$(json '"%.0f MB/s (%d MiB of copies read in %.1f s, exit %d)" % (d["read_mb_per_s"], d["counts"]["bytes_read"] / 2**20, d["seconds"], d["exit_status"])' <"$WORK/fsck.json")"
cold
"$BIN/hammer2" scrub --json "$A" "$B" >"$WORK/scrub.json" || true
row "scrub (offline)" "$(json '"%.0f MB/s (%d MiB of copies read in %.1f s)" % (sum(x["bytes"] for x in d["devices"]) / d["seconds"] / 1e6, sum(x["bytes"] for x in d["devices"]) / 2**20, d["seconds"])' <"$WORK/scrub.json")"

echo "== resync: 1% changed against everything changed =="
# 1%: b is away while 1% of the data is rewritten.
h2mount degraded "$A"
n=$(( (fill_bytes / 100) / 1048576 ))
fio --name=change --filename="$MNT/big1" --rw=write --bs=1M --size="${n}M" --refill_buffers >/dev/null
umount "$MNT"; cold
"$BIN/hammer2" resync --json "$A" "$B" >"$WORK/resync1.json"
row "resync after a 1% change" "$(json '"%.2f s, %d MiB copied, %d blocks visited" % (d["seconds"], d["counts"]["copied_bytes"] / 2**20, d["counts"]["visited"])' <"$WORK/resync1.json")"
# Everything: b is away for the whole fill of a new filesystem.
rm -f "$A" "$B"
"$BIN/mkfs-hammer2" --size "$SIZE" --copies 2 "$A" "$B" >/dev/null
h2mount degraded "$A"
for i in $(seq 1 24); do
    fio --name=fill --filename="$MNT/big$i" --rw=write --bs=1M --size="${per}M" --refill_buffers >/dev/null
done
umount "$MNT"; cold
"$BIN/hammer2" resync --json "$A" "$B" >"$WORK/resyncfull.json"
row "resync of everything" "$(json '"%.2f s, %d MiB copied, %d blocks visited" % (d["seconds"], d["counts"]["copied_bytes"] / 2**20, d["counts"]["visited"])' <"$WORK/resyncfull.json")"
python3 - "$WORK/resync1.json" "$WORK/resyncfull.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
print(f"{'1% resync / full resync':34} {100 * a['seconds'] / b['seconds']:.1f}% of the time")
EOF
