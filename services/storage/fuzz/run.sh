#!/usr/bin/env bash
# Fuzz object-key validation, URL path encoding and variant-key building for a bounded time
# (default 60 s): bash services/storage/fuzz/run.sh [SECONDS]
# Needs the nightly toolchain and cargo-fuzz (installed from crates.io if missing). The lock file
# starts as a copy of the workspace's, so the fuzzed code is built with the versions it ships with.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
target="${PHOTOS_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/photos/fuzz-target}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
[ -f Cargo.lock ] || cp ../../../Cargo.lock .
mkdir -p corpus/object_key
if [ -z "$(ls -A corpus/object_key)" ]; then
  printf 'originals/12/0123456789abcdef' > corpus/object_key/original
  printf 'variants/ab/abcdef/small/small-640x640-inside-q82-t1.webp' > corpus/object_key/variant
  printf 'tmp/upload-1' > corpus/object_key/tmp
  printf 'originals/../../etc/passwd' > corpus/object_key/traversal
  printf 'originals/a\\..\\b' > corpus/object_key/backslash
  printf 'originals/a%%2e%%2e/b' > corpus/object_key/encoded
fi
exec cargo +nightly fuzz run --target-dir "$target" object_key corpus/object_key -- \
  -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10
