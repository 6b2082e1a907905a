#!/usr/bin/env bash
# The standalone relay (release build) against a large Okta directory with Okta's rate limits
# (bench/okta_directory.py) and a SCIM target with a limit of its own (bench/scim_target.py),
# each phase measured against the floor the two budgets allow:
#   1. onboarding: the first full pass creates USERS users;
#   2. the daily full pass over the same directory, nothing changed;
#   3. a burst of BURST changed users, each announced by an Okta event hook delivery.
# Prints, per phase: wall time, IdP calls per user, target calls, the relay's peak RSS, and the
# ratio to the floor. Everything stays on 127.0.0.1 and stops by itself.
#
#   USERS=100000 BURST=10000 ./scripts/load-directory.sh
#
# OKTA_LIMIT: requests a minute per Okta bucket (default 600, as Okta documents for the users
# endpoints in many orgs); BURST_OKTA_LIMIT: the same for the burst (default 6000: at 600 a
# 10,000-change burst's floor is 33 minutes at the relay's 50 % share; the ratio is the
# figure that carries over). TARGET_LIMIT: target requests a minute, all methods (default
# 36,000: 600 a second; Datadog publishes no SCIM limit, Slack's are lower, see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
USERS="${USERS:-100000}"
BURST="${BURST:-10000}"
OKTA_LIMIT="${OKTA_LIMIT:-600}"
BURST_OKTA_LIMIT="${BURST_OKTA_LIMIT:-6000}"
TARGET_LIMIT="${TARGET_LIMIT:-36000}"
SHARE=50
cargo build --release -q --bin scim-relay
RELAY_BIN="${CARGO_TARGET_DIR:-target}/release/scim-relay"
WORK="$(mktemp -d)"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

start() { # name, command…: starts a fixture, waits for the port it prints
  local name="$1"; shift
  "$@" >"$WORK/$name.port" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 1 100); do [ -s "$WORK/$name.port" ] && break; sleep 0.1; done
  head -1 "$WORK/$name.port"
}
OKTA_PORT="$(start okta python3 bench/okta_directory.py --users "$USERS" --limit "$OKTA_LIMIT")"
TARGET_PORT="$(start target python3 bench/scim_target.py --limit "$TARGET_LIMIT")"
RELAY_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
OKTA="http://127.0.0.1:$OKTA_PORT"
TARGET="http://127.0.0.1:$TARGET_PORT"
RELAY="http://127.0.0.1:$RELAY_PORT"

