#!/usr/bin/env bash
# Sustained ingest of the standalone relay: wrk posts distinct Okta deliveries (one event each)
# to a release build on 127.0.0.1 for DURATION seconds (default 20); every accepted event is a
# durable SQLite commit. Then the workers drain the backlog: into the dry-run target (no I/O,
# TARGET=dry-run, the default) or into scim2-server (TARGET=scim2: one look-up and one create per
# user, over HTTP). Prints wrk's figures, the drain rate and the server's peak RSS.
# Needs wrk (Debian package `wrk`). Traffic stays on the loopback interface and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-16}"
# Distinct users the events name (round robin): past the first event of each, a trigger is a
# re-check that changes nothing. A large number makes every trigger a new user.
export USERS="${USERS:-1000}"
command -v wrk >/dev/null || { echo "install wrk first (apt-get install wrk)" >&2; exit 1; }
TARGET="${TARGET:-dry-run}"
cargo build --release -q --bin scim-relay
if [ "$TARGET" = "scim2" ]; then
  # Starts scim2-server (and moto, unused here) from the test suite's .venv; stopped on exit.
  source scripts/test-servers.sh
  export SCIM_RELAY_TARGET__PROFILE=generic
  export SCIM_RELAY_TARGET__BASE_URL="$RELAY_TEST_SCIM_URL/load$RANDOM/v2"
  export SCIM_RELAY_TARGET__TOKEN="$RELAY_TEST_SCIM_TOKEN"
  # No Okta API here: the events' own content is the user (as in the demo).
  export SCIM_RELAY_OKTA__USE_EVENT_CONTENT=true
fi
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
SCIM_RELAY_LISTEN="127.0.0.1:$PORT" SCIM_RELAY_DATABASE="$WORK/load.db" SCIM_RELAY_LOG=warn \
  target/release/scim-relay serve --config config/scim-relay.example.toml >"$WORK/server.out" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"; declare -F stop_test_servers >/dev/null && stop_test_servers' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s bench/okta-load.lua "http://127.0.0.1:$PORT"
queued() { curl -s "http://127.0.0.1:$PORT/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["queued"])'; }
left="$(queued)"
echo "queued when the load stopped: $left"
# Then the workers alone: how fast they drain the backlog into the target, at most 5 min.
start="$(date +%s.%N)"
for _ in $(seq 1 3000); do [ "$(queued)" = "0" ] && break; sleep 0.1; done
end="$(date +%s.%N)"
python3 -c "import sys; n,t=int(sys.argv[1]),float(sys.argv[3])-float(sys.argv[2]); print(f'drained {n} triggers in {t:.1f} s: {n/t:.0f} applied per second')" "$left" "$start" "$end"
echo "dead letters: $(curl -s "http://127.0.0.1:$PORT/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dead_letters"])')"
echo "server peak RSS: $(grep VmHWM /proc/$PID/status | awk '{print $2, $3}')"
# Apply latency, from each event's `published` to the target changed, as the history records it
# (the figure scim_relay_apply_latency_seconds and the Lambdas' ApplyLatency report): first the
# burst above (queueing behind the backlog included), then a paced trickle well under capacity,
# the everyday case.
latency() {
  python3 - "$WORK/load.db" "$1" "$2" <<'PY'
import sqlite3, sys
db, prefix, label = sys.argv[1], sys.argv[2], sys.argv[3]
rows = sqlite3.connect(db).execute(
    "SELECT json_extract(entry, '$.latency_ms') FROM history "
    "WHERE json_extract(entry, '$.outcome') = 'applied' AND json_extract(entry, '$.event_id') LIKE ?",
    (prefix + "%",)).fetchall()
ms = sorted(r[0] for r in rows if r[0] is not None)
if not ms:
    print(f"apply latency, {label}: no applied triggers"); sys.exit()
pct = lambda p: ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))]
print(f"apply latency, {label}: {len(ms)} applied, p50 {pct(50)} ms, p99 {pct(99)} ms, max {ms[-1]} ms")
PY
}
latency "load-" "burst"
PACED_RATE="${PACED_RATE:-20}" PACED_SECONDS="${PACED_SECONDS:-10}" OKTA_SECRET="${OKTA_SECRET:-local-demo-okta-secret}" \
  python3 - "http://127.0.0.1:$PORT/okta" <<'PY'
import datetime, json, os, sys, time, urllib.request
url, rate, seconds = sys.argv[1], int(os.environ["PACED_RATE"]), int(os.environ["PACED_SECONDS"])
start = time.monotonic()
for i in range(rate * seconds):
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = {"eventType": "com.okta.event_hook", "eventId": f"paced-d-{i}", "data": {"events": [{
        "uuid": f"paced-{i}", "published": now, "eventType": "user.lifecycle.create",
        "outcome": {"result": "SUCCESS"},
        "target": [{"id": f"00upaced{i}", "type": "User", "alternateId": f"paced{i}@example.com",
                    "displayName": "Paced User"}]}]}}
    req = urllib.request.Request(url, json.dumps(body).encode(), {
        "Authorization": os.environ["OKTA_SECRET"], "Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()
    time.sleep(max(0, start + (i + 1) / rate - time.monotonic()))
PY
for _ in $(seq 1 300); do [ "$(queued)" = "0" ] && break; sleep 0.1; done
sleep 0.5
latency "paced-" "paced at ${PACED_RATE:-20}/s"
