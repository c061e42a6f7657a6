#!/usr/bin/env bash
# Cold start of Lambda bootstraps: each function's release binary (built for this machine)
# is started against a minimal Lambda Runtime API on 127.0.0.1 (tests/src/bin/coldstart.rs),
# handed one sample event, and timed from exec to ready (first `next`), to its answer, with
# its peak RSS. The events need no store call, so no emulator is involved; the AWS SDK
# clients are still built at start exactly as on Lambda. Prints numbers, asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-15}"
functions=(request-vm get-request create-api-key provision)
bins=()
for f in "${functions[@]}"; do bins+=(--bin "$f"); done
cargo build --release -p gpufleet-functions "${bins[@]}" -p gpufleet-tests --bin gpufleet-coldstart

# What a deployed function has in its environment (template.yaml), with dummy values.
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_ENDPOINT_URL=http://127.0.0.1:9
export GPUFLEET_TABLE=gpufleet-coldstart GPUFLEET_DEPLOYMENT=gpufleet
export GPUFLEET_QUEUE_URL=http://127.0.0.1:9/123456789012/launch
export GPUFLEET_API_URL=https://abc123.execute-api.us-east-1.amazonaws.com
export GPUFLEET_AMI=ami-0123456789abcdef0 GPUFLEET_AGENT_URL=https://downloads.example.org/gpufleet
export GPUFLEET_ADMIN_PASSWORD=coldstart RUST_LOG=info

echo "machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d); $runs starts each"
measure() {
  target/release/gpufleet-coldstart --bootstrap "target/release/$1" --event "events/$2" --runs "$runs"
}
measure request-vm request-vm/injection.json
measure get-request get-request/no-key.json
measure create-api-key create-api-key/no-auth.json
measure provision provision/poison.json
