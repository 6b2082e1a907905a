#!/usr/bin/env bash
# Hunts flaky tests: runs the behaviour suite ROUNDS times, PARALLEL runs at a time (two by
# default, so each run competes for the CPU the way a first `cargo test --workspace` does), and
# lists every test that failed at least once, with how often.
#
#   scripts/flake-hunt.sh 20                 # the in-memory suite, 20 rounds, two at a time
#   scripts/flake-hunt.sh 20 sqlite          # the SQLite suite too (starts the test servers)
#   FLAKE_FILTER=a_scope_change scripts/flake-hunt.sh 50   # only tests whose name matches
#
# Exits non-zero when any test failed in any round; each failing round's output is kept in
# target/flake-hunt/ for reading.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${1:-20}"
WITH="${2:-memory}"
PARALLEL="${FLAKE_PARALLEL:-2}"
FILTER="${FLAKE_FILTER:-}"
OUT="target/flake-hunt"
rm -rf "$OUT"
mkdir -p "$OUT"

features=()
prefixes=("memory::")
if [ "$WITH" = "sqlite" ]; then
  # The SQLite backend needs scim2-server and moto only for the AWS half; the suite is filtered
  # to memory:: and sqlite:: below.
  source scripts/test-servers.sh
  features=(--features scim-relay-tests/servers)
  prefixes+=("sqlite::")
fi

echo "flake-hunt: building the behaviour suite" >&2
bin="$(cargo test -p scim-relay-tests --test behaviour --locked "${features[@]}" --no-run \
  --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
if [ -z "$bin" ]; then
  echo "flake-hunt: could not build the behaviour suite" >&2
  exit 2
fi

run_round() {
  local round="$1" log="$OUT/round-$1.log" status=0
  local args=()
  for prefix in "${prefixes[@]}"; do
    args+=("$prefix$FILTER")
  done
  "$bin" "${args[@]}" >"$log" 2>&1 || status=$?
  echo "round $round: $(grep -E '^test result:' "$log" || echo "exit $status, no result line")" >&2
  if [ "$status" -eq 0 ]; then
    rm -f "$log"
  fi
}

started=$(date +%s)
# The rounds' own process ids: the test servers also run in the background, and a bare `wait`
# would wait for them too.
pids=()
for round in $(seq 1 "$ROUNDS"); do
  run_round "$round" &
  pids+=("$!")
  if [ "${#pids[@]}" -ge "$PARALLEL" ]; then
    wait -n "${pids[@]}" || true
    alive=()
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then
        alive+=("$pid")
      fi
    done
    pids=("${alive[@]}")
  fi
done
for pid in "${pids[@]}"; do
  wait "$pid" || true
done

failures="$(cat "$OUT"/round-*.log 2>/dev/null | sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' | sort | uniq -c | sort -rn || true)"
echo "flake-hunt: $ROUNDS rounds of ${prefixes[*]}, $PARALLEL at a time, in $(( $(date +%s) - started )) s"
if [ -z "$failures" ]; then
  echo "flake-hunt: no test failed"
  exit 0
fi
echo "flake-hunt: tests that failed (rounds), logs in $OUT:"
echo "$failures"
exit 1
