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
