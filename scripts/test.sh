#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the Python stand-ins into .venv, starts
# moto_server and scim2-server on 127.0.0.1, checks formatting, lints (clippy, cfn-lint on the
# SAM template), runs every Rust test (the behaviour suite on memory, SQLite and AWS), then fuzzes ingress and envelope decoding for a minute a
# target (15 s under CI=true; RELAY_FUZZ_SECONDS sets it, 0 skips). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each stage says when it starts (seconds since the script began): CI's time, broken down.
stage() { echo "== [${SECONDS}s] $*" >&2; }

source scripts/test-servers.sh

stage "cargo fmt --check"
cargo fmt --all -- --check
stage "cfn-lint infra/template.yaml"
"$VENV/bin/cfn-lint" infra/template.yaml
stage "cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
stage "cargo test"
log="$ROOT/target/test-servers/cargo-test.log"
# `servers`: the behaviour suite on SQLite and AWS (moto) besides memory, and the end-to-end tests.
# Four tests at a time on two cores: they spend most of their time waiting on moto, scim2-server
# and retry waits, not on the CPU (the behaviour suite: 136 s with two, 85 s with four).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --workspace --locked --features scim-relay-tests/servers "$@" 2>&1 | tee "$log"
# A minute per fuzz target (RELAY_FUZZ_SECONDS; 0 skips), before the closing line; CI runs
# 15 s a target (its time budget is the whole suite's), the minute-long run stays the default.
fuzz_seconds="${RELAY_FUZZ_SECONDS:-$([ "${CI:-}" = "true" ] && echo 15 || echo 60)}"
if [ "$fuzz_seconds" != "0" ]; then
  stage "fuzz (${fuzz_seconds} s a target)"
  scripts/fuzz.sh "$fuzz_seconds"
fi
stage "done"
# The behaviour suite's count per backend (each behaviour runs as memory::x, sqlite::x, aws::x).
awk '/^test (memory|sqlite|aws)::[a-z0-9_]+ \.\.\. ok$/ { split($2, p, "::"); n[p[1]]++ }
     END { printf "behaviour suite: memory %d passed, sqlite %d passed, aws %d passed\n", n["memory"], n["sqlite"], n["aws"] }' "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f; if (p == 0) exit 1 }' "$log"
