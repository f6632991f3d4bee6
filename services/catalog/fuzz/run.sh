#!/usr/bin/env bash
# Fuzz page-token parsing for a bounded time (default 60 s): bash services/catalog/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
mkdir -p corpus/page_token
if [ -z "$(ls -A corpus/page_token)" ]; then
  # Seeds: token-shaped strings (payload.tag) and junk; the target also edits genuine tokens
  # it issues itself from the input's first 24 bytes.
  printf 'MHwwfDE.AAAAAAAAAAAAAAAAAAAAAA' > corpus/page_token/shape
  printf '!!.??' > corpus/page_token/junk
  printf 'MXwxNzAwMDAwMDAwMDAwMDAwfDQy' > corpus/page_token/no-tag
  head -c 48 /dev/zero > corpus/page_token/zeros
fi
exec ../../../scripts/fuzz-target page_token "$secs" 10
