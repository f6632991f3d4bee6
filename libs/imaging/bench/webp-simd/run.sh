#!/usr/bin/env bash
# Does compiling libwebp-sys' vendored libwebp with SSE4.1 or AVX2 (its `sse41`/`avx2` features:
# the define plus -msse4.1/-mavx2 on every file) make our WebP encodes cheaper? Builds the vendored
# sources as libwebp-sys' build.rs does in release (cc at -O3), once per flag set, and times the
# same encode (q85 m6) on identical pixels, interleaved, minimum of ROUNDS; also Debian's
# libwebp (what libvips uses) when installed. CALLGRIND=1 adds instruction counts (deterministic,
# unlike the timings on a shared machine).
# Usage: run.sh PHOTO.jpg [ROUNDS]      (needs gcc, pyvips for the raw pixels; see ../../README.md)
set -euo pipefail
photo=$1 rounds=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
vendor=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/libwebp-sys-0.9.6/vendor | head -1)
work=${WORK:-$(mktemp -d)}
cd "$work"
# The xlarge input: 2560x1440 (fit inside), as the pipeline makes it.
python3 - "$photo" <<'PY'
import sys, pyvips
im = pyvips.Image.thumbnail(sys.argv[1], 2560, height=1440, size="down").copy_memory()
open("xlarge.rgb", "wb").write(im.write_to_memory())
open("xlarge.size", "w").write(f"{im.width} {im.height}\n")
PY
read -r w h < xlarge.size
base="-O3 -ffunction-sections -fdata-sections -fPIC -m64 -fvisibility=hidden -Wall -DNDEBUG=1 -D_THREAD_SAFE=1 -DWEBP_HAVE_SSE2=1 -I$vendor"
build() {
  local name=$1; shift
  mkdir -p "o_$name"
  for f in "$vendor"/src/*/*.c "$vendor"/sharpyuv/*.c; do
    gcc $base "$@" -c "$f" -o "o_$name/$(basename "$(dirname "$f")")_$(basename "$f").o" 2>/dev/null &
    while (( $(jobs -r | wc -l) >= $(nproc) )); do wait -n; done
  done
  wait
  ar rcs "lib_$name.a" "o_$name"/*.o
  gcc -O2 -I"$vendor/src" "$here/harness.c" "lib_$name.a" -lpthread -lm -o "h_$name"
}
build default
build sse41 -DWEBP_HAVE_SSE41=1 -msse4.1
build avx2 -DWEBP_HAVE_SSE41=1 -msse4.1 -DWEBP_HAVE_AVX2=1 -mavx2
tools=(default sse41 avx2)
if [ -e /usr/lib/x86_64-linux-gnu/libwebp.so.7 ]; then
  gcc -O2 -I"$vendor/src" "$here/harness.c" /usr/lib/x86_64-linux-gnu/libwebp.so.7 -o h_debian
  tools+=(debian)
fi
for _ in $(seq "$rounds"); do
  for t in "${tools[@]}"; do "./h_$t" xlarge.rgb "$w" "$h" "$t"; done
done | awk '{ if (!($1 in m) || $6 < m[$1]) m[$1] = $6; b[$1] = $9; v[$1] = $11 }
  END { for (k in m) printf "%-8s min cpu %.3f s  bytes %s  libwebp %s\n", k, m[k], b[k], v[k] }' | sort
if [ "${CALLGRIND:-0}" = 1 ]; then
  for t in "${tools[@]}"; do
    valgrind --tool=callgrind --callgrind-out-file="cg.$t" "./h_$t" xlarge.rgb "$w" "$h" "$t" 2>&1 |
      awk -v t="$t" '/Collected/ { printf "%-8s instructions %s\n", t, $NF }'
  done
fi
