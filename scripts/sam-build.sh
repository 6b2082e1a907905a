#!/usr/bin/env bash
# Builds the Lambda functions for arm64 with SAM, without Docker: aws-sam-cli drives
# cargo-lambda, which cross-compiles with the zig that its PyPI wheel ships.
# Then: sam deploy --guided (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-sam
if [ ! -x "$VENV/bin/sam" ] || [ ! -x "$VENV/bin/cargo-lambda" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check aws-sam-cli==1.170.0 cargo-lambda==1.9.2
fi
rustup target add aarch64-unknown-linux-gnu >/dev/null
export PATH="$PWD/$VENV/bin:$PATH" SAM_CLI_TELEMETRY=0
sam validate --lint --template-file infra/template.yaml
sam build "$@"
# Each function's size, the figure docs/BENCHMARKS.md keeps (the release profile strips them).
for bootstrap in .aws-sam/build/*/bootstrap; do
  [ -e "$bootstrap" ] || continue
  awk -v name="$(basename "$(dirname "$bootstrap")")" -v bytes="$(wc -c <"$bootstrap")" \
    'BEGIN { printf "%-24s %6.2f MB\n", name, bytes / 1e6 }'
done
