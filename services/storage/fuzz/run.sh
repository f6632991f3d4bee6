#!/usr/bin/env bash
# Fuzz object-key validation, URL path encoding and variant-key building for a bounded time
# (default 60 s): bash services/storage/fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
mkdir -p corpus/object_key
if [ -z "$(ls -A corpus/object_key)" ]; then
  printf 'originals/12/0123456789abcdef' > corpus/object_key/original
  printf 'variants/ab/abcdef/small/small-640x640-inside-q82-t1.webp' > corpus/object_key/variant
  printf 'tmp/upload-1' > corpus/object_key/tmp
  printf 'originals/../../etc/passwd' > corpus/object_key/traversal
  printf 'originals/a\\..\\b' > corpus/object_key/backslash
  printf 'originals/a%%2e%%2e/b' > corpus/object_key/encoded
fi
exec ../../../scripts/fuzz-target object_key "$secs" 10
