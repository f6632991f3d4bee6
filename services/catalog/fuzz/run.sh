#!/usr/bin/env bash
# Fuzz page-token parsing for a bounded time (default 60 s): bash services/catalog/fuzz/run.sh [SECONDS]
# Needs the nightly toolchain and cargo-fuzz (installed from crates.io if missing). The lock file
# starts as a copy of the workspace's, so the fuzzed code is built with the versions it ships with.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
target="${PHOTOS_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/photos/fuzz-target}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
[ -f Cargo.lock ] || cp ../../../Cargo.lock .
mkdir -p corpus/page_token
if [ -z "$(ls -A corpus/page_token)" ]; then
  # Seeds: token-shaped strings (payload.tag) and junk; the target also edits genuine tokens
  # it issues itself from the input's first 24 bytes.
  printf 'MHwwfDE.AAAAAAAAAAAAAAAAAAAAAA' > corpus/page_token/shape
  printf '!!.??' > corpus/page_token/junk
  printf 'MXwxNzAwMDAwMDAwMDAwMDAwfDQy' > corpus/page_token/no-tag
  head -c 48 /dev/zero > corpus/page_token/zeros
fi
exec cargo +nightly fuzz run --target-dir "$target" page_token corpus/page_token -- \
  -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10
