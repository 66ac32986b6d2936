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
ensure_cmd setfacl acl
ensure_cmd setfattr attr

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
log "cargo test --workspace --release"
cargo test --workspace --release
log "all tests passed"
