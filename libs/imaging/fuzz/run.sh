#!/usr/bin/env bash
# Fuzz the decode path for a bounded time (default 60 s): bash libs/imaging/fuzz/run.sh [SECONDS]
# Needs the nightly toolchain and cargo-fuzz (installed from crates.io if missing). The corpus is
# seeded with small valid images made by the test suite's generators' formats.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p corpus/decode
if [ -z "$(ls -A corpus/decode)" ]; then
  # Seeds: a 1x1 PNG, GIF, JPEG header fragments; libFuzzer mutates from there.
  printf '\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00\x00\x00\x0cIDAT\x08\xd7c\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\x18\xdd\x8d\xb0\x00\x00\x00\x00IEND\xaeB`\x82' > corpus/decode/1x1.png
  printf 'GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;' > corpus/decode/1x1.gif
  printf '\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9' > corpus/decode/jfif-stub.jpg
  printf 'RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00' > corpus/decode/1x1.webp
fi
exec cargo +nightly fuzz run decode corpus/decode -- -max_total_time="$secs" -rss_limit_mb=1024 -timeout=20
