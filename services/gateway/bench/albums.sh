#!/usr/bin/env bash
# Benchmark (not a test): the cached album-list page through the gateway (wrk on
# GET /api/v1/albums) against the same catalog ListAlbums call made directly over gRPC
# (photos-gateway-grpc-load, through the client channel the gateway itself uses), at the same
# concurrency and for the same time, on the embedded mesh on loopback. Prints throughput, p99
# and the gateway/gRPC ratio (target >= 0.7).
#
#   services/gateway/bench/albums.sh
#   PHOTOS_BENCH_SECONDS=10 PHOTOS_BENCH_CONNECTIONS=16 PHOTOS_BENCH_ALBUMS=20 \
#   PHOTOS_BENCH_PROFILE=release services/gateway/bench/albums.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/photos/target}"
seconds="${PHOTOS_BENCH_SECONDS:-10}"
connections="${PHOTOS_BENCH_CONNECTIONS:-16}"
albums="${PHOTOS_BENCH_ALBUMS:-20}"
profile="${PHOTOS_BENCH_PROFILE:-release}"
sample="$(pwd)/services/gateway/bench/sample.jpg"

if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian)"
    sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

cargo build -q --profile "$profile" -p photos-mesh -p photos-gateway \
    --bin photos --bin photos-gateway-grpc-load
dir_name=$([ "$profile" = dev ] && echo debug || echo "$profile")
bin="$CARGO_TARGET_DIR/$dir_name"

work=$(mktemp -d)
mesh_pid=""
cleanup() { [ -n "$mesh_pid" ] && kill "$mesh_pid" 2>/dev/null && wait "$mesh_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# Free ports, no rate limit (wrk would be throttled, not measured), data in a scratch dir.
(cd "$work" && exec env PHOTOS__GATEWAY__HTTP__PORT=0 PHOTOS__GATEWAY__RATE_LIMIT__REQUESTS_PER_MINUTE=0 \
    PHOTOS__DATA_DIR="$work/data" RUST_LOG=warn "$bin/photos" >"$work/mesh.log" 2>&1) &
mesh_pid=$!
for _ in $(seq 600); do grep -q 'Ctrl-C stops it' "$work/mesh.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'Ctrl-C stops it' "$work/mesh.log" || { cat "$work/mesh.log"; echo "the mesh did not start" >&2; exit 1; }
gateway=$(awk '$1 == "gateway" {print $2}' "$work/mesh.log")
catalog=$(awk '$1 == "catalog" {sub("grpc://", "http://", $2); print $2}' "$work/mesh.log")
auth=$(grep -o 'Authorization: Bearer .*' "$work/mesh.log" | head -n1)
echo "gateway $gateway, catalog $catalog"

echo "seeding $albums published albums with 2 photos each"
for i in $(seq "$albums"); do
    id=$(curl -fsS -H "$auth" -H 'Content-Type: application/json' \
        -d "{\"title\":\"Album $i\",\"is_published\":true}" "$gateway/api/v1/albums" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    for j in 1 2; do
        # Distinct bytes per photo (a duplicate upload would return the existing photo).
        { cat "$sample"; printf 'album %s photo %s' "$i" "$j"; } >"$work/p.jpg"
        curl -fsS -o /dev/null -H "$auth" -F "file=@$work/p.jpg;type=image/jpeg" \
            "$gateway/api/v1/albums/$id/photos"
    done
done
# Warm both paths: the catalog's cache and the gateway's signed-URL cache.
curl -fsS -o /dev/null "$gateway/api/v1/albums"
count=$(curl -fsS "$gateway/api/v1/albums" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["albums"]))')
echo "the page lists $count albums"

echo; echo "== gateway: wrk -t2 -c$connections -d${seconds}s GET /api/v1/albums"
wrk -t2 -c"$connections" -d"${seconds}s" --latency "$gateway/api/v1/albums" | tee "$work/wrk.txt"
echo; echo "== gRPC: ListAlbums, $connections callers, ${seconds}s"
"$bin/photos-gateway-grpc-load" --address "$catalog" --concurrency "$connections" \
    --duration "$seconds" | tee "$work/grpc.txt"

# wrk prints latencies as 1.23ms / 456.78us / 1.02s.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; printf "%.3f", v}'; }
http_rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt")
http_p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt" | to_ms)
http_errors=$(awk '/Non-2xx|Socket errors/' "$work/wrk.txt")
grpc_rps=$(awk '$1 == "rps" {print $2}' "$work/grpc.txt")
grpc_p99=$(awk '$1 == "p99_ms" {print $2}' "$work/grpc.txt")
echo
printf '%-28s %12s %10s\n' "path ($connections concurrent)" "req/s" "p99 ms"
printf '%-28s %12s %10s\n' "gateway GET /api/v1/albums" "$http_rps" "$http_p99"
printf '%-28s %12s %10s\n' "gRPC ListAlbums" "$grpc_rps" "$grpc_p99"
ratio=$(awk -v a="$http_rps" -v b="$grpc_rps" 'BEGIN {printf "%.2f", a / b}')
echo "throughput ratio gateway/gRPC: ${ratio}x (target >= 0.7x; profile $profile)"
[ -z "$http_errors" ] || echo "wrk reported: $http_errors"
