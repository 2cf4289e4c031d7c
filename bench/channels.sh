#!/usr/bin/env bash
# Chat channels' webhook acknowledgement, bounded and on 127.0.0.1 only: signed Slack
# deliveries (`sluice-wsload slack-events`) to POST /channels/slack/events, each timed
# from its request to its ack (Slack's 3-second rule); the answers go to a mock Slack Web
# API (`sluice-wsload slack-api`), which counts what it is sent.
#   (a) 200 deliveries all at once;
#   (b) N deliveries with CONC in flight;
#   (c) 200 deliveries × 4 copies, the copies in flight together (Slack's retries).
# After each: waits (bounded) until every delivery is answered, then the store's runs and
# deliveries and the mock's counters: each distinct delivery must run once and be posted
# once. Needs: cargo build --release -p sluice -p sluice-wsload, and the shared bench's mock.
# (s) first: 200 deliveries one at a time, the ack's cost with nothing to wait for.
# Usage: bench/channels.sh [N] [CONC]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000} CONC=${2:-200}
BIN=${CARGO_TARGET_DIR:-target}/release
MOCK=${MOCK:-/tmp/bench-target/release/mock-upstream}
[ -x "$MOCK" ] || (cd ../shared/bench/mock-upstream && CARGO_TARGET_DIR=/tmp/bench-target cargo build --release -q)
OUT=${OUT:-/tmp/bench-results/channels}
DB=/tmp/sluice-bench-channels.db
mkdir -p "$OUT" && rm -f "$DB"*
ulimit -n 65536 2>/dev/null || true
MOCK_PORT=18097 SLACK_API_PORT=18096 GW_ADDR=127.0.0.1:8097
SECRET=bench-signing-secret
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
"$MOCK" "$MOCK_PORT" > "$OUT/mock.log" 2>&1 & PIDS+=($!)
"$BIN/sluice-wsload" slack-api "$SLACK_API_PORT" > "$OUT/slack-api.log" 2>&1 & SLACK=$!; PIDS+=($SLACK)
STATS=http://127.0.0.1:$SLACK_API_PORT/stats
for _ in $(seq 100); do curl -sf "$STATS" >/dev/null && break; sleep 0.1; done
MOCK_PORT=$MOCK_PORT SLACK_API_PORT=$SLACK_API_PORT SLACK_SIGNING_SECRET=$SECRET SLUICE_LOG=warn \
  SLUICE_LISTEN=$GW_ADDR SLUICE_DATABASE_URL=sqlite://$DB \
  "$BIN/sluice" serve --config bench/sluice-channels.toml > "$OUT/sluice.log" 2>&1 & GW=$!; PIDS+=($GW)
for _ in $(seq 100); do curl -sf "http://$GW_ADDR/readyz" >/dev/null && break; sleep 0.1; done
URL=http://$GW_ADDR/channels/slack/events
q() { sqlite3 -cmd '.timeout 5000' "$DB" "$1"; }
open_rows() { q "SELECT COUNT(*) FROM channel_deliveries WHERE state IN ('accepted','running','ready')"; }
# Until every delivery is sent, failed or uncertain: at most 180 s.
drain() {
  local t0=$SECONDS
  for _ in $(seq 360); do [ "$(open_rows)" = 0 ] && break; sleep 0.5; done
  echo "drained in $((SECONDS - t0)) s, still open: $(open_rows)"
}
cpu() { awk '{print $14 + $15}' /proc/"$GW"/stat; }
phase() {
  local name=$1; shift
  echo "--- $name" | tee -a "$OUT/results.txt"
  local c0; c0=$(cpu)
  "$BIN/sluice-wsload" slack-events "$URL" "$SECRET" "$@" | tee -a "$OUT/results.txt"
  drain | tee -a "$OUT/results.txt"
  echo "gateway CPU, the sends and the answers: $(( ($(cpu) - c0) * 10 )) ms" | tee -a "$OUT/results.txt"
  echo "slack api: $(curl -sf "$STATS")" | tee -a "$OUT/results.txt"
}
: > "$OUT/results.txt"
echo "gateway RSS at start: $(awk '/VmRSS/ {print $2}' /proc/"$GW"/status) KiB" | tee -a "$OUT/results.txt"
# Warm: connections, the prepared statements, the first runs.
"$BIN/sluice-wsload" slack-events "$URL" "$SECRET" 20 5 > "$OUT/warm.log"
drain > /dev/null
echo "warm: $(curl -sf "$STATS")" | tee -a "$OUT/results.txt"
phase "(s) 200 deliveries one at a time" 200 1
phase "(a) 200 deliveries at once" 200 200
phase "(b) $N deliveries, $CONC in flight" "$N" "$CONC"
phase "(c) 200 deliveries x 4 copies, 200 in flight" 200 200 4
{
  echo "--- totals (warm-up included: 20 deliveries)"
  echo "distinct deliveries sent: $((20 + 200 + 200 + N + 200))"
  echo "webhook_seen rows: $(q 'SELECT COUNT(*) FROM webhook_seen')"
  echo "deliveries (kind state count):"; q "SELECT kind, state, COUNT(*) FROM channel_deliveries GROUP BY 1, 2" | sed 's/^/  /'
  echo "runs (origin status count):"; q "SELECT origin, status, COUNT(*) FROM runs GROUP BY 1, 2" | sed 's/^/  /'
  echo "runs per delivery, more than one: $(q "SELECT COUNT(*) FROM (SELECT idempotency_key FROM runs WHERE origin = 'channel' GROUP BY 1 HAVING COUNT(*) > 1)")"
  echo "slack api: $(curl -sf "$STATS")"
  echo "gateway RSS after: $(awk '/VmRSS/ {print $2}' /proc/"$GW"/status) KiB"
  echo "gateway warnings: $(grep -c WARN "$OUT/sluice.log" || true)"
} | tee -a "$OUT/results.txt"
# The gateway first (its deliveries are done), then the mock, which prints its counters.
kill "$GW" && wait "$GW" 2>/dev/null || true
kill "$SLACK" && wait "$SLACK" 2>/dev/null || true
tail -1 "$OUT/slack-api.log"
