#!/usr/bin/env bash
# Fuzzes what faces the internet — Okta deliveries (with and without the secret), Graph
# notification collections, the Graph handshake — and queue-envelope decoding, each for N
# seconds (default 60), starting from the committed seeds in fuzz/seeds/. Installs cargo-fuzz
# (crates.io) when missing. A panic or a broken invariant (something queued without a valid
# secret, an envelope that opens without its signature) fails the run and leaves the input in
# fuzz/artifacts/<target>/. Longer runs: ./scripts/fuzz.sh 3600
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --quiet
fi
mkdir -p target
for target in okta_delivery graph_notification graph_handshake envelope_open; do
  mkdir -p "corpus/$target"
  log="target/fuzz-$target.log"
  echo "== fuzz $target (${secs} s)" >&2
  if ! cargo fuzz run "$target" --sanitizer none -O "corpus/$target" "seeds/$target" \
      -- -max_total_time="$secs" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  echo "fuzz: $target: $(grep -E '^Done' "$log" | tail -n 1)" >&2
done
