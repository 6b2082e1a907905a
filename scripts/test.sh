#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the Python stand-ins into .venv, starts
# moto_server and scim2-server on 127.0.0.1, checks formatting, lints (clippy, cfn-lint on the
# SAM template), runs every Rust test, then fuzzes ingress and envelope decoding for a minute a
# target (RELAY_FUZZ_SECONDS, 0 to skip). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/test-servers.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cfn-lint infra/template.yaml" >&2
"$VENV/bin/cfn-lint" infra/template.yaml
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test" >&2
log="$ROOT/target/test-servers/cargo-test.log"
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
# A minute per fuzz target (RELAY_FUZZ_SECONDS; 0 skips), before the closing line.
if [ "${RELAY_FUZZ_SECONDS:-60}" != "0" ]; then
  scripts/fuzz.sh "${RELAY_FUZZ_SECONDS:-60}"
fi
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f; if (p == 0) exit 1 }' "$log"
