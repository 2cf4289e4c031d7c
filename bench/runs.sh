#!/usr/bin/env bash
# Agent runs, bounded and on 127.0.0.1 only: the scheduler's own cost beside the same
# model call made directly (chat.completions) on the same gateway.
# - time: N one-step runs one after another, and N chat.completions one after another,
#   on the instant mock model: the difference is the run's overhead (submit, the runs row,
#   events written and followed, the end);
# - memory: RSS with RUNS sessions idle, then with one live run each (a 5 s stream), then
#   with one live chat.completions each instead.
# Needs: cargo build --release -p sluice -p sluice-wsload, and the shared bench's mock.
# Usage: bench/runs.sh [N] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000} RUNS=${2:-1000}
BIN=${CARGO_TARGET_DIR:-target}/release
MOCK=${MOCK:-/tmp/bench-target/release/mock-upstream}
[ -x "$MOCK" ] || (cd ../shared/bench/mock-upstream && CARGO_TARGET_DIR=/tmp/bench-target cargo build --release -q)
OUT=${OUT:-/tmp/bench-results/runs}
mkdir -p "$OUT" && rm -f /tmp/sluice-bench-runs.db*
ulimit -n 65536 2>/dev/null || true
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
"$MOCK" 18098 > "$OUT/mock.log" 2>&1 & PIDS+=($!)
MOCK_PORT=18098 SLUICE_LOG=warn SLUICE_LISTEN=127.0.0.1:8098 SLUICE_DATABASE_URL=sqlite:///tmp/sluice-bench-runs.db \
  "$BIN/sluice" serve --config bench/sluice-agents.toml > "$OUT/sluice.log" 2>&1 & GW=$!; PIDS+=($GW)
for _ in $(seq 100); do curl -sf http://127.0.0.1:8098/readyz >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' /proc/"$GW"/status; }
WS=ws://127.0.0.1:8098/ws KEY=sk-bench-key
: > "$OUT/results.txt"
# Warm both paths.
"$BIN/sluice-wsload" seq "$WS" "$KEY" 50 quick > /dev/null
"$BIN/sluice-wsload" seq "$WS" "$KEY" 50 m:mock > /dev/null
echo "--- time: $N one after another" | tee -a "$OUT/results.txt"
"$BIN/sluice-wsload" seq "$WS" "$KEY" "$N" m:mock | tee -a "$OUT/results.txt"
"$BIN/sluice-wsload" seq "$WS" "$KEY" "$N" quick | tee -a "$OUT/results.txt"
sleep 1
echo "--- memory: $RUNS at once" | tee -a "$OUT/results.txt"
IDLE_BEFORE=$(rss)
"$BIN/sluice-wsload" idle "$WS" "$KEY" "$RUNS" 4 > "$OUT/idle.log" 2>&1 &
LOAD=$!
for _ in $(seq 300); do grep -q '^ready' "$OUT/idle.log" && break; sleep 0.1; done
sleep 2
IDLE=$(rss)
wait "$LOAD"
sleep 2
"$BIN/sluice-wsload" runs "$WS" "$KEY" "$RUNS" slow > "$OUT/runs.log" 2>&1 &
LOAD=$!
for _ in $(seq 300); do grep -q '^live' "$OUT/runs.log" && break; sleep 0.1; done
sleep 1.5
LIVE_RUNS=$(rss)
wait "$LOAD"
cat "$OUT/runs.log" | tee -a "$OUT/results.txt"
sleep 2
"$BIN/sluice-wsload" streams "$WS" "$KEY" "$RUNS" "mock@chunks=100;delay_ms=50" 50 > "$OUT/chats.log" 2>&1 &
LOAD=$!
sleep 3.5
LIVE_CHATS=$(rss)
wait "$LOAD"
{
  echo "gateway RSS KiB: $IDLE_BEFORE before; $IDLE with $RUNS idle sessions; $LIVE_RUNS with $RUNS live runs; $LIVE_CHATS with $RUNS live chat streams"
  awk -v i="$IDLE" -v r="$LIVE_RUNS" -v c="$LIVE_CHATS" -v n="$RUNS" 'BEGIN {
    printf "per live run: %.1f KiB over an idle session; per live chat stream: %.1f KiB\n", (r - i) / n, (c - i) / n }'
  echo "gateway RSS after: $(rss) KiB"
} | tee -a "$OUT/results.txt"
