#!/usr/bin/env bash
# The standalone relay (release build) against a large directory with its IdP's rate limits
# (Okta: bench/okta_directory.py; Entra, IDP=entra: bench/graph_directory.py) and a SCIM target
# with a limit of its own (bench/scim_target.py), each phase measured against the floor the two
# budgets allow:
#   1. onboarding: the first full pass creates USERS users;
#   2. the daily full pass over the same directory, nothing changed;
#   3. a burst of BURST changed users, each announced by an Okta event hook delivery or a Graph
#      change notification.
# Prints, per phase: wall time, IdP calls per user, target calls, the relay's peak RSS, and the
# ratio to the floor. Everything stays on 127.0.0.1 and stops by itself.
#
#   USERS=100000 BURST=10000 ./scripts/load-directory.sh
#   IDP=entra USERS=100000 BURST=10000 ./scripts/load-directory.sh
#
# OKTA_LIMIT: requests a minute per Okta bucket (default 600, as Okta documents for the users
# endpoints in many orgs); BURST_OKTA_LIMIT: the same for the burst (default 6000: at 600 a
# 10,000-change burst's floor is 33 minutes at the relay's 50 % share; the ratio is the
# figure that carries over). TARGET_LIMIT: target requests a minute, all methods (default
# 36,000: 600 a second; Datadog publishes no SCIM limit, Slack's are lower, see the README).
# GRAPH_LIMIT: Graph ResourceUnits every 10 seconds for the app and tenant (default 8,000, as
# Graph documents for a tenant over 500 users; a user read or a delta page costs 1).
set -euo pipefail
cd "$(dirname "$0")/.."
USERS="${USERS:-100000}"
BURST="${BURST:-10000}"
OKTA_LIMIT="${OKTA_LIMIT:-600}"
BURST_OKTA_LIMIT="${BURST_OKTA_LIMIT:-6000}"
TARGET_LIMIT="${TARGET_LIMIT:-36000}"
GRAPH_LIMIT="${GRAPH_LIMIT:-8000}"
IDP="${IDP:-okta}"
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
# The IdP's budget for the floor: calls a window, and the window in seconds.
if [ "$IDP" = entra ]; then
  IDP_PORT="$(start graph python3 bench/graph_directory.py --users "$USERS" --limit "$GRAPH_LIMIT")"
  PAGE=100 IDP_PER_WINDOW="$GRAPH_LIMIT" BURST_PER_WINDOW="$GRAPH_LIMIT" IDP_WINDOW=10
else
  IDP_PORT="$(start okta python3 bench/okta_directory.py --users "$USERS" --limit "$OKTA_LIMIT")"
  PAGE=200 IDP_PER_WINDOW=$((OKTA_LIMIT * SHARE / 100)) IDP_WINDOW=60
  BURST_PER_WINDOW=$((BURST_OKTA_LIMIT * SHARE / 100))
fi
TARGET_PORT="$(start target python3 bench/scim_target.py --limit "$TARGET_LIMIT")"
RELAY_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
IDP_URL="http://127.0.0.1:$IDP_PORT"
TARGET="http://127.0.0.1:$TARGET_PORT"
RELAY="http://127.0.0.1:$RELAY_PORT"
TENANT=84bd8158-6d4d-4958-8b9f-9d6445542f95

export SCIM_RELAY_LISTEN="127.0.0.1:$RELAY_PORT" SCIM_RELAY_DATABASE="$WORK/relay.db" SCIM_RELAY_LOG=warn
CONFIG=config/scim-relay.example.toml
if [ "$IDP" = entra ]; then
  # The example's Okta section would ask for Okta API access: Entra alone here.
  CONFIG="$WORK/relay.toml"
  awk '/^\[okta\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' config/scim-relay.example.toml >"$CONFIG"
  export SCIM_RELAY_ENTRA__TENANT_ID="$TENANT" SCIM_RELAY_ENTRA__CLIENT_ID=bench-app
  export SCIM_RELAY_ENTRA__CLIENT_SECRET=bench-secret SCIM_RELAY_ENTRA__GRAPH_URL="$IDP_URL"
  export SCIM_RELAY_ENTRA__LOGIN_URL="$IDP_URL"
else
  export SCIM_RELAY_OKTA__ORG_URL="$IDP_URL" SCIM_RELAY_OKTA__API_TOKEN=bench-token
  export SCIM_RELAY_OKTA__RATE_LIMIT_PERCENT="$SHARE"
