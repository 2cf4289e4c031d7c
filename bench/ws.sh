#!/usr/bin/env bash
# WebSocket load, bounded and on 127.0.0.1 only: memory per idle session at N sessions,
# handshake latency, and chunk delivery at concurrent streams through /ws beside the
# same streams straight to the provider (SSE). Needs a release build:
#   cargo build --release -p sluice -p sluice-wsload
# and the shared bench's mock (built here if missing).
# Usage: bench/ws.sh [SESSIONS] [STREAMS] [RATE]: STREAMS started at once, then a steady
# load of RATE streams a second for 10 s, each 5 s long (about RATE × 5 at once).
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${1:-10000} STREAMS=${2:-1000} RATE=${3:-200}
BIN=${CARGO_TARGET_DIR:-target}/release
MOCK=${MOCK:-/tmp/bench-target/release/mock-upstream}
[ -x "$MOCK" ] || (cd ../shared/bench/mock-upstream && CARGO_TARGET_DIR=/tmp/bench-target cargo build --release -q)
OUT=${OUT:-/tmp/bench-results/ws}
mkdir -p "$OUT" && rm -f /tmp/sluice-bench-ws.db*
# Room for N sessions on each side (root may raise its own hard limit).
ulimit -n 65536 2>/dev/null || true
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
"$MOCK" 18099 > "$OUT/mock.log" 2>&1 & PIDS+=($!)
MOCK_PORT=18099 SLUICE_LOG=warn SLUICE_LISTEN=127.0.0.1:8099 SLUICE_DATABASE_URL=sqlite:///tmp/sluice-bench-ws.db \
  "$BIN/sluice" serve --config bench/sluice-ws.toml > "$OUT/sluice.log" 2>&1 & GW=$!; PIDS+=($GW)
for _ in $(seq 100); do curl -sf http://127.0.0.1:8099/readyz >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' /proc/"$GW"/status; }
echo "gateway RSS at start: $(rss) KiB" | tee "$OUT/start.txt"
WS=ws://127.0.0.1:8099/ws KEY=sk-bench-key
# Warm: a few sessions and a stream, so what is measured next is per session.
"$BIN/sluice-wsload" streams "$WS" "$KEY" 10 "mock@chunks=20;delay_ms=5" 5 > /dev/null
sleep 1
BEFORE=$(rss)
"$BIN/sluice-wsload" idle "$WS" "$KEY" "$SESSIONS" 20 > "$OUT/idle.log" 2>&1 &
LOAD=$!
for _ in $(seq 600); do grep -q '^ready' "$OUT/idle.log" && break; sleep 0.1; done
sleep 3
DURING=$(rss)
wait "$LOAD"
cat "$OUT/start.txt" > "$OUT/results.txt"
echo "gateway RSS: ${BEFORE} KiB before, ${DURING} KiB with $(sed -n 's/^ready \([0-9]*\).*/\1/p' "$OUT/idle.log") idle sessions" | tee -a "$OUT/results.txt"
awk -v b="$BEFORE" -v d="$DURING" -v n="$SESSIONS" 'BEGIN {printf "per idle session: %.2f KiB\n", (d - b) / n}' | tee -a "$OUT/results.txt"
sleep 2
"$BIN/sluice-wsload" handshake "$WS" "$KEY" 2000 | tee -a "$OUT/results.txt"
echo "--- $STREAMS streams through /ws (20 chunks 5 ms apart)" | tee -a "$OUT/results.txt"
"$BIN/sluice-wsload" streams "$WS" "$KEY" "$STREAMS" "mock@chunks=20;delay_ms=5" 5 | tee -a "$OUT/results.txt"
echo "--- $STREAMS streams straight to the provider (SSE)" | tee -a "$OUT/results.txt"
"$BIN/sluice-wsload" sse http://127.0.0.1:18099/v1 sk-mock "$STREAMS" "mock@chunks=20;delay_ms=5" 5 | tee -a "$OUT/results.txt"
STEADY="mock@chunks=100;delay_ms=50"
echo "--- steady: $((RATE * 10)) streams through /ws, $RATE a second, 100 chunks 50 ms apart" | tee -a "$OUT/results.txt"
"$BIN/sluice-wsload" streams "$WS" "$KEY" $((RATE * 10)) "$STEADY" 50 "$RATE" | tee -a "$OUT/results.txt"
echo "--- the same straight to the provider (SSE)" | tee -a "$OUT/results.txt"
"$BIN/sluice-wsload" sse http://127.0.0.1:18099/v1 sk-mock $((RATE * 10)) "$STEADY" 50 "$RATE" | tee -a "$OUT/results.txt"
echo "gateway RSS after: $(rss) KiB" | tee -a "$OUT/results.txt"
