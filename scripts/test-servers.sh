#!/usr/bin/env bash
# Installs (once) and starts the local servers the end-to-end tests need, on free ports of
# 127.0.0.1: moto_server (DynamoDB, SQS) and scim2-server (an RFC 7644 service provider).
# Source it: it exports RELAY_TEST_* for the tests and stops the servers when the shell exits.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQS="$ROOT/scripts/requirements-test.txt"
LOGS="$ROOT/target/test-servers"

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$VENV/.installed" ] || [ "$REQS" -nt "$VENV/.installed" ]; then
    echo "test-servers: installing $(grep -cv '^#' "$REQS") packages into .venv" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
    touch "$VENV/.installed"
  fi
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {
  local url="$1" name="$2"
  for _ in $(seq 1 100); do
    # Any HTTP answer (even 401/404) means the server is listening.
    if "$VENV/bin/python" - "$url" 2>/dev/null <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass
PY
    then
      return 0
    fi
    sleep 0.1
  done
  echo "test-servers: $name did not come up; see $LOGS" >&2
  return 1
}

stop_test_servers() {
  [ -n "${MOTO_PID:-}" ] && kill "$MOTO_PID" 2>/dev/null || true
  [ -n "${SCIM_PID:-}" ] && kill "$SCIM_PID" 2>/dev/null || true
}

ensure_venv
mkdir -p "$LOGS"
MOTO_PORT="$(free_port)"
SCIM_PORT="$(free_port)"
RELAY_TEST_SCIM_TOKEN="scim-test-token-$RANDOM$RANDOM"

"$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$LOGS/moto.log" 2>&1 &
MOTO_PID=$!
"$VENV/bin/scim2-server" --hostname 127.0.0.1 --port "$SCIM_PORT" \
  --bearer-token "$RELAY_TEST_SCIM_TOKEN" --dynamic-tenants >"$LOGS/scim2-server.log" 2>&1 &
SCIM_PID=$!
trap stop_test_servers EXIT

wait_for "http://127.0.0.1:$MOTO_PORT/moto-api/" moto_server || exit 1
wait_for "http://127.0.0.1:$SCIM_PORT/v2/ServiceProviderConfig" scim2-server || exit 1

export RELAY_TEST_MOTO_URL="http://127.0.0.1:$MOTO_PORT"
export RELAY_TEST_SCIM_URL="http://127.0.0.1:$SCIM_PORT"
export RELAY_TEST_SCIM_TOKEN
# The Lambda code reads AWS settings from the environment; keep it away from real accounts.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
echo "test-servers: moto_server on :$MOTO_PORT, scim2-server on :$SCIM_PORT" >&2