fi
export SCIM_RELAY_TARGET__PROFILE=generic SCIM_RELAY_TARGET__BASE_URL="$TARGET/v2" SCIM_RELAY_TARGET__TOKEN=bench
export SCIM_RELAY_SWEEP__FULL_PASS_HOURS=0 SCIM_RELAY_SWEEP__DRIFT=off SCIM_RELAY_SWEEP__INTERVAL_MINUTES=600
RELAY_PID=""
relay() { # starts the relay (its sweep runs at start)
  "$RELAY_BIN" serve --config "$CONFIG" >>"$WORK/relay.out" 2>&1 &
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
floor() { # begin (epoch s), IdP calls needed, IdP calls a window (the relay's share), target
  # calls needed: the least time the two budgets allow. Both count in fixed windows, as Okta's,
  # Graph's and the fixtures' do (IDP_WINDOW seconds; the target's a minute): what is left of
  # the window a phase starts in is there at once, each further window's waits for it.
  python3 - "$@" "$IDP_WINDOW" "$TARGET_LIMIT" <<'PY'
import math, sys
begin, calls, per_window, target_calls, window, target_limit = map(float, sys.argv[1:])
def least(calls, per_window, window):
    windows = math.ceil(calls / per_window) - 1 if per_window and calls else 0
    return (begin // window) * window + windows * window - begin if windows > 0 else 0
print(max(least(calls, per_window, window), least(target_calls, target_limit, 60)))
PY
}
report() { # phase, seconds, IdP stats before/after, target stats before/after, floor seconds, users
  python3 - "$IDP" "$@" <<'PY'
import json, sys
idp, phase, secs, o0, o1, t0, t1, floor, users, rss = sys.argv[1:]
o0, o1, t0, t1 = map(json.loads, (o0, o1, t0, t1))
secs, floor, users = float(secs), float(floor), int(users)
bound = f"floor {floor:.1f} s (ratio {secs / floor:.2f})" if floor >= 1 else "no budget binds"
okta = {k: o1.get(k, 0) - o0.get(k, 0) for k in o1}
target = {k: t1.get(k, 0) - t0.get(k, 0) for k in t1 if k != "users"}
calls = sum(v for k, v in okta.items() if k not in ("throttled", "token"))
print(f"{phase}: {secs:.1f} s for {users} users; {bound}; "
      f"{idp} calls {calls} ({calls / users:.4f} a user) {okta}; target calls {target}; relay peak RSS {rss}")
PY
}

# 1. Onboarding: the first sweep's full pass creates every user.
o0="$(stats "$IDP_URL")"; t0="$(stats "$TARGET")"; begin="$(date +%s.%N)"
relay
wait_for ""
end="$(date +%s.%N)"
pages=$(( (USERS + PAGE - 1) / PAGE ))
# The IdP's list pages, and the target's two calls a user (look-up, create).
report onboarding "$(python3 -c "print($end-$begin)")" "$o0" "$(stats "$IDP_URL")" "$t0" "$(stats "$TARGET")" \
  "$(floor "$begin" "$pages" "$IDP_PER_WINDOW" $((2 * USERS)))" "$USERS" "$(peak_rss)"
stop_relay

# 2. The daily full pass: nothing changed, every user listed and re-checked. The worker takes a
# listed user as read only when its record is older than the listing by two minutes (a change
# applied meanwhile may be newer than the list): a day after onboarding every record is, so the
# pass starts once the last record is that old.
sleep 125
o0="$(stats "$IDP_URL")"; t0="$(stats "$TARGET")"; before="$(sweeps)"; begin="$(date +%s.%N)"
relay
wait_for "$before"
end="$(date +%s.%N)"
report "full pass" "$(python3 -c "print($end-$begin)")" "$o0" "$(stats "$IDP_URL")" "$t0" "$(stats "$TARGET")" \
  "$(floor "$begin" "$pages" "$IDP_PER_WINDOW" 0)" "$USERS" "$(peak_rss)"
stop_relay

# 3. A burst: BURST users change, and the IdP tells of each: Okta's event hook (50 events a
# delivery) or Graph's change notifications (100 a request).
[ "$IDP" = okta ] && curl -s -X POST "$IDP_URL/control/limit?limit=$BURST_OKTA_LIMIT" >/dev/null
export SCIM_RELAY_SWEEP__RECONCILE=false
relay
ids="$WORK/changed.json"
curl -s -X POST "$IDP_URL/control/change?count=$BURST" >"$ids"
o0="$(stats "$IDP_URL")"; t0="$(stats "$TARGET")"; begin="$(date +%s.%N)"
python3 - "$RELAY" "$ids" "$IDP" "$TENANT" <<'PY'
import json, sys, urllib.request, uuid, datetime
relay, ids, idp, tenant = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4]
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
def post(path, body, headers):
    req = urllib.request.Request(relay + path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json", **headers})
    assert urllib.request.urlopen(req).status in (200, 202)
if idp == "entra":
    for i in range(0, len(ids), 100):
        post("/entra", {"value": [{
            "subscriptionId": "bench-subscription", "changeType": "updated",
            "resource": f"Users/{uid}", "clientState": "local-demo-client-state", "tenantId": tenant,
            "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": f"Users/{uid}",
                             "id": uid, "organizationId": tenant}}
            for uid in ids[i:i + 100]]}, {})
else:
    for i in range(0, len(ids), 50):
        events = [{"uuid": str(uuid.uuid4()), "published": now, "eventType": "user.account.update_profile",
                   "target": [{"id": uid, "type": "User", "alternateId": f"{uid}@bench.example"}]}
                  for uid in ids[i:i + 50]]
        post("/okta", {"eventType": "com.okta.event_hook", "data": {"events": events}},
             {"Authorization": "local-demo-okta-secret"})
PY
while [ "$(queued)" != "0" ]; do sleep 0.5; done
end="$(date +%s.%N)"
# One read of each changed user, and a look-up and a PATCH of its account.
report "burst" "$(python3 -c "print($end-$begin)")" "$o0" "$(stats "$IDP_URL")" "$t0" "$(stats "$TARGET")" \
  "$(floor "$begin" "$BURST" "$BURST_PER_WINDOW" $((2 * BURST)))" "$BURST" "$(peak_rss)"
echo "dead letters: $(curl -s "$RELAY/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dead_letters"])')"
