#!/usr/bin/env bash
# Sustained ingest of the standalone relay: wrk posts distinct Okta deliveries (one event each)
# to a release build on 127.0.0.1 with the dry-run target, for DURATION seconds (default 20);
# every accepted event is a durable SQLite commit. Prints wrk's figures and the server's peak RSS.
# Needs wrk (Debian package `wrk`). Traffic stays on the loopback interface and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-16}"
command -v wrk >/dev/null || { echo "install wrk first (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p scim-relay
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
SCIM_RELAY_LISTEN="127.0.0.1:$PORT" SCIM_RELAY_DATABASE="$WORK/load.db" SCIM_RELAY_LOG=warn \
  target/release/scim-relay serve --config config/scim-relay.example.toml >"$WORK/server.out" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s bench/okta-load.lua "http://127.0.0.1:$PORT"
queued() { curl -s "http://127.0.0.1:$PORT/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["queued"])'; }
left="$(queued)"
echo "queued when the load stopped: $left"
# Then the worker alone: how fast it drains the backlog into the (dry-run) target, at most 5 min.
start="$(date +%s.%N)"
for _ in $(seq 1 3000); do [ "$(queued)" = "0" ] && break; sleep 0.1; done
end="$(date +%s.%N)"
python3 -c "import sys; n,t=int(sys.argv[1]),float(sys.argv[3])-float(sys.argv[2]); print(f'drained {n} triggers in {t:.1f} s: {n/t:.0f} applied per second')" "$left" "$start" "$end"
echo "server peak RSS: $(grep VmHWM /proc/$PID/status | awk '{print $2, $3}')"
