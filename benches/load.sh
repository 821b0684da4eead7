#!/usr/bin/env bash
# Load run: the same synthetic FHIR upstream measured directly, through phigate on a public
# rule, and through phigate with full token checks (a cached ES256 token). Everything runs on
# loopback; each wrk run is bounded in time. Usage: bash benches/load.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-32}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --bin phigate
out="$(mktemp)"
./target/release/phigate demo --listen 127.0.0.1:18443 --admin 127.0.0.1:19090 >"$out" 2>/dev/null &
demo=$!
trap 'kill "$demo" 2>/dev/null; wait "$demo" 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q "phigate demo ready" "$out" && break; sleep 0.1; done
upstream="$(awk '$1 == "upstream" { print $2 }' "$out")"
token="$(grep -m1 "^curl .*Bearer" "$out" | sed -E "s/.*Bearer ([^']+)'.*/\1/")"
run() {
  local name="$1"; shift
  local report
  report="$(wrk -t2 -c"$connections" -d"${duration}s" --latency "$@")"
  printf '%-24s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$name" \
    "$(awk '/Requests\/sec/ { print $2 }' <<<"$report")" \
    "$(awk '$1 == "50%" { print $2 }' <<<"$report")" \
    "$(awk '$1 == "99%" { print $2 }' <<<"$report")" \
    "$(awk '/Non-2xx/ { print $NF }' <<<"$report" | grep . || echo 0)"
}
echo "wrk -t2 -c$connections -d${duration}s, $(nproc) cores, $(date -u +%F)"
run "upstream direct" "$upstream/metadata"
run "phigate public rule" "https://127.0.0.1:18443/metadata"
run "phigate token checks" -H "Authorization: Bearer $token" "https://127.0.0.1:18443/Patient/123"