export SCIM_RELAY_LISTEN="127.0.0.1:$RELAY_PORT" SCIM_RELAY_DATABASE="$WORK/relay.db" SCIM_RELAY_LOG=warn
export SCIM_RELAY_OKTA__ORG_URL="$OKTA" SCIM_RELAY_OKTA__API_TOKEN=bench-token
export SCIM_RELAY_OKTA__RATE_LIMIT_PERCENT="$SHARE"
export SCIM_RELAY_TARGET__PROFILE=generic SCIM_RELAY_TARGET__BASE_URL="$TARGET/v2" SCIM_RELAY_TARGET__TOKEN=bench
export SCIM_RELAY_SWEEP__FULL_PASS_HOURS=0 SCIM_RELAY_SWEEP__DRIFT=off SCIM_RELAY_SWEEP__INTERVAL_MINUTES=600
RELAY_PID=""
relay() { # starts the relay (its sweep runs at start)
  "$RELAY_BIN" serve --config config/scim-relay.example.toml >>"$WORK/relay.out" 2>&1 &
  RELAY_PID=$!
  PIDS+=($RELAY_PID)
  for _ in $(seq 1 100); do curl -sf "$RELAY/healthz" >/dev/null && break; sleep 0.1; done
}
stop_relay() { kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true; }
peak_rss() { grep VmHWM "/proc/$RELAY_PID/status" | awk '{print $2 / 1024 " MB"}'; }
stats() { curl -s "$1/control/stats"; }
queued() { curl -s "$RELAY/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["queued"])'; }
sweeps() { python3 - "$WORK/relay.db" <<'PY'
import sqlite3, sys
row = sqlite3.connect(sys.argv[1]).execute("SELECT value FROM documents WHERE name = 'last-sweep'").fetchone()
print(row[0] if row else "")
PY
}
wait_for() { # until the sweep that started with the relay is recorded and the queue is empty
  local before="$1"
  while :; do
    [ "$(sweeps)" != "$before" ] && [ "$(queued)" = "0" ] && break
    sleep 0.5
  done
}
floor() { # begin (epoch s), Okta calls needed, Okta limit, target calls needed: the least time
  # the two budgets allow. Both count in fixed minutes, as Okta's windows and the fixtures' do:
  # the share of the window a phase starts in is there at once, each further share waits for the
  # next window.
  python3 - "$@" "$SHARE" "$TARGET_LIMIT" <<'PY'
import math, sys
begin, calls, limit, target_calls, share, target_limit = map(float, sys.argv[1:])
def least(calls, per_window):
    windows = math.ceil(calls / per_window) - 1 if per_window and calls else 0
    return (begin // 60) * 60 + windows * 60 - begin if windows > 0 else 0
print(max(least(calls, limit * share / 100), least(target_calls, target_limit)))
PY
}
report() { # phase, seconds, okta stats before/after, target stats before/after, floor seconds, users
  python3 - "$@" <<'PY'
import json, sys
phase, secs, o0, o1, t0, t1, floor, users, rss = sys.argv[1:]
o0, o1, t0, t1 = map(json.loads, (o0, o1, t0, t1))
secs, floor, users = float(secs), float(floor), int(users)
bound = f"floor {floor:.1f} s (ratio {secs / floor:.2f})" if floor >= 1 else "no budget binds"
okta = {k: o1.get(k, 0) - o0.get(k, 0) for k in o1}
target = {k: t1.get(k, 0) - t0.get(k, 0) for k in t1 if k != "users"}
calls = sum(v for k, v in okta.items() if k != "throttled")
print(f"{phase}: {secs:.1f} s for {users} users; {bound}; "
      f"Okta calls {calls} ({calls / users:.4f} a user) {okta}; target calls {target}; relay peak RSS {rss}")
PY
}

# 1. Onboarding: the first sweep's full pass creates every user.
o0="$(stats "$OKTA")"; t0="$(stats "$TARGET")"; begin="$(date +%s.%N)"
relay
wait_for ""
end="$(date +%s.%N)"
pages=$(( (USERS + 199) / 200 ))
# Okta's list pages, and the target's two calls a user (look-up, create).
report onboarding "$(python3 -c "print($end-$begin)")" "$o0" "$(stats "$OKTA")" "$t0" "$(stats "$TARGET")" \
  "$(floor "$begin" "$pages" "$OKTA_LIMIT" $((2 * USERS)))" "$USERS" "$(peak_rss)"
stop_relay

# 2. The daily full pass: nothing changed, every user listed and re-checked. The worker takes a
# listed user as read only when its record is older than the listing by two minutes (a change
# applied meanwhile may be newer than the list): a day after onboarding every record is, so the
# pass starts once the last record is that old.
sleep 125
o0="$(stats "$OKTA")"; t0="$(stats "$TARGET")"; before="$(sweeps)"; begin="$(date +%s.%N)"
relay
wait_for "$before"
end="$(date +%s.%N)"
report "full pass" "$(python3 -c "print($end-$begin)")" "$o0" "$(stats "$OKTA")" "$t0" "$(stats "$TARGET")" \
  "$(floor "$begin" "$pages" "$OKTA_LIMIT" 0)" "$USERS" "$(peak_rss)"
stop_relay

# 3. A burst: BURST users change, and Okta's event hook tells of each (50 events a delivery).
curl -s -X POST "$OKTA/control/limit?limit=$BURST_OKTA_LIMIT" >/dev/null
export SCIM_RELAY_SWEEP__RECONCILE=false
relay
ids="$WORK/changed.json"
curl -s -X POST "$OKTA/control/change?count=$BURST" >"$ids"
o0="$(stats "$OKTA")"; t0="$(stats "$TARGET")"; begin="$(date +%s.%N)"
python3 - "$RELAY" "$ids" <<'PY'
import json, sys, urllib.request, uuid, datetime
relay, ids = sys.argv[1], json.load(open(sys.argv[2]))
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
for i in range(0, len(ids), 50):
    events = [{"uuid": str(uuid.uuid4()), "published": now, "eventType": "user.account.update_profile",
               "target": [{"id": uid, "type": "User", "alternateId": f"{uid}@bench.example"}]}
              for uid in ids[i:i + 50]]
    body = json.dumps({"eventType": "com.okta.event_hook", "data": {"events": events}}).encode()
    req = urllib.request.Request(relay + "/okta", body, {"Content-Type": "application/json",
                                 "Authorization": "local-demo-okta-secret"})
    assert urllib.request.urlopen(req).status == 200
PY
while [ "$(queued)" != "0" ]; do sleep 0.5; done
end="$(date +%s.%N)"
# One read of each changed user, and one PATCH of it.
report "burst" "$(python3 -c "print($end-$begin)")" "$o0" "$(stats "$OKTA")" "$t0" "$(stats "$TARGET")" \
  "$(floor "$begin" "$BURST" "$BURST_OKTA_LIMIT" "$BURST")" "$BURST" "$(peak_rss)"
echo "dead letters: $(curl -s "$RELAY/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dead_letters"])')"
