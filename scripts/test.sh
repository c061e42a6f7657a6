#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need, then runs formatting,
# lints and every test. Safe to run on a fresh machine; repeat runs reuse what is there.
#
# The Lambda artifact is proven from the test build itself (functions/tests/artifact.rs runs
# it as several functions against a local Lambda Runtime API and the AWS emulator), so CI
# compiles the dependencies once for the tests, not again for a release cross build.
# `scripts/test.sh --lambda-build` adds the release arm64 build (`make lambda-build`).
set -euo pipefail
cd "$(dirname "$0")/.."

lambda_build=0
[ "${1:-}" = "--lambda-build" ] && lambda_build=1

started=$(date +%s)
step() { printf '\n==> [%4d s] %s\n' "$(( $(date +%s) - started ))" "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors), also the local server's default build (no AWS SDKs)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p gpufleet --bin gpufleet --locked -- -D warnings

step "Python tools in .venv: moto, cfn-lint, aws-sam-cli, cargo-lambda, ziglang, schemathesis"
mkdir -p target
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt

step "deployment template: cfn-lint and sam validate --lint (offline, no AWS account)"
.venv/bin/cfn-lint --regions us-east-1 -- template.yaml
SAM_CLI_TELEMETRY=0 .venv/bin/sam validate --lint --region us-east-1 --template-file template.yaml

step "AWS emulator: moto on 127.0.0.1"
moto_port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
MOTO_ENABLE_AMI_VALIDATION=true MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true \
  .venv/bin/python scripts/moto_server.py "$moto_port" > target/moto.log 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q ready target/moto.log 2>/dev/null && break
  sleep 0.2
done
grep -q ready target/moto.log || { echo "moto did not start:"; cat target/moto.log; exit 1; }
export GPUFLEET_TEST_AWS_ENDPOINT="http://127.0.0.1:$moto_port"
echo "moto on $GPUFLEET_TEST_AWS_ENDPOINT"

step "cargo test (SQLite, and DynamoDB on the emulator)"
cargo test --workspace --locked

if [ "$lambda_build" = 1 ]; then
  step "Lambda build: cargo lambda build --release of the artifact (arm64, or x86_64 fallback)"
  scripts/lambda_build.sh
fi

step "browser test: Debian's Chromium and playwright-core"
if ! command -v chromium >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_ apt-get install -y -q chromium >/dev/null 2>&1 \
    || { $sudo_ apt-get update -q >/dev/null && $sudo_ apt-get install -y -q chromium >/dev/null; }
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

step "the local server's binary (for the API contract and browser tests)"
cargo build -p gpufleet --bin gpufleet --locked

step "API contract: Schemathesis runs every operation of /openapi.json against the local server"
.venv/bin/python tests/api_contract/run.py target/debug/gpufleet

step "browser test: dashboard, logs, metrics, claim, destroy (screenshots in test-output/browser/)"
(cd tests/browser && node --test dashboard.test.mjs)

step "done"
