#!/usr/bin/env bash
# Builds release binaries and installs them, with what makes them at home on the system:
#   $PREFIX/sbin/hammer2, mkfs.hammer2, fsck.hammer2 (the names `mkfs -t hammer2` and
#     `fsck -t hammer2` look for), /sbin/mount.fuse.hammer2 (mount(8)'s helper, a link) and
#     /sbin/fsck.fuse.hammer2 (what fsck(8) runs for fstab lines of that type, a link);
#   man pages: $PREFIX/share/man/man8/hammer2.8, hammer2-SUBCOMMAND.8, mkfs.hammer2.8,
#     fsck.hammer2.8;
#   bash, zsh and fish completions under $PREFIX/share;
#   the udev rule $UDEVDIR/59-hammer2.rules (default /etc/udev/rules.d), which makes
#     /dev/disk/by-uuid and by-label links for hammer2 devices;
#   $PREFIX/share/hammer2/installed, the list of everything above (and of the directories
#     made for it), which `--uninstall` removes and nothing else.
# PREFIX defaults to /usr/local. DESTDIR stages the whole tree under another root (for a
# package, or a test); it needs no root. `--no-build` installs the binaries already in
# $BINDIR (default target/release) instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
UDEVDIR=${UDEVDIR:-/etc/udev/rules.d}
BINDIR=${BINDIR:-target/release}
MANIFEST="$DESTDIR$PREFIX/share/hammer2/installed"
usage="usage: $0 [--no-build | --uninstall]   (environment: PREFIX, DESTDIR, UDEVDIR, BINDIR)"

mode=install
case "${1:-}" in
"") ;;
--no-build) mode=no-build ;;
--uninstall) mode=uninstall ;;
*) die "$usage" ;;
esac
[ $# -le 1 ] || die "$usage"
[ -n "$DESTDIR" ] || as_root "$@"

# Files of installs made before the list existed.
old_files=("$PREFIX/sbin/hammer2" "$PREFIX/sbin/mkfs.hammer2" "$PREFIX/sbin/fsck.hammer2" /sbin/mount.fuse.hammer2 /sbin/fsck.fuse.hammer2)

if [ "$mode" = uninstall ]; then
    if [ -f "$MANIFEST" ]; then
        mapfile -t entries <"$MANIFEST"
        rm -f "$MANIFEST"
        # Files first, then the directories the install made, deepest first, if empty.
        for f in "${entries[@]}"; do
            case "$f" in
            "" | */) ;;
            *)
                if [ -e "$f" ] || [ -L "$f" ]; then
                    rm -f "$f"
                    log "removed $f"
                fi
                ;;
            esac
        done
        while IFS= read -r d; do
            if rmdir "$d" 2>/dev/null; then log "removed $d/"; elif [ -d "$d" ]; then log "kept $d/ (not empty)"; fi
        done < <(printf '%s\n' "${entries[@]}" | grep '/$' | sed 's,/$,,' | sort -r)
    else
        for f in "${old_files[@]}"; do
            f="$DESTDIR$f"
            if [ -e "$f" ] || [ -L "$f" ]; then
                rm -f "$f"
                log "removed $f"
            fi
        done
    fi
    [ -n "$DESTDIR" ] || ! command -v udevadm >/dev/null || udevadm control --reload || true
    exit 0
fi

if [ "$mode" = install ]; then
    ensure_build_and_fuse
    cargo build --release --workspace
fi
for b in hammer2 mkfs-hammer2 fsck-hammer2; do
    [ -x "$BINDIR/$b" ] || die "$BINDIR/$b is missing: build with cargo build --release --workspace"
done

installed=()
# make_dir DIR: creates DIR and its missing parents, recording each one made.
make_dir() {
    local d=$1 missing=()
    while [ ! -d "$d" ]; do
        missing+=("$d")
        d=$(dirname "$d")
    done
    install -d "$1"
    for d in "${missing[@]}"; do installed+=("$d/"); done
}
# put MODE SOURCE TARGET: installs one file, recording it.
put() {
    make_dir "$(dirname "$3")"
    install -m "$1" "$2" "$3"
    installed+=("$3")
}
# generate BINARY KIND DIR: the binary writes its man pages or completions into DIR; each
# file it lists is installed from the staging directory into place.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
generate() {
    local bin=$1 kind=$2 dest=$3 f
    shift 3
    while IFS= read -r f; do
        put 0644 "$f" "$dest/${f#"$stage/$kind/"}"
    done < <("$bin" "$@" "$kind" "$stage/$kind")
}

sbin="$DESTDIR$PREFIX/sbin"
put 0755 "$BINDIR/hammer2" "$sbin/hammer2"
put 0755 "$BINDIR/mkfs-hammer2" "$sbin/mkfs.hammer2"
put 0755 "$BINDIR/fsck-hammer2" "$sbin/fsck.hammer2"
# mount(8) runs /sbin/mount.fuse.hammer2 for `-t fuse.hammer2`: the hammer2 binary acts as
# that helper when started under the name.
make_dir "$DESTDIR/sbin"
ln -sf "$PREFIX/sbin/hammer2" "$DESTDIR/sbin/mount.fuse.hammer2"
installed+=("$DESTDIR/sbin/mount.fuse.hammer2")
# fsck(8) runs fsck.fuse.hammer2 for fstab lines of that type (fsck -A, a pass number): the
# fsck binary takes the line's source (a:b, UUID=, LABEL=) when started under that name.
ln -sf "$PREFIX/sbin/fsck.hammer2" "$DESTDIR/sbin/fsck.fuse.hammer2"
installed+=("$DESTDIR/sbin/fsck.fuse.hammer2")

share="$DESTDIR$PREFIX/share"
generate "$BINDIR/hammer2" man "$share/man" generate
generate "$BINDIR/mkfs-hammer2" man "$share/man" --generate
generate "$BINDIR/fsck-hammer2" man "$share/man" --generate
generate "$BINDIR/hammer2" completions "$share" generate
generate "$BINDIR/mkfs-hammer2" completions "$share" --generate
generate "$BINDIR/fsck-hammer2" completions "$share" --generate

sed "s,@HAMMER2@,$PREFIX/sbin/hammer2,g" scripts/udev/59-hammer2.rules >"$stage/59-hammer2.rules"
put 0644 "$stage/59-hammer2.rules" "$DESTDIR$UDEVDIR/59-hammer2.rules"

make_dir "$(dirname "$MANIFEST")"
printf '%s\n' "${installed[@]}" >"$MANIFEST"
if [ -z "$DESTDIR" ] && command -v udevadm >/dev/null; then
    udevadm control --reload || true
fi
log "installed ${#installed[@]} files and directories (listed in $MANIFEST; $0 --uninstall removes them)"
