#!/usr/bin/env bash
# Builds release binaries and installs them as `hammer2`, `mkfs.hammer2` and
# `fsck.hammer2` (the names `mkfs -t hammer2` and `fsck -t hammer2` look for) into
# $PREFIX/sbin, /usr/local/sbin by default, and the mount(8) helper /sbin/mount.fuse.hammer2.
# `--uninstall` removes exactly those files (with the same PREFIX) and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
PREFIX=${PREFIX:-/usr/local}
as_root "$@"

installed=("$PREFIX/sbin/hammer2" "$PREFIX/sbin/mkfs.hammer2" "$PREFIX/sbin/fsck.hammer2" /sbin/mount.fuse.hammer2)
case "${1:-}" in
"") ;;
--uninstall)
    for f in "${installed[@]}"; do
        if [ -e "$f" ] || [ -L "$f" ]; then
            rm -f "$f"
            log "removed $f"
        fi
    done
    exit 0
    ;;
*) die "usage: $0 [--uninstall]" ;;
esac

ensure_build_and_fuse
cargo build --release --workspace
install -d "$PREFIX/sbin"
install -m 0755 target/release/hammer2 "$PREFIX/sbin/hammer2"
install -m 0755 target/release/mkfs-hammer2 "$PREFIX/sbin/mkfs.hammer2"
install -m 0755 target/release/fsck-hammer2 "$PREFIX/sbin/fsck.hammer2"
# mount(8) runs /sbin/mount.fuse.hammer2 for `-t fuse.hammer2`: the hammer2 binary acts as
# that helper when started under the name.
ln -sf "$PREFIX/sbin/hammer2" /sbin/mount.fuse.hammer2
log "installed $PREFIX/sbin/hammer2, mkfs.hammer2, fsck.hammer2 and /sbin/mount.fuse.hammer2"
